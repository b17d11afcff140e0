"""The revocation rules, and the one small interface every store implements.

A token that passed local validation is still refused when any of these holds:

1. its version claim is lower than the subject's stored ``token_version`` (logout, compromise, ...);
2. its ``sid`` (Keycloak user session) has been revoked;
3. it was issued at or before the realm epoch ("everything issued before T is dead");
4. optionally, it was issued at or before the subject's ``last_logout_time`` (for issuers without the mapper).

Rules 3 and 4 compare ``iat`` (Keycloak's clock, whole seconds) with an instant ``T`` taken on the provider's
clock. Two margins, both in the refusing direction:

- one-second resolution: a token issued in the same second as a revocation cannot be told apart from one
  issued just before it, so both are refused; a fractional ``iat`` (Keycloak issues integers, but a
  token is not obliged to) is compared by its whole second too, so ``iat = T - 0.3`` in the second of ``T``
  is refused like ``iat = floor(T)``;
- clock skew: Keycloak's clock may run ahead of the provider's, so a token minted *before* the revocation
  can carry an ``iat`` a little *after* ``T``. Every ``iat`` up to ``LEEWAY`` seconds after ``T`` is refused.

The cut-off is therefore "floor(``iat``) <= floor(``T`` + ``LEEWAY``)". The cost is that a login within
``LEEWAY`` seconds after a realm revocation (or, with ``CHECK_LOGOUT_TIME``, after the user's logout) gets a
token that is refused and must be refreshed; the alternative would accept tokens minted before the
revocation. The clocks must be kept within ``LEEWAY`` of each other (NTP): docs/authentication.md.

One rule guards the others: every revocation is kept (on the provider and in the services' maps) for
``MAX_TOKEN_LIFETIME``, which is only enough if no token lives longer. ``check_lifetime`` refuses a token
whose ``exp - iat`` exceeds it, so a Keycloak client whose lifespan was raised cannot outlive a revocation.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from .errors import MissingClaim, TokenInvalid, TokenLifetimeExceeded, TokenRevoked

# Versions are stored as signed 64-bit integers (PostgreSQL bigint).
MAX_VERSION = 2**63 - 1
# Subjects and session ids are stored in 255-character columns; longer ones could never be revoked.
MAX_IDENTIFIER_LENGTH = 255
# NUL is refused by PostgreSQL and unpaired surrogates by UTF-8: either would make the store fail (503).
_UNSTORABLE = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")


@dataclass(frozen=True, slots=True)
class SubjectState:
    """What is stored for one subject: the current version and the last logout time (epoch seconds)."""

    token_version: int = 0
    last_logout_time: float | None = None


@dataclass(frozen=True, slots=True)
class RevocationView:
    """Everything the rules need to judge one token, as one store answer."""

    subject: SubjectState
    session_revoked: bool = False
    realm_not_before: float | None = None


@runtime_checkable
class RevocationStore(Protocol):
    """Where the authentication class reads revocation state.

    ``view`` answers for one token in one call, so a store can make it a single query or a single
    in-memory lookup. It raises ``StoreUnavailable`` when it cannot answer with data it can vouch for;
    it never guesses. ``invalidate`` is called after a revocation commits in this process, so that the
    process sees its own bump at once.
    """

    def view(self, issuer: str, subject: str, session_id: str | None) -> RevocationView: ...

    def invalidate(self, issuer: str, subject: str | None = None, session_id: str | None = None) -> None: ...

    def close(self) -> None:
        """Release what the store holds (threads, connections); called when settings change or at exit.
        Calling it twice is harmless."""
        ...


@dataclass(frozen=True)
class RevocationPolicy:
    """How strictly the version claim and the optional logout-time rule apply."""

    claim: str = "token_version"
    require_version_claim: bool = True
    check_logout_time: bool = False
    # Seconds Keycloak's clock may run ahead of the provider's: iat up to this long after T is refused.
    leeway: float = 0.0
    # The longest ``exp - iat`` accepted (None: no limit); revocations are kept this long.
    max_token_lifetime: float | None = None


def read_version_claim(claims: Mapping[str, Any], claim: str) -> int | None:
    """The token's version as an int, ``None`` when absent; anything but a plain non-negative integer is
    malformed (booleans, floats, strings, negative or out-of-range numbers included)."""
    if claim not in claims:
        return None
    value = claims[claim]
    if type(value) is not int or value < 0 or value > MAX_VERSION:
        raise TokenInvalid(f"malformed {claim} claim")
    return value


def is_identifier(value: Any) -> bool:
    """True for a ``sub`` or ``sid`` the revocation state can be kept under: a non-empty string of at most
    255 characters without control characters or unpaired surrogates. Anything else cannot be revoked, or
    would break the store's query, so the token is refused as malformed before the store is asked."""
    return (
        isinstance(value, str) and 0 < len(value) <= MAX_IDENTIFIER_LENGTH and _UNSTORABLE.search(value) is None
    )


def issued_at_or_before(iat: Any, instant: float, leeway: float = 0.0) -> bool:
    """True when a token with this ``iat`` may have been issued at or before ``instant``.

    ``iat`` counts whole seconds on Keycloak's clock, ``instant`` is the provider's: every token whose whole
    second is at most floor(``instant`` + ``leeway``) is treated as issued before it (fail closed; see the
    module docstring). Anything but a finite number is too.
    """
    if type(iat) is not int and not (isinstance(iat, float) and math.isfinite(iat)):
        return True
    return math.floor(iat) <= math.floor(instant + leeway)


def _seconds(value: Any) -> bool:
    return type(value) is int or (isinstance(value, float) and math.isfinite(value))


def check_lifetime(claims: Mapping[str, Any], policy: RevocationPolicy) -> None:
    """Raise ``TokenLifetimeExceeded`` when ``exp - iat`` is longer than ``MAX_TOKEN_LIFETIME``.

    Revocations are forgotten ``MAX_TOKEN_LIFETIME`` after they are made; a token that lives longer (a
    client whose access-token lifespan was raised in Keycloak) would be accepted again once its
    revocation is forgotten. Refusing it is one subtraction, and it makes the retention argument hold.
    """
    limit = policy.max_token_lifetime
    if limit is None:
        return
    iat, exp = claims.get("iat"), claims.get("exp")
    if not (_seconds(iat) and _seconds(exp)):
        raise TokenInvalid("malformed iat or exp claim")
    if exp - iat > limit:
        raise TokenLifetimeExceeded(
            f"token lifetime {exp - iat:g} s exceeds MAX_TOKEN_LIFETIME ({limit:g} s)"
        )


def check_revocation(claims: Mapping[str, Any], view: RevocationView, policy: RevocationPolicy) -> None:
    """Raise ``TokenRevoked`` (or ``MissingClaim`` / ``TokenInvalid``) when the token must be refused."""
    version = read_version_claim(claims, policy.claim)
    if version is None:
        if policy.require_version_claim:
            raise MissingClaim(f"token has no {policy.claim} claim")
    elif version < view.subject.token_version:
        raise TokenRevoked("token version revoked", hit="version")
    if view.session_revoked:
        raise TokenRevoked("session revoked", hit="session")
    iat = claims.get("iat")
    if view.realm_not_before is not None and issued_at_or_before(iat, view.realm_not_before, policy.leeway):
        raise TokenRevoked("issued before a realm-wide revocation", hit="realm")
    last_logout = view.subject.last_logout_time
    if (policy.check_logout_time and last_logout is not None
            and issued_at_or_before(iat, last_logout, policy.leeway)):
        raise TokenRevoked("issued before the user's last logout", hit="logout_time")
