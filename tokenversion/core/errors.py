"""Every way a request can fail, as exceptions that carry a stable machine-readable code.

Two families, because a client must react to them differently: ``TokenRejected`` means *this token* is no
good (401, get a new one); ``Unavailable`` means *we* cannot decide right now (503, retry), and we refuse
rather than accept on doubt.
"""

from __future__ import annotations


class TokenRejected(Exception):
    """The token must not be accepted; the client needs a new one (HTTP 401, ``invalid_token``)."""

    code = "token_invalid"

    def __init__(self, description: str) -> None:
        super().__init__(description)
        self.description = description


class TokenInvalid(TokenRejected):
    """Malformed, wrongly signed, for another issuer or audience, or of the wrong type."""

    code = "token_invalid"


class TokenExpired(TokenRejected):
    """Past its ``exp`` (beyond the leeway)."""

    code = "token_expired"


class TokenLifetimeExceeded(TokenRejected):
    """Lives longer (``exp - iat``) than ``MAX_TOKEN_LIFETIME``, the time revocations are kept: accepting it
    could accept it after its revocation is forgotten. Usually a Keycloak lifespan raised above the setting."""

    code = "token_lifetime_exceeded"


class TokenRevoked(TokenRejected):
    """Valid as a JWT, but revoked: older version, revoked session, realm epoch or logout time.

    ``hit`` says which revocation refused it (``version``, ``session``, ``realm``, ``logout_time``; ``unknown``
    when a custom store cannot tell), and ``claims`` are the refused token's validated claims, set by the
    verifier: both for the report of a revoked token's use (``tokenversion.reporting``). Built only on refusal,
    so the accepted path pays nothing for them."""

    code = "token_revoked"
    HITS = ("version", "session", "realm", "logout_time", "unknown")

    def __init__(self, description: str, hit: str = "unknown") -> None:
        super().__init__(description)
        self.hit = hit if hit in self.HITS else "unknown"
        self.claims: dict | None = None


class MissingClaim(TokenRejected):
    """The token has no version claim while the policy requires one (issued without the mapper)."""

    code = "token_missing_claim"


class Unavailable(Exception):
    """State needed for a decision cannot be trusted right now (HTTP 503); never a reason to accept."""

    code = "unavailable"


class StoreUnavailable(Unavailable):
    """The revocation store cannot answer, or its data is staler than the configured bound."""

    code = "revocation_store_unavailable"


class KeysUnavailable(Unavailable):
    """The issuer's signing keys cannot be fetched and no usable copy is held."""

    code = "keys_unavailable"


class ConfigurationError(ValueError):
    """Options a component cannot work with (a store's, the settings'); the message names each problem.

    Framework-free, so stores and settings can be built without Django; the Django layer reports it as a
    system check error and ``ImproperlyConfigured`` callers still catch it as a ``ValueError``."""
