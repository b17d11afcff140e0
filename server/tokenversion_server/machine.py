"""The provider's machine endpoints: called by Keycloak, not by people, and authenticated by a shared secret
(the claims endpoint, the Keycloak event receiver) or by a signed token (the OIDC back-channel logout receiver).

Each is a thin layer over ``services``, wrapped in ``http.machine_endpoint`` (JSON error bodies
``{"error", "detail"}``, 503 on a database outage). The REST API for people and other systems is ``api.py``.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.db import DatabaseError, transaction
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from django.utils.module_loading import import_string

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
    machine_endpoint,
    optional_string,
    read_form,
    read_json_object,
    require_secret,
)
from .models import RevocationEvent, SeenIdentifier

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


Scope = RevocationEvent.Scope
# Keycloak event types (docs/contract.md) -> the scope they revoke, and why.
_EVENT_ACTIONS: dict[str, tuple[str, str]] = {
    "session.logout": (Scope.SESSION, Reason.LOGOUT),
    "user.logout": (Scope.USER, Reason.LOGOUT),
    "user.credentials_changed": (Scope.USER, Reason.PASSWORD_CHANGE),
    "user.disabled": (Scope.USER, Reason.ADMIN),
    "user.deleted": (Scope.USER, Reason.ADMIN),
    "realm.logout_all": (Scope.REALM, Reason.ADMIN),
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
    scope, reason = _EVENT_ACTIONS[event_type]
    action = f"revoke_{scope}"  # the answer's "action": revoke_user, revoke_session or revoke_realm
    keycloak_event = optional_string(data, "keycloak_event", 64)
    time_ms = data.get("time")
    if time_ms is not None and (type(time_ms) is not int or time_ms < 0):
        raise HttpError(400, "invalid_request", "time must be milliseconds since the epoch")
    subject = _identifier(data, "user_id") if scope == Scope.USER or data.get("user_id") else ""
    session_id = _identifier(data, "session_id") if scope == Scope.SESSION else ""
    actor = services.Actor.keycloak(f"{keycloak_event or event_type} {event_id}")
    note = f"Keycloak event {event_type}" + (f" ({keycloak_event})" if keycloak_event else "")
    with transaction.atomic():
        if not services.remember_once(SeenIdentifier.KIND_EVENT, event_id,
                                      timezone.now() + _EVENT_ID_TTL, issuer):
            return json_response({"status": "ok", "action": action, "duplicate": True})
        # Keycloak has already ended a session it reports as logged out: no call back to end it.
        services.revoke(services.RevocationRequest(scope, actor, reason, subject=subject, session_id=session_id,
                                                   note=note, issuer=issuer, end_keycloak_session=False))
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
        scope = Scope.SESSION if token.session_id else Scope.USER
        note = "OIDC back-channel logout" if token.session_id else "OIDC back-channel logout (no sid)"
        # Keycloak sends this once the session is over there: nothing to end in Keycloak.
        rev = services.revoke(services.RevocationRequest(
            scope, actor, Reason.LOGOUT, subject=token.subject or "", session_id=token.session_id or "", note=note,
            issuer=issuer, end_keycloak_session=False))
        action = f"revoke_{scope}"
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
