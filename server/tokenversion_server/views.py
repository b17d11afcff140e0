"""The provider's endpoints: the claims endpoint for Keycloak mappers, the Keycloak event receiver, the OIDC
back-channel logout receiver, and the REST revocation API for other systems. Each is a thin layer over
``services``."""

from __future__ import annotations

import datetime as dt
import functools
import logging
import re
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.db import DatabaseError, transaction
from django.db.models import Q
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from django.utils.module_loading import import_string
from rest_framework import authentication, exceptions, parsers, permissions, renderers, serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView, set_rollback

from tokenversion.authentication import get_validator  # the runtime's JWKS client
from tokenversion.conf import get_settings
from tokenversion.core.errors import ConfigurationError, TokenRejected, Unavailable
from tokenversion.core.logout_tokens import LogoutToken, LogoutTokenValidator

from . import services
from .conf import get_server_settings, logout_token_policy
from .http import (
    MAX_BODY_BYTES,
    HttpError,
    error_response,
    json_response,
    loads_strict,
    machine_endpoint,
    optional_string,
    read_form,
    read_json_object,
    require_secret,
)
from .models import ApiKey, RevocationEvent, SeenIdentifier

Reason = RevocationEvent.Reason
logger = logging.getLogger("tokenversion.server")


def _issuer(data: dict[str, Any]) -> str:
    issuer = data.get("issuer")
    if issuer is not None and not isinstance(issuer, str):
        raise HttpError(400, "invalid_request", "issuer must be a string")
    try:
        return services.resolve_issuer(issuer)
    except services.InvalidRequest as exc:
        raise HttpError(400, "unknown_issuer", str(exc)) from None


def _identifier(data: dict[str, Any], key: str) -> str:
    try:
        return services.check_identifier(data.get(key), key)
    except services.InvalidRequest as exc:
        raise HttpError(400, "invalid_request", str(exc)) from None


@functools.lru_cache(maxsize=8)
def _cached_import(dotted_path: str) -> Any:
    """A hook named in settings, imported once per process (``import_string`` at every call costs more)."""
    return import_string(dotted_path)


@machine_endpoint
def claims_view(request: HttpRequest) -> HttpResponse:
    """``POST /tokenversion/claims``: the version a token issued now must carry (see docs/contract.md).

    Called at every token issue, so the common case (a known user, nothing changed) is one indexed read in
    autocommit and no write: the version and, when the ``PROVISION_USER`` hook declares its ``user_read``,
    the user's row come back from one statement (``services.current_version_and_user``), and the hook
    writes only for a new user or a changed attribute, in a transaction of its own. A failure between the
    two steps leaves a version row without a user row, which the next call completes (both are idempotent).
    """
    conf = get_server_settings()
    require_secret(request, conf.mapper_secrets)
    data = read_json_object(request)
    subject = _identifier(data, "sub")
    issuer = _issuer(data)
    attributes = {key: optional_string(data, key) for key in ("username", "email", "client_id", "session_id")}
    hook = _cached_import(conf.provision_user) if conf.provision_user else None
    version, user = services.current_version_and_user(subject, issuer, getattr(hook, "user_read", None))
    if hook is not None:
        if user is services.UNREAD:
            hook(issuer, subject, attributes)
        else:
            hook(issuer, subject, attributes, current=user)
    return json_response({"sub": subject, "token_version": version})


# Keycloak event types (docs/contract.md) -> what they revoke, and why.
_EVENT_ACTIONS: dict[str, tuple[str, str]] = {
    "session.logout": ("revoke_session", Reason.LOGOUT),
    "user.logout": ("revoke_user", Reason.LOGOUT),
    "user.credentials_changed": ("revoke_user", Reason.PASSWORD_CHANGE),
    "user.disabled": ("revoke_user", Reason.ADMIN),
    "user.deleted": ("revoke_user", Reason.ADMIN),
    "realm.logout_all": ("revoke_realm", Reason.ADMIN),
}
# Event ids are remembered long enough to absorb any retry, then purged.
_EVENT_ID_TTL = dt.timedelta(days=1)


@machine_endpoint
def keycloak_events_view(request: HttpRequest) -> HttpResponse:
    """``POST /tokenversion/events``: Keycloak events that back-channel logout does not deliver."""
    conf = get_server_settings()
    require_secret(request, conf.event_secrets)
    data = read_json_object(request)
    event_type = data.get("type")
    if not isinstance(event_type, str) or event_type not in _EVENT_ACTIONS:
        raise HttpError(400, "unknown_event_type", f"type must be one of: {', '.join(_EVENT_ACTIONS)}")
    event_id = _identifier(data, "id")
    issuer = _issuer(data)
    action, reason = _EVENT_ACTIONS[event_type]
    keycloak_event = optional_string(data, "keycloak_event", 64)
    time_ms = data.get("time")
    if time_ms is not None and (type(time_ms) is not int or time_ms < 0):
        raise HttpError(400, "invalid_request", "time must be milliseconds since the epoch")
    subject = _identifier(data, "user_id") if action == "revoke_user" or data.get("user_id") else ""
    session_id = _identifier(data, "session_id") if action == "revoke_session" else ""
    actor = services.Actor.keycloak(f"{keycloak_event or event_type} {event_id}")
    note = f"Keycloak event {event_type}" + (f" ({keycloak_event})" if keycloak_event else "")
    with transaction.atomic():
        if not services.remember_once(SeenIdentifier.KIND_EVENT, event_id,
                                      timezone.now() + _EVENT_ID_TTL, issuer):
            return json_response({"status": "ok", "action": action, "duplicate": True})
        if action == "revoke_user":
            services.revoke_user(subject, reason=reason, actor=actor, issuer=issuer, note=note)
        elif action == "revoke_session":
            services.revoke_session(session_id, subject=subject, reason=reason, actor=actor,
                                    issuer=issuer, note=note)
        else:
            services.revoke_realm(reason=reason, actor=actor, issuer=issuer, note=note)
    return json_response({"status": "ok", "action": action, "duplicate": False})


@machine_endpoint
def backchannel_logout_view(request: HttpRequest) -> HttpResponse:
    """``POST /tokenversion/backchannel-logout``: OIDC Back-Channel Logout 1.0, sent by Keycloak itself.

    Authenticated by the logout token's signature (no secret): see docs/backchannel-logout.md. 200 once the
    session (``sid``) or, without ``sid``, the user (``sub``) is revoked; 400 for a bad request or token,
    a replayed ``jti`` included; 503 when the keys or the database are unavailable.
    """
    try:
        return _backchannel_logout(request)
    except (HttpError, DatabaseError):
        raise  # machine_endpoint answers these (the database ones with 503)
    except Exception:
        logger.exception("unexpected error in back-channel logout")
        return error_response(500, "internal_error", "back-channel logout failed unexpectedly")


def _backchannel_logout(request: HttpRequest) -> HttpResponse:
    conf = get_settings()
    if not conf.issuer or not get_server_settings().backchannel_audience:
        raise HttpError(400, "not_configured",
                        "back-channel logout is not configured (TOKENVERSION_SERVER['BACKCHANNEL_AUDIENCE'])")
    form = read_form(request, max(MAX_BODY_BYTES, conf.max_token_bytes + 1024))
    values = form.get("logout_token", [])
    if len(values) != 1 or not values[0]:
        raise HttpError(400, "invalid_request", "exactly one non-empty logout_token field is required")
    token = _validate_logout_token(values[0])
    issuer = services.resolve_issuer(token.issuer)
    try:
        if token.subject:
            services.check_identifier(token.subject, "sub")
        if token.session_id:
            services.check_identifier(token.session_id, "sid")
    except services.InvalidRequest as exc:
        raise HttpError(400, "invalid_request", f"invalid logout token: {exc}") from None
    actor = services.Actor.keycloak(f"backchannel-logout {token.jti}")
    replay_until = dt.datetime.fromtimestamp(token.replay_until, tz=dt.UTC)
    # The replay record and the revocation commit together: a failure leaves neither behind, so Keycloak's
    # next logout token for the same session is not refused as a replay of one that did nothing.
    with transaction.atomic():
        if not services.remember_once(SeenIdentifier.KIND_LOGOUT_TOKEN, token.jti, replay_until, issuer):
            logger.warning("back-channel logout: replayed jti refused")
            raise HttpError(400, "invalid_request", "invalid logout token: jti already used (replay)")
        if token.session_id:
            action = "revoke_session"
            rev = services.revoke_session(token.session_id, subject=token.subject or "", reason=Reason.LOGOUT,
                                          actor=actor, issuer=issuer, note="OIDC back-channel logout")
        else:
            action = "revoke_user"
            rev = services.revoke_user(token.subject, reason=Reason.LOGOUT, actor=actor, issuer=issuer,
                                       note="OIDC back-channel logout (no sid)")
    logger.info("back-channel logout: %s done (audit %s)", action, rev.audit_id)
    return json_response({"status": "ok", "action": action})


def _validate_logout_token(raw: str) -> LogoutToken:
    """Validated with the process's one JWKS client, the access-token validator's."""
    try:
        validator = LogoutTokenValidator(logout_token_policy(), get_validator().jwk_client)
    except (ImproperlyConfigured, ConfigurationError) as exc:
        raise HttpError(400, "not_configured", str(exc)) from None
    try:
        return validator.validate(raw)
    except TokenRejected as exc:
        logger.warning("back-channel logout: token refused: %s", exc.description)
        raise HttpError(400, "invalid_request", f"invalid logout token: {exc.description}") from None
    except Unavailable as exc:
        logger.warning("back-channel logout: %s", exc)
        raise HttpError(503, exc.code, str(exc), {"Retry-After": "1"}) from None


# Free text is kept in the audit trail: tabs and line breaks are text, other control characters are not.
_TEXT_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


def _no_control_characters(value: str) -> None:
    if _TEXT_CONTROL.search(value):
        raise serializers.ValidationError("control characters are not allowed")


class StringField(serializers.CharField):
    """A JSON string: DRF's CharField would turn a number into one (``{"session_id": 42}`` revoking "42")."""

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class RevocationRequestSerializer(serializers.Serializer):
    scope = serializers.ChoiceField(choices=["user", "session", "realm"])
    user = StringField(required=False, max_length=255, help_text="subject (Keycloak user id), username or email")
    session_id = StringField(required=False, max_length=255)
    reason = serializers.ChoiceField(choices=Reason.values, default=Reason.ADMIN)
    note = StringField(required=False, allow_blank=True, max_length=2000, default="",
                       validators=[_no_control_characters])

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if attrs["scope"] == "user" and not attrs.get("user"):
            raise serializers.ValidationError({"user": "required for scope=user"})
        if attrs["scope"] == "session" and not attrs.get("session_id"):
            raise serializers.ValidationError({"session_id": "required for scope=session"})
        return attrs


class CanRevoke(permissions.BasePermission):
    message = "the tokenversion_server.revoke_tokens permission is required"

    def has_permission(self, request, view) -> bool:
        user = request.user
        return bool(user and user.is_authenticated and user.has_perm("tokenversion_server.revoke_tokens"))


def revocation_payload(rev: services.Revocation) -> dict[str, Any]:
    return {
        "scope": rev.scope,
        "issuer": rev.issuer,
        "subject": rev.subject or None,
        "session_id": rev.session_id or None,
        "reason": rev.reason,
        "old_version": rev.old_version,
        "new_version": rev.new_version,
        "revoked_at": rev.at.isoformat(),
        "audit_id": rev.audit_id,
        # Session scope: the Keycloak session's fate ("ended", "not_found", "not_ended") and the row's keep.
        **({"keycloak_session": rev.keycloak_session, "kept_until": rev.kept_until and rev.kept_until.isoformat(),
            "keycloak_detail": rev.keycloak_detail} if rev.keycloak_session else {}),
    }


class BodyTooLarge(exceptions.APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = f"body larger than {MAX_BODY_BYTES} bytes"
    default_code = "body_too_large"


class RevocationJSONParser(parsers.JSONParser):
    """The machine endpoints' JSON rules: at most ``MAX_BODY_BYTES``, UTF-8, no repeated key, no ``NaN`` or
    ``Infinity``.

    DRF's own parser reads a body of any size and lets a deeply nested one raise RecursionError (a 500).
    """

    def parse(self, stream, media_type=None, parser_context=None) -> Any:
        body = stream.read(MAX_BODY_BYTES + 1)
        if len(body) > MAX_BODY_BYTES:
            raise BodyTooLarge()
        try:
            return loads_strict(body.decode("utf-8"))
        except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
            raise exceptions.ParseError("body is not valid UTF-8 JSON (or repeats a key, or has NaN or "
                                        "Infinity)") from None


class ApiKeyAuthentication(authentication.BaseAuthentication):
    """``Authorization: Token <key>`` with an ``ApiKey``: the request acts as the key's holder.

    A string that cannot be a key (see ``models.key_lookup_prefix``) is refused before the database is asked:
    PostgreSQL fails on a NUL, which would turn a bad credential into a 503. The key's hash is compared in
    constant time. ``request.auth`` is the ``ApiKey``, so the audit trail can say which key was used.
    """

    keyword = "Token"

    def authenticate(self, request):
        parts = authentication.get_authorization_header(request).split()
        if not parts or parts[0].lower() != self.keyword.lower().encode():
            return None
        if len(parts) == 1:  # DRF's messages, which callers of the earlier DRF tokens may match on
            raise exceptions.AuthenticationFailed("Invalid token header. No credentials provided.")
        if len(parts) > 2:
            raise exceptions.AuthenticationFailed("Invalid token header. Token string should not contain spaces.")
        try:
            key = parts[1].decode("ascii")
        except UnicodeDecodeError:
            raise exceptions.AuthenticationFailed("Invalid token.") from None
        api_key = ApiKey.objects.authenticate(key)
        if api_key is None:
            raise exceptions.AuthenticationFailed("Invalid token.")
        if not api_key.holder.is_active:
            raise exceptions.AuthenticationFailed("User inactive or deleted.")
        now = timezone.now()
        # One write a minute at most per key, not one per request.
        ApiKey.objects.filter(pk=api_key.pk).filter(
            Q(last_used_at__isnull=True) | Q(last_used_at__lt=now - _LAST_USED_RESOLUTION)
        ).update(last_used_at=now)
        return api_key.holder, api_key

    def authenticate_header(self, request) -> str:
        return self.keyword


_LAST_USED_RESOLUTION = dt.timedelta(minutes=1)


class AsciiJSONRenderer(renderers.JSONRenderer):
    """DRF's error messages echo the input ('"x" is not a valid choice'); escaped, an unpaired surrogate in it
    cannot break the UTF-8 encoding of the answer (a 500)."""

    ensure_ascii = True


# Error bodies carry a stable code, as the other endpoints' do; DRF's own exceptions get one from their class.
_REST_ERROR_CODES = {exceptions.ValidationError: "invalid_request", exceptions.ParseError: "invalid_request"}


class RevocationApiView(APIView):
    """``POST /tokenversion/revocations``: revoke a user, a session or the realm (SIEM, support tools).

    Callers authenticate with an API key (``Authorization: Token ...``, ``ApiKey``) or an admin session, and need the
    ``tokenversion_server.revoke_tokens`` permission. JSON bodies only, at most ``MAX_BODY_BYTES``.
    """

    authentication_classes = [ApiKeyAuthentication, authentication.SessionAuthentication]
    permission_classes = [CanRevoke]
    parser_classes = [RevocationJSONParser]
    renderer_classes = [AsciiJSONRenderer]

    def post(self, request) -> Response:
        # Checked before the body is read; only an authenticated caller with the permission gets this far.
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            raise exceptions.ParseError("bad Content-Length") from None
        if length > MAX_BODY_BYTES:
            raise BodyTooLarge()
        serializer = RevocationRequestSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        if isinstance(request.auth, ApiKey):
            actor = services.Actor.api_key(request.auth)
        else:
            actor = services.Actor.api(request.user)
        try:
            if data["scope"] == "user":
                subject = services.find_subject(data["user"])
                if subject is None:
                    raise exceptions.NotFound({"detail": "unknown user", "code": "unknown_user"})
                rev = services.revoke_user(subject, reason=data["reason"], actor=actor, note=data["note"])
            elif data["scope"] == "session":
                rev = services.revoke_session_everywhere(data["session_id"], reason=data["reason"], actor=actor,
                                                         note=data["note"])
            else:
                rev = services.revoke_realm(reason=data["reason"], actor=actor, note=data["note"])
        except services.InvalidRequest as exc:
            raise exceptions.ValidationError({"detail": str(exc)}) from None
        return Response(revocation_payload(rev), status=201, headers={"Cache-Control": "no-store"})

    def handle_exception(self, exc):
        """A database outage (here or in authentication) is a 503 JSON answer to retry, never a 500."""
        if isinstance(exc, DatabaseError):
            logger.exception("database error in the revocation API")
            set_rollback()
            return Response(
                {"detail": "the provider's database is unavailable, nothing was revoked",
                 "code": "unavailable"},
                status=503, headers={"Retry-After": "1", "Cache-Control": "no-store"},
            )
        response = super().handle_exception(exc)
        if isinstance(response.data, dict) and "code" not in response.data:
            response.data["code"] = _REST_ERROR_CODES.get(type(exc), getattr(exc, "default_code", "error"))
        response["Cache-Control"] = "no-store"
        return response
