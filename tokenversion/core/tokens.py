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
import time
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

from .cache import MISSING, TTLCache
from .errors import KeysUnavailable, TokenExpired, TokenInvalid
from .keys import ResilientJWKClient

# Compact JWS only: three segments (JWE has five; JSON serialization has none), base64url throughout.
_SEGMENT = re.compile(r"[A-Za-z0-9_-]+\Z")
# Every token an issuer signs with one key has the same header segment, so parses are kept, by exact
# segment, up to a small bound (hostile headers beyond it are simply parsed each time).
_parsed_headers: dict[str, dict[str, Any]] = {}
_MAX_PARSED_HEADERS = 64
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
    # iss and aud are required by PyJWT whenever issuer and audience are given; sub is checked after decode.
    required_claims: tuple[str, ...] = ("exp", "iat")
    jwks_lifespan: float = 300.0
    jwks_cooldown: float = 30.0
    jwks_timeout: float = 2.0
    jwks_stale_grace: float = 600.0
    claims_cache_size: int = 10_000
    extra_options: Mapping[str, Any] = field(default_factory=dict)


def _b64url_json(segment: str) -> Any:
    padded = segment + "=" * (-len(segment) % 4)
    return json.loads(base64.urlsafe_b64decode(padded.encode("ascii")))


def read_header(raw: str, max_bytes: int) -> dict[str, Any]:
    """Parse and sanity-check a compact JWS header without trusting anything in it.

    Raises ``TokenInvalid`` for anything that is not a plausible compact JWS; every parser failure
    (bad base64, bad UTF-8, bad or deeply nested JSON) maps to that one exception. The payload and
    signature segments are checked by PyJWT when it verifies the signature.
    """
    if len(raw) > max_bytes:
        raise TokenInvalid("token too large")
    if raw.count(".") != 2:
        raise TokenInvalid("not a compact JWS")
    head = raw[: raw.index(".")]
    known = _parsed_headers.get(head)
    if known is not None:
        return dict(known)
    if not _SEGMENT.match(head):
        raise TokenInvalid("not a compact JWS")
    try:
        header = _b64url_json(head)
    except (ValueError, binascii.Error, UnicodeDecodeError, RecursionError):
        raise TokenInvalid("malformed token header") from None
    if not isinstance(header, dict):
        raise TokenInvalid("malformed token header")
    if len(_parsed_headers) < _MAX_PARSED_HEADERS:
        _parsed_headers[head] = dict(header)
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
        # Verified claims by exact token string, until exp: a repeated token skips the signature check.
        self._verified: TTLCache[tuple[dict[str, Any], str]] | None = (
            TTLCache(ttl=0, max_entries=policy.claims_cache_size) if policy.claims_cache_size else None
        )
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
        if self._verified is not None:
            hit = self._verified.get(raw)
            if hit is not MISSING and self._still_trusted(hit[1]):
                return dict(hit[0])
        header = check_header(raw, policy.max_token_bytes, policy.algorithms)
        kid = key_id(header)
        key = self._signing_key(kid)
        claims = decode_verified(
            self._decoder,
            raw,
            key,
            algorithms=policy.algorithms,
            audience=policy.audience,
            issuer=policy.issuer,
            leeway=policy.leeway,
            options=self._options,
        )
        if policy.token_type is not None and claims.get("typ") != policy.token_type:
            raise TokenInvalid(f"not an access token (typ must be {policy.token_type})")
        if not isinstance(claims.get("sub"), str) or not claims["sub"]:
            raise TokenInvalid("malformed sub claim")
        if self._verified is not None and type(claims.get("exp")) in (int, float):
            # Trusted until exp + leeway on the wall clock; expiry on the monotonic clock, the cache's.
            remaining = claims["exp"] + policy.leeway - time.time()
            if remaining > 0:
                self._verified.put(raw, (dict(claims), kid), ttl=remaining)
        return claims

    def _still_trusted(self, kid: str) -> bool:
        """A cached token stays valid only while its signing key is still in the issuer's current set."""
        cached_key = getattr(self.jwk_client, "cached_key", None)
        return cached_key is not None and cached_key(kid) is not None

    def _signing_key(self, kid: str) -> jwt.PyJWK:
        return fetch_signing_key(self.jwk_client, kid)


# The steps every signed token this package accepts goes through (access tokens here, logout tokens in
# ``logout_tokens``), in this order: ``check_header`` -> ``key_id`` -> ``fetch_signing_key`` ->
# ``decode_verified``. One code path, so a fix to one kind of token is a fix to all.


def check_header(raw: str, max_bytes: int, algorithms: Sequence[str]) -> dict[str, Any]:
    """``read_header``, then the algorithm allow-list and the ``crit`` refusal; no network, no key."""
    header = read_header(raw, max_bytes)
    alg = header.get("alg")
    if not isinstance(alg, str) or alg not in algorithms:
        raise TokenInvalid("algorithm not allowed")
    if "crit" in header:
        # We implement no JWS extension, so any critical one must be refused (RFC 7515 section 4.1.11).
        raise TokenInvalid("unsupported critical header")
    return header


def key_id(header: Mapping[str, Any]) -> str:
    """The header's ``kid``, an opaque lookup string of bounded length."""
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid or len(kid) > _MAX_KID_LENGTH:
        raise TokenInvalid("missing or malformed key id")
    return kid


def fetch_signing_key(jwk_client: jwt.PyJWKClient, kid: str) -> jwt.PyJWK:
    """The issuer's key for ``kid``: ``TokenInvalid`` when unknown, ``KeysUnavailable`` when unfetchable."""
    try:
        return jwk_client.get_signing_key(kid)
    except PyJWKClientConnectionError:
        raise KeysUnavailable("the issuer's signing keys cannot be fetched") from None
    except PyJWKClientError:
        raise TokenInvalid("unknown signing key") from None
    except PyJWKError:
        raise KeysUnavailable("the issuer's key set is unusable") from None


def decode_verified(
    decoder: jwt.PyJWT,
    raw: str,
    key: jwt.PyJWK,
    *,
    algorithms: Sequence[str],
    audience: Sequence[str],
    issuer: str,
    leeway: float,
    options: Mapping[str, Any],
) -> dict[str, Any]:
    """Signature, then PyJWT's registered-claim checks; every failure mapped to a short, safe error."""
    try:
        claims = decoder.decode(
            raw,
            key=key,
            algorithms=list(algorithms),
            audience=list(audience),
            issuer=issuer,
            leeway=leeway,
            options=dict(options),
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
    return claims


def _describe(exc: InvalidTokenError) -> str:
    """A short, safe description: the exception class says enough, its text may echo attacker input."""
    names = {
        "InvalidAudienceError": "wrong audience",
        "InvalidIssuerError": "wrong issuer",
        "InvalidSignatureError": "bad signature",
        "InvalidAlgorithmError": "algorithm not allowed",
        "MissingRequiredClaimError": "missing required claim",
        "InvalidIssuedAtError": "malformed iat claim",
        "InvalidSubjectError": "malformed sub claim",
        "InvalidJTIError": "malformed jti claim",
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
