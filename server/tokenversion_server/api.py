"""The provider's REST revocation API (``POST /tokenversion/revocations``, Django REST framework): for support
tools, a SIEM, any system holding an API key or an admin session with the ``revoke_tokens`` permission.

Its view, request serializer, JSON parser, permission and API-key authentication live here, apart from the
machine endpoints Keycloak calls (``machine.py``); both are thin layers over ``services``.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from typing import Any

from django.db import DatabaseError
from django.db.models import Q
from django.utils import timezone
from rest_framework import authentication, exceptions, parsers, permissions, renderers, serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView, set_rollback

from . import services
from .http import MAX_BODY_BYTES, loads_strict
from .models import ApiKey, RevocationEvent

Reason = RevocationEvent.Reason
logger = logging.getLogger("tokenversion.server")


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


class ProviderApiView(APIView):
    """The REST API's error answers: a stable ``code`` in each, ``no-store``, and a database outage a 503."""

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


class RevocationApiView(ProviderApiView):
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
            subject = ""
            if data["scope"] == "user":
                subject = services.find_subject(data["user"])
                if subject is None:
                    raise exceptions.NotFound({"detail": "unknown user", "code": "unknown_user"})
            rev = services.revoke(services.RevocationRequest(
                data["scope"], actor, data["reason"], subject=subject,
                session_id=data.get("session_id", "") if data["scope"] == "session" else "", note=data["note"]))
        except services.InvalidRequest as exc:
            raise exceptions.ValidationError({"detail": str(exc)}) from None
        return Response(revocation_payload(rev), status=201, headers={"Cache-Control": "no-store"})



class CanReadEnforcement(permissions.BasePermission):
    message = "the tokenversion_server.revoke_tokens or tokenversion_server.view_revocationevent permission is required"

    def has_permission(self, request, view) -> bool:
        user = request.user
        return bool(user and user.is_authenticated and (
            user.has_perm("tokenversion_server.revoke_tokens")
            or user.has_perm("tokenversion_server.view_revocationevent")))


class EnforcementApiView(ProviderApiView):
    """``GET /tokenversion/revocations/<id>/enforcement``: which service processes enforce that revocation, and
    how fast (docs/revocation.md). ``audit_id`` of the revocation POST's answer is the id. Separate from the POST,
    which answers at commit, before any service can have enforced anything."""

    authentication_classes = [ApiKeyAuthentication, authentication.SessionAuthentication]
    permission_classes = [CanReadEnforcement]
    renderer_classes = [AsciiJSONRenderer]

    def get(self, request, event_id: int) -> Response:
        from .enforcement import enforcement

        event = RevocationEvent.objects.filter(pk=event_id).first()
        if event is None:
            raise exceptions.NotFound({"detail": "no such revocation event", "code": "not_found"})
        return Response(enforcement(event).as_dict(), headers={"Cache-Control": "no-store"})

