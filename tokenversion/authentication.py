"""``TokenVersionAuthentication``: the DRF front door over the core verifier (``core/verifier.py``).

It only maps the verifier's outcomes onto DRF's contract; the rules live in the core. The steps are small
methods in the manner of simplejwt, each replaceable on its own:
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
from collections.abc import Mapping
from typing import Any

from rest_framework import exceptions, status
from rest_framework.authentication import BaseAuthentication

from .core.errors import TokenRejected, Unavailable
from .core.tokens import AccessTokenValidator
from .core.verifier import ACCEPTED, InternalError, MalformedRequest, Verifier
from .reporting import report_wsgi_refusal
from .runtime import get_runtime

logger = logging.getLogger("tokenversion")


def get_validator() -> AccessTokenValidator:
    """The process's one validator (and so its one JWKS client): the runtime's."""
    return get_runtime().validator


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

    def __init__(self, challenge: str) -> None:
        super().__init__({"detail": self.default_detail, "code": self.default_code}, code=self.default_code)
        # DRF's exception handler copies auth_header into WWW-Authenticate.
        self.auth_header = challenge


_ERROR_ATTR = "_tokenversion_error"


def _verifier() -> Verifier:
    return get_runtime().verifier


def _observe(outcome: str) -> None:
    """The verifier's observer (metrics) hears the outcome: this class runs the steps itself, so it tells
    (and the verifier starts its reporter's thread in the process that serves, when reporting is on)."""
    verifier = get_runtime().verifier
    reporter = verifier.reporter
    if reporter is not None and reporter.idle:
        reporter.start()
    observer = verifier.observer
    if observer is not None:
        observer(outcome)


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
            _observe(exc.code)
            django_request = getattr(request, "_request", request)
            report_wsgi_refusal(_verifier(), exc, django_request.META, django_request.method, django_request.path)
            setattr(request, _ERROR_ATTR, exc)
            raise exceptions.AuthenticationFailed(
                {"detail": exc.description, "code": exc.code}, code=exc.code
            ) from None
        except Unavailable as exc:
            _observe(exc.code)
            if not isinstance(exc, InternalError):
                logger.warning("refusing a token: %s", exc)
            raise ServiceUnavailable({"detail": str(exc), "code": exc.code}, code=exc.code) from None
        except exceptions.APIException:
            raise
        except Exception:
            # Fail closed: an unexpected error is logged and answered 503, never 500, never acceptance.
            _observe(InternalError.code)
            logger.exception("unexpected error while authenticating a token")
            raise ServiceUnavailable(
                {"detail": "token validation failed unexpectedly", "code": "internal_error"},
                code="internal_error",
            ) from None
        _observe(ACCEPTED)
        return user, claims

    def authenticate_header(self, request) -> str:
        return _verifier().challenge(getattr(request, _ERROR_ATTR, None))

    # The overridable steps.

    def get_header(self, request) -> str | None:
        # The Django request's META directly: DRF's Request proxies it through a Python __getattr__.
        value = getattr(request, "_request", request).META.get("HTTP_AUTHORIZATION")
        return value if isinstance(value, str) and value else None

    def get_raw_token(self, request, header: str) -> str | None:
        """The token from ``Bearer <token>``; ``None`` for another scheme; 400 for a malformed header."""
        try:
            return Verifier.token_from_header(header)
        except MalformedRequest as exc:
            _observe(exc.code)
            raise MalformedAuthorization(_verifier().challenge(exc)) from None

    def get_validated_claims(self, raw: str) -> dict[str, Any]:
        return _verifier().validate(raw)

    def check_revocation(self, claims: Mapping[str, Any]) -> None:
        _verifier().check_revocation(claims)

    def get_user(self, claims: Mapping[str, Any]) -> Any:
        return _verifier().user_factory(claims)
