"""``TokenVersionAuthentication``: local JWT validation, then the revocation check, for DRF.

The steps are small methods in the manner of simplejwt, each replaceable on its own:
``get_header`` -> ``get_raw_token`` -> ``get_validated_claims`` -> ``check_revocation`` -> ``get_user``.

Outcomes follow DRF's contract and RFC 6750:

- no Authorization header, or another scheme: ``None`` (the next authentication class may try);
- bad, expired or revoked token: 401 with ``WWW-Authenticate: Bearer error="invalid_token"``, and a body
  ``{"detail": ..., "code": ...}`` whose code is one of ``token_invalid``, ``token_expired``,
  ``token_revoked``, ``token_missing_claim``, ``token_lifetime_exceeded`` (``exp - iat`` above
  ``MAX_TOKEN_LIFETIME``);
- keys or revocation state unavailable: 503 ``{"code": "keys_unavailable" | "revocation_store_unavailable"}``.

The error details reach the ``WWW-Authenticate`` header only when this class is the *first* in the view's
authentication classes (DRF asks the first class for the header); the system check ``tokenversion.W004``
says so.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

from django.utils.module_loading import import_string
from rest_framework import exceptions, status
from rest_framework.authentication import BaseAuthentication

from .conf import get_settings, on_reset
from .core.errors import TokenInvalid, TokenRejected, Unavailable
from .core.revocation import RevocationPolicy, check_lifetime, check_revocation, is_identifier
from .core.tokens import AccessTokenValidator
from .stores import get_store
from .users import TokenUser

logger = logging.getLogger("tokenversion")

_validator: AccessTokenValidator | None = None
_validator_lock = threading.Lock()


def get_validator() -> AccessTokenValidator:
    """The process's one validator (and so its one JWKS client), built on first use."""
    global _validator
    if _validator is None:
        with _validator_lock:
            if _validator is None:
                _validator = AccessTokenValidator(get_settings().token_policy())
    return _validator


class _Resolved(NamedTuple):
    """What every request needs from the settings, resolved once per settings object (not per request):
    the revocation policy, the ``USER_LOOKUP`` callable (imported once), the roles client."""

    revocation_policy: RevocationPolicy
    user_lookup: Callable[[Mapping[str, Any]], Any] | None
    roles_client: str | None


_resolved: _Resolved | None = None


def _resolve() -> _Resolved:
    global _resolved
    resolved = _resolved
    if resolved is None:
        conf = get_settings()
        lookup = import_string(conf.user_lookup) if conf.user_lookup else None
        resolved = _resolved = _Resolved(conf.revocation_policy(), lookup, conf.roles_client)
    return resolved


def _reset_validator() -> None:
    global _validator, _resolved
    _validator = None
    _resolved = None


on_reset(_reset_validator)


class ServiceUnavailable(exceptions.APIException):
    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_detail = "Token validation is temporarily unavailable."
    default_code = "unavailable"
    wait = 1  # DRF turns this into Retry-After: 1


class MalformedAuthorization(exceptions.APIException):
    """RFC 6750 section 3.1: a malformed request (``Bearer`` with no token, or more than one value) is
    400 ``invalid_request``, not a bad token; the challenge still names the scheme."""

    status_code = status.HTTP_400_BAD_REQUEST
    default_detail = "malformed Authorization header"
    default_code = "invalid_request"

    def __init__(self, realm: str) -> None:
        super().__init__({"detail": self.default_detail, "code": self.default_code}, code=self.default_code)
        # DRF's exception handler copies auth_header into WWW-Authenticate.
        self.auth_header = f'Bearer realm="{realm}", error="invalid_request"'


_ERROR_ATTR = "_tokenversion_error"


class TokenVersionAuthentication(BaseAuthentication):
    keyword = "Bearer"

    def authenticate(self, request) -> tuple[Any, dict[str, Any]] | None:
        header = self.get_header(request)
        if header is None:
            return None
        raw = self.get_raw_token(request, header)
        if raw is None:
            return None
        try:
            claims = self.get_validated_claims(raw)
            self.check_revocation(claims)
            user = self.get_user(claims)
        except TokenRejected as exc:
            setattr(request, _ERROR_ATTR, exc)
            raise exceptions.AuthenticationFailed(
                {"detail": exc.description, "code": exc.code}, code=exc.code
            ) from None
        except Unavailable as exc:
            logger.warning("refusing a token: %s", exc)
            raise ServiceUnavailable({"detail": str(exc), "code": exc.code}, code=exc.code) from None
        except exceptions.APIException:
            raise
        except Exception:
            # Fail closed: an unexpected error is logged and answered 503, never 500, never acceptance.
            logger.exception("unexpected error while authenticating a token")
            raise ServiceUnavailable(
                {"detail": "token validation failed unexpectedly", "code": "internal_error"},
                code="internal_error",
            ) from None
        return user, claims

    def authenticate_header(self, request) -> str:
        realm = get_settings().www_authenticate_realm
        error: TokenRejected | None = getattr(request, _ERROR_ATTR, None)
        if error is None:
            return f'{self.keyword} realm="{realm}"'
        description = _quote_safe(error.description)
        return f'{self.keyword} realm="{realm}", error="invalid_token", error_description="{description}"'

    # The overridable steps.

    def get_header(self, request) -> str | None:
        # The Django request's META directly: DRF's Request proxies it through a Python __getattr__.
        value = getattr(request, "_request", request).META.get("HTTP_AUTHORIZATION")
        return value if isinstance(value, str) and value else None

    def get_raw_token(self, request, header: str) -> str | None:
        """The token from ``Bearer <token>``; ``None`` for another scheme; 400 for a malformed header."""
        scheme, _, rest = header.strip().partition(" ")
        if scheme.lower() != self.keyword.lower():
            return None
        token = rest.strip()
        if not token or " " in token:
            raise MalformedAuthorization(_quote_safe(get_settings().www_authenticate_realm))
        return token

    def get_validated_claims(self, raw: str) -> dict[str, Any]:
        return (_validator or get_validator()).validate(raw)

    def check_revocation(self, claims: Mapping[str, Any]) -> None:
        if not is_identifier(claims["sub"]):
            raise TokenInvalid("malformed sub claim")
        sid = claims.get("sid")
        if sid is not None and not is_identifier(sid):
            raise TokenInvalid("malformed sid claim")
        policy = (_resolved or _resolve()).revocation_policy
        check_lifetime(claims, policy)  # before the store: a token that outlives its revocation is refused
        view = get_store().view(claims["iss"], claims["sub"], sid)
        check_revocation(claims, view, policy)

    def get_user(self, claims: Mapping[str, Any]) -> Any:
        resolved = _resolved or _resolve()  # the global read spares a call per request
        if resolved.user_lookup is not None:
            user = resolved.user_lookup(claims)
            if user is not None:
                return user
        return TokenUser(claims, resolved.roles_client)


def _quote_safe(text: str) -> str:
    return "".join(ch for ch in text if ch not in '"\\' and 0x20 <= ord(ch) < 0x7F)
