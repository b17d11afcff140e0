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
import math
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import jwt
from jwt.exceptions import (
    DecodeError,
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
# segment, up to a small bound (hostile headers beyond it are simply parsed each time). They are kept and
# handed out read-only, so no caller can change what the next token's header is taken to say.
_parsed_headers: dict[str, Mapping[str, Any]] = {}
_MAX_PARSED_HEADERS = 64
_MAX_KID_LENGTH = 256
_MAX_DATE = 2**63  # NumericDate bound (seconds either side of the epoch)
# Header typ values of an access token (RFC 9068 at+jwt, or Keycloak's JWT); logout+jwt, secevent+jwt... are not.
_ACCESS_TOKEN_HEADER_TYPES = frozenset({"jwt", "at+jwt", "application/jwt", "application/at+jwt"})


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


def _unique_members(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        raise ValueError("duplicate member name")
    return result


# Built once: json.loads(..., object_pairs_hook=...) builds a decoder and its scanner on every call, which
# cost as much again as the parse itself. Sharing one between threads is what json.loads does too.
_STRICT_DECODER = json.JSONDecoder(object_pairs_hook=_unique_members)


def strict_json(data: bytes) -> Any:
    """UTF-8 JSON with unique member names (RFC 7515/7519 allow a parser to keep the last duplicate; refusing
    them leaves no room for two parsers to read one token two ways). Raises ValueError or RecursionError."""
    return _STRICT_DECODER.decode(data.decode("utf-8"))


def _b64url_json(segment: str) -> Any:
    padded = segment + "=" * (-len(segment) % 4)
    return strict_json(base64.urlsafe_b64decode(padded.encode("ascii")))


class StrictPyJWT(jwt.PyJWT):
    """PyJWT with the payload parsed by ``strict_json`` (PyJWT's documented override point)."""

    def _decode_payload(self, decoded: dict[str, Any]) -> dict[str, Any]:
        try:
            payload = strict_json(decoded["payload"])
        except (ValueError, RecursionError):
            raise DecodeError("Invalid payload string") from None
        if not isinstance(payload, dict):
            raise DecodeError("Invalid payload string: must be a json object")
        return payload


def check_shape(raw: str, max_bytes: int) -> str:
    """The header segment of a plausible compact JWS; checked for every token, even one whose header
    segment is already known: size bound, three segments, no padding. Nothing is parsed."""
    if len(raw) > max_bytes:
        raise TokenInvalid("token too large")
    if raw.count(".") != 2 or "=" in raw:
        # PyJWT accepts trailing "=" padding; compact JWS has none (RFC 7515 section 2).
        raise TokenInvalid("not a compact JWS")
    return raw[: raw.index(".")]


def read_header(raw: str, max_bytes: int) -> Mapping[str, Any]:
    """Parse and sanity-check a compact JWS header without trusting anything in it.

    Raises ``TokenInvalid`` for anything that is not a plausible compact JWS; every parser failure
    (bad base64, bad UTF-8, bad or deeply nested JSON) maps to that one exception. The payload and
    signature segments are checked by PyJWT when it verifies the signature. The answer is read-only: it
    may be the cached parse, shared by every token with this header segment.
    """
    head = check_shape(raw, max_bytes)
    known = _parsed_headers.get(head)
    if known is not None:
        return known
    if not _SEGMENT.match(head):
        raise TokenInvalid("not a compact JWS")
    try:
        header = _b64url_json(head)
    except (ValueError, binascii.Error, UnicodeDecodeError, RecursionError):
        raise TokenInvalid("malformed token header") from None
    if not isinstance(header, dict):
        raise TokenInvalid("malformed token header")
    frozen = MappingProxyType(header)
    if len(_parsed_headers) < _MAX_PARSED_HEADERS:
        _parsed_headers[head] = frozen
    return frozen


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
        # The options are the decoder's own defaults, so PyJWT merges nothing per call (decode_verified
        # passes options=None); the policy's tuples are passed as they are, never copied per call.
        self._decoder = StrictPyJWT(options=self._options)
        # Header segment -> kid, for headers that passed check_header and key_id under this (frozen) policy.
        # Bounded like the parse cache: tokens signed with one key share one header segment.
        self._checked_kids: dict[str, str] = {}
        # A client without the kid index (a plain PyJWKClient) always goes through fetch_signing_key.
        self._cached_key: Callable[[str], jwt.PyJWK | None] | None = getattr(self.jwk_client, "cached_key", None)
        # The verified-token cache's use, read by metrics (tokenversion.metrics). Plain integers: under threads
        # an increment can be lost now and then, which a hit *rate* tolerates; a lock here would not be free.
        self.cache_lookups = 0
        self.cache_hits = 0

    def validate(self, raw: str) -> dict[str, Any]:
        """Return the claims of a valid access token, or raise ``TokenRejected`` / ``KeysUnavailable``."""
        policy = self.policy
        verified = self._verified
        if verified is not None:
            self.cache_lookups += 1
            hit = verified.get(raw)
            if hit is not MISSING and self._still_trusted(hit[1]):
                self.cache_hits += 1
                return dict(hit[0])
        kid = self._checked_kids.get(check_shape(raw, policy.max_token_bytes))
        if kid is None:
            kid = self._check_new_header(raw)
        key = self._cached_key(kid) if self._cached_key is not None else None
        if key is None:
            key = fetch_signing_key(self.jwk_client, kid)
        claims = decode_verified(
            self._decoder,
            raw,
            key,
            algorithms=policy.algorithms,
            audience=policy.audience,
            issuer=policy.issuer,
            leeway=policy.leeway,
        )
        if policy.token_type is not None and claims.get("typ") != policy.token_type:
            raise TokenInvalid(f"not an access token (typ must be {policy.token_type})")
        sub = claims.get("sub")
        if not isinstance(sub, str) or not sub:
            raise TokenInvalid("malformed sub claim")
        if verified is not None:
            exp = claims.get("exp")
            if type(exp) is int or type(exp) is float:
                # Trusted until exp + leeway on the wall clock; expiry on the monotonic clock, the cache's.
                remaining = exp + policy.leeway - time.time()
                if remaining > 0:
                    verified.put(raw, (dict(claims), kid), ttl=remaining)
        return claims

    def _check_new_header(self, raw: str) -> str:
        """The header checks (``check_header``, access-token ``typ``, ``key_id``) for a header segment this
        validator has not accepted before; an accepted segment is remembered with its ``kid``."""
        policy = self.policy
        header = check_header(raw, policy.max_token_bytes, policy.algorithms)
        typ = header.get("typ")
        if typ is not None and (not isinstance(typ, str) or typ.lower() not in _ACCESS_TOKEN_HEADER_TYPES):
            # Same keys sign logout tokens (logout+jwt) and others: explicit typing refuses them (RFC 8725).
            raise TokenInvalid("not an access token (header typ)")
        kid = key_id(header)
        if len(self._checked_kids) < _MAX_PARSED_HEADERS:
            self._checked_kids[raw[: raw.index(".")]] = kid
        return kid

    def _still_trusted(self, kid: str) -> bool:
        """A cached token stays valid only while its signing key is still in the issuer's current set."""
        cached_key = self._cached_key
        return cached_key is not None and cached_key(kid) is not None

    def _signing_key(self, kid: str) -> jwt.PyJWK:
        return fetch_signing_key(self.jwk_client, kid)


# The steps every signed token this package accepts goes through (access tokens here, logout tokens in
# ``logout_tokens``), in this order: ``check_header`` -> ``key_id`` -> ``fetch_signing_key`` ->
# ``decode_verified``. One code path, so a fix to one kind of token is a fix to all.


def check_header(raw: str, max_bytes: int, algorithms: Sequence[str]) -> Mapping[str, Any]:
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
    options: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Signature, then PyJWT's registered-claim checks; every failure mapped to a short, safe error.

    ``options=None`` uses the decoder's own (``jwt.PyJWT(options=...)``), which spares PyJWT two dict merges
    per call. Nothing is copied here: PyJWT only reads ``algorithms``, ``audience`` and ``options``.
    """
    try:
        claims = decoder.decode_complete(
            raw,
            key=key,
            algorithms=algorithms,
            options=options,  # type: ignore[arg-type]  # a Mapping PyJWT only reads
            audience=audience,
            issuer=issuer,
            leeway=leeway,
        )["payload"]
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
    for name in ("exp", "iat", "nbf"):
        # PyJWT reads these with int(), so "9999999999" or true pass it; a NumericDate is a JSON number.
        # (Inline: this runs for every first-seen token.)
        # Within 64-bit seconds too: an int beyond float range would overflow the expiry arithmetic (a 503).
        value = claims.get(name, 0)
        if (type(value) is not int and not (type(value) is float and math.isfinite(value))) or not (
            -_MAX_DATE <= value <= _MAX_DATE
        ):
            raise TokenInvalid(f"malformed {name} claim")
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
