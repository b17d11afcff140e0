"""The verifier: from an ``Authorization`` header value to claims and a user, or a coded refusal.

Every front door (the DRF class, the plain Django middleware, and the others to come) is a thin adapter over
this one object, so a token gets the same answer whichever door it knocks on. It decides three things that
used to live in the DRF module: which header values are ours, what the RFC 6750 challenge says, and what the
error body looks like. No framework is imported here.

Outcomes:

- the header is absent or another scheme: ``authenticate`` returns ``None`` ("not mine");
- ``Bearer`` with no token, or with more than one value: ``MalformedRequest`` (400 ``invalid_request``);
- a bad, expired or revoked token: ``TokenRejected`` (401 ``invalid_token``);
- keys or revocation state unavailable, or an unexpected error: ``Unavailable`` (503, ``Retry-After: 1``).
  An unexpected error is never a reason to accept (fail closed).

``answer(error)`` turns any of these into an ``Answer``: status, headers and the body
``{"detail": ..., "code": ...}``.

An optional ``observer`` (a callable taking one outcome code) hears every decision: ``"accepted"`` or the
refusal's code (``token_revoked``, ``invalid_request``, ``revocation_store_unavailable``...). It is how
metrics are counted (``tokenversion.metrics``) without the core knowing about Prometheus; without one, the
hot path pays a single ``is None`` test. An observer must be fast and must not raise.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import TokenInvalid, TokenRejected, Unavailable
from .revocation import RevocationPolicy, RevocationStore, check_lifetime, check_revocation, is_identifier
from .tokens import AccessTokenValidator

logger = logging.getLogger("tokenversion")

SCHEME = "Bearer"
ACCEPTED = "accepted"  # the observer's outcome for a token that passed; refusals are their error's code

Observer = Callable[[str], None]


class MalformedRequest(Exception):
    """RFC 6750 section 3.1: ``Bearer`` with no token, or with more than one value (400 ``invalid_request``)."""

    code = "invalid_request"

    def __init__(self, description: str = "malformed Authorization header") -> None:
        super().__init__(description)
        self.description = description


class InternalError(Unavailable):
    """Something unexpected went wrong while deciding: refused with 503, and logged."""

    code = "internal_error"


@dataclass(frozen=True)
class Answer:
    """A refusal as every front door sends it."""

    status: int
    body: dict[str, str]
    headers: dict[str, str] = field(default_factory=dict)


def quote_safe(text: str) -> str:
    """Text fit for a quoted-string of the challenge: printable ASCII without quotes or backslashes."""
    return "".join(ch for ch in text if ch not in '"\\' and 0x20 <= ord(ch) < 0x7F)


def check_identifiers(claims: Mapping[str, Any]) -> None:
    """``sub`` and ``sid`` must be identifiers the revocation state can be kept under; anything else could
    never be revoked, so the token is refused before the store is asked."""
    if not is_identifier(claims["sub"]):
        raise TokenInvalid("malformed sub claim")
    sid = claims.get("sid")
    if sid is not None and not is_identifier(sid):
        raise TokenInvalid("malformed sid claim")


class Verifier:
    """Validates a bearer token locally, checks it against the revocation store, and builds its user.

    One per process (the validator holds the JWKS client and the verified-token cache, the store its feed
    thread). ``user_factory(claims)`` returns the request's user.
    """

    def __init__(self, validator: AccessTokenValidator, store: RevocationStore, policy: RevocationPolicy,
                 user_factory: Callable[[Mapping[str, Any]], Any], realm: str = "api",
                 observer: Observer | None = None) -> None:
        self.validator = validator
        self.store = store
        self.policy = policy
        self.user_factory = user_factory
        self.realm = quote_safe(realm)
        self.observer = observer

    def observe(self, outcome: str) -> None:
        """Tell the observer (if any) how a request ended; for adapters that run the steps themselves."""
        observer = self.observer
        if observer is not None:
            observer(outcome)

    # The steps, each usable on its own by an adapter that lets users override them.

    @staticmethod
    def token_from_header(header: str | None) -> str | None:
        """The token of ``Bearer <token>``; ``None`` when the header is absent or another scheme."""
        if not header:
            return None
        scheme, _, rest = header.strip().partition(" ")
        if scheme.lower() != SCHEME.lower():
            return None
        token = rest.strip()
        if not token or " " in token:
            raise MalformedRequest()
        return token

    def validate(self, raw: str) -> dict[str, Any]:
        return self.validator.validate(raw)

    def check_revocation(self, claims: Mapping[str, Any]) -> None:
        check_identifiers(claims)
        check_lifetime(claims, self.policy)  # before the store: a token that outlives its revocation is refused
        view = self.store.view(claims["iss"], claims["sub"], claims.get("sid"))
        check_revocation(claims, view, self.policy)

    # The whole path.

    def verify(self, raw: str) -> tuple[dict[str, Any], Any]:
        """Claims and user of a valid, unrevoked token; ``TokenRejected`` or ``Unavailable`` otherwise."""
        try:
            claims = self.validator.validate(raw)
            self.check_revocation(claims)
            result = claims, self.user_factory(claims)
        except (TokenRejected, Unavailable) as exc:
            if self.observer is not None:
                self.observer(exc.code)
            raise
        except Exception:
            logger.exception("unexpected error while authenticating a token")
            if self.observer is not None:
                self.observer(InternalError.code)
            raise InternalError("token validation failed unexpectedly") from None
        if self.observer is not None:
            self.observer(ACCEPTED)
        return result

    def authenticate(self, header: str | None) -> tuple[dict[str, Any], Any] | None:
        """``verify`` for a header value; ``None`` when the request carries no bearer token."""
        try:
            raw = self.token_from_header(header)
        except MalformedRequest:
            self.observe(MalformedRequest.code)
            raise
        return None if raw is None else self.verify(raw)

    # Answers.

    def challenge(self, error: BaseException | None = None) -> str:
        """The ``WWW-Authenticate`` value: bare for a missing token, with the error otherwise (RFC 6750 3)."""
        if isinstance(error, MalformedRequest):
            return f'{SCHEME} realm="{self.realm}", error="invalid_request"'
        if isinstance(error, TokenRejected):
            description = quote_safe(error.description)
            return f'{SCHEME} realm="{self.realm}", error="invalid_token", error_description="{description}"'
        return f'{SCHEME} realm="{self.realm}"'

    def answer(self, error: BaseException | None) -> Answer:
        """The refusal for ``error`` (``None``: no token where one is required)."""
        if error is None:
            return Answer(401, {"detail": "Authentication credentials were not provided.",
                                "code": "not_authenticated"}, {"WWW-Authenticate": self.challenge()})
        if isinstance(error, MalformedRequest):
            return Answer(400, {"detail": error.description, "code": error.code},
                          {"WWW-Authenticate": self.challenge(error)})
        if isinstance(error, TokenRejected):
            return Answer(401, {"detail": error.description, "code": error.code},
                          {"WWW-Authenticate": self.challenge(error)})
        if isinstance(error, Unavailable):
            return Answer(503, {"detail": str(error), "code": error.code}, {"Retry-After": "1"})
        raise TypeError(f"not a verifier outcome: {type(error).__name__}")
