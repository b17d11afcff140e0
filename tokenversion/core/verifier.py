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

An optional ``reporter`` (``tokenversion.reporting.Reporter``, or anything with its ``idle``, ``start`` and
``revoked_use``) hears of each refused **revoked** token with what the front door knows of the request
(client address, user agent, method, path): a front door calls ``report_refusal`` in its refusal path only,
so the accepted path pays one ``is None`` test (and, while reporting is on, one flag read that starts the
reporter's thread in the process that serves: threads do not survive a fork).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from .errors import TokenInvalid, TokenRejected, TokenRevoked, Unavailable
from .revocation import RevocationPolicy, RevocationStore, check_lifetime, check_revocation, is_identifier
from .tokens import AccessTokenValidator

logger = logging.getLogger("tokenversion")

SCHEME = "Bearer"
ACCEPTED = "accepted"  # the observer's outcome for a token that passed; refusals are their error's code

Observer = Callable[[str], None]


class Reporter(Protocol):
    """What the verifier needs of a reporter (``tokenversion.reporting.Reporter``)."""

    idle: bool

    def start(self) -> None: ...

    def revoked_use(self, error: TokenRevoked, *, client_address: str | None, user_agent: str | None,
                    method: str | None, path: str | None) -> None: ...


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
                 observer: Observer | None = None, reporter: Reporter | None = None) -> None:
        self.validator = validator
        self.store = store
        self.policy = policy
        self.user_factory = user_factory
        self.realm = quote_safe(realm)
        self.observer = observer
        self.reporter = reporter

    def observe(self, outcome: str) -> None:
        """Tell the observer (if any) how a request ended; for adapters that run the steps themselves."""
        reporter = self.reporter
        if reporter is not None and reporter.idle:
            reporter.start()
        observer = self.observer
        if observer is not None:
            observer(outcome)

    def wants_report(self, error: BaseException) -> bool:
        """True when ``error`` is a revoked token's refusal that a reporter should hear about: a front door
        asks before it gathers the request's facts, so nothing is gathered when reporting is off."""
        return self.reporter is not None and isinstance(error, TokenRevoked) and error.claims is not None

    def report_refusal(self, error: BaseException, *, client_address: str | None = None,
                       user_agent: str | None = None, method: str | None = None, path: str | None = None) -> None:
        """A front door's refusal, with what it knows of the request: a revoked token's use is queued for the
        provider (never blocks, never raises); any other refusal is ignored."""
        if not self.wants_report(error):
            return
        try:
            self.reporter.revoked_use(error, client_address=client_address, user_agent=user_agent,  # type: ignore[union-attr]
                                      method=method, path=path)
        except Exception:  # reporting must never turn a refusal into an error
            logger.debug("reporting a revoked token's use failed", exc_info=True)

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
        try:
            check_revocation(claims, view, self.policy)
        except TokenRevoked as exc:  # free on the accepted path (no exception, no cost)
            exc.claims = dict(claims)
            raise

    # The whole path.

    def verify(self, raw: str) -> tuple[dict[str, Any], Any]:
        """Claims and user of a valid, unrevoked token; ``TokenRejected`` or ``Unavailable`` otherwise."""
        reporter = self.reporter
        if reporter is not None and reporter.idle:
            reporter.start()
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
