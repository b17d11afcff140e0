"""Local validation of a Keycloak access token: everything that can be decided from the token and the keys.

The order of checks is deliberate: cheap structural checks and the algorithm allow-list come before any key
lookup, so hostile input never reaches the network or the signature code; the signature comes before any
claim is trusted; the token type comes last, because ID, refresh and logout tokens are validly signed by
the same keys and differ only in ``typ``.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import jwt
from jwt.exceptions import (
    ExpiredSignatureError,
    ImmatureSignatureError,
    InvalidTokenError,
    PyJWKClientConnectionError,
    PyJWKClientError,
    PyJWKError,
)

from .errors import KeysUnavailable, TokenExpired, TokenInvalid
from .keys import ResilientJWKClient

# Compact JWS only: three base64url segments. JWE (five segments) and JSON serialization never match.
_COMPACT_JWS = re.compile(r"^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$")
_MAX_KID_LENGTH = 256


@dataclass(frozen=True)
class TokenPolicy:
    """What a valid access token must look like for one service."""

    issuer: str
    audience: tuple[str, ...]
    jwks_url: str
    algorithms: tuple[str, ...] = ("RS256",)
    leeway: float = 5.0
    token_type: str | None = "Bearer"
    max_token_bytes: int = 8192
    required_claims: tuple[str, ...] = ("exp", "iat", "iss", "aud", "sub")
    jwks_lifespan: float = 300.0
    jwks_cooldown: float = 30.0
    jwks_timeout: float = 2.0
    jwks_stale_grace: float = 600.0
    extra_options: Mapping[str, Any] = field(default_factory=dict)


def _b64url_json(segment: str) -> Any:
    padded = segment + "=" * (-len(segment) % 4)
    return json.loads(base64.urlsafe_b64decode(padded.encode("ascii")))


def read_header(raw: str, max_bytes: int) -> dict[str, Any]:
    """Parse and sanity-check a compact JWS header without trusting anything in it.

    Raises ``TokenInvalid`` for anything that is not a plausible compact JWS; every parser failure
    (bad base64, bad UTF-8, bad or deeply nested JSON) maps to that one exception.
    """
    if len(raw) > max_bytes:
        raise TokenInvalid("token too large")
    if not _COMPACT_JWS.match(raw):
        raise TokenInvalid("not a compact JWS")
    try:
        header = _b64url_json(raw.split(".", 1)[0])
    except (ValueError, binascii.Error, UnicodeDecodeError, RecursionError):
        raise TokenInvalid("malformed token header") from None
    if not isinstance(header, dict):
        raise TokenInvalid("malformed token header")
    return header


class AccessTokenValidator:
    """Validates access tokens for one issuer and audience; one instance per process.

    Holds the process's single ``ResilientJWKClient``, so keys are fetched once and shared by every request.
    """

    def __init__(self, policy: TokenPolicy, jwk_client: jwt.PyJWKClient | None = None) -> None:
        self.policy = policy
        self.jwk_client = jwk_client or ResilientJWKClient(
            policy.jwks_url,
            lifespan=policy.jwks_lifespan,
            cooldown=policy.jwks_cooldown,
            timeout=policy.jwks_timeout,
            stale_grace=policy.jwks_stale_grace,
        )
        self._decoder = jwt.PyJWT()
        self._options = {
            "require": list(policy.required_claims),
            "verify_signature": True,
            "verify_exp": True,
            "verify_iat": True,
            "verify_nbf": True,
            "verify_iss": True,
            "verify_aud": True,
            "strict_aud": False,
            **policy.extra_options,
        }

    def validate(self, raw: str) -> dict[str, Any]:
        """Return the claims of a valid access token, or raise ``TokenRejected`` / ``KeysUnavailable``."""
        policy = self.policy
        header = read_header(raw, policy.max_token_bytes)
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in policy.algorithms:
            raise TokenInvalid("algorithm not allowed")
        if "crit" in header:
            # We implement no JWS extension, so any critical one must be refused (RFC 7515 section 4.1.11).
            raise TokenInvalid("unsupported critical header")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid or len(kid) > _MAX_KID_LENGTH:
            raise TokenInvalid("missing or malformed key id")
        key = self._signing_key(kid)
        try:
            claims = self._decoder.decode(
                raw,
                key=key,
                algorithms=list(policy.algorithms),
                audience=list(policy.audience),
                issuer=policy.issuer,
                leeway=policy.leeway,
                options=self._options,
            )
        except ExpiredSignatureError:
            raise TokenExpired("token expired") from None
        except ImmatureSignatureError:
            raise TokenInvalid("token not yet valid") from None
        except InvalidTokenError as exc:
            raise TokenInvalid(_describe(exc)) from None
        except (ValueError, TypeError, RecursionError, UnicodeDecodeError):
            raise TokenInvalid("malformed token") from None
        if not isinstance(claims, dict):
            raise TokenInvalid("malformed token payload")
        if policy.token_type is not None and claims.get("typ") != policy.token_type:
            raise TokenInvalid(f"not an access token (typ must be {policy.token_type})")
        if not isinstance(claims.get("sub"), str) or not claims["sub"]:
            raise TokenInvalid("malformed sub claim")
        return claims

    def _signing_key(self, kid: str) -> jwt.PyJWK:
        try:
            return self.jwk_client.get_signing_key(kid)
        except PyJWKClientConnectionError:
            raise KeysUnavailable("the issuer's signing keys cannot be fetched") from None
        except PyJWKClientError:
            raise TokenInvalid("unknown signing key") from None
        except PyJWKError:
            raise KeysUnavailable("the issuer's key set is unusable") from None



def _describe(exc: InvalidTokenError) -> str:
    """A short, safe description: the exception class says enough, its text may echo attacker input."""
    names = {
        "InvalidAudienceError": "wrong audience",
        "InvalidIssuerError": "wrong issuer",
        "InvalidSignatureError": "bad signature",
        "InvalidAlgorithmError": "algorithm not allowed",
        "MissingRequiredClaimError": "missing required claim",
        "InvalidIssuedAtError": "malformed iat claim",
        "DecodeError": "malformed token",
        "InvalidKeyError": "unusable key",
    }
    return names.get(type(exc).__name__, "invalid token")


def audience_tuple(value: str | Sequence[str] | None) -> tuple[str, ...]:
    """Normalise the AUDIENCE setting (a string or a list of strings) to a tuple."""
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    return tuple(value)
