"""Local validation of a Keycloak access token: everything that can be decided from the token and the keys.

The order of checks is deliberate: cheap structural checks and the algorithm allow-list come before any key
lookup, so hostile input never reaches the network or the signature code; the signature comes before any
claim is trusted; the token type comes last, because ID, refresh and logout tokens are validly signed by
the same keys and differ only in ``typ``.

The signature and the registered claims are checked here, not by ``jwt.decode``: PyJWT keeps the key set,
the key objects and the algorithms (the signature is verified by the key's own PyJWT algorithm object), and
``decode_verified`` applies PyJWT's decode rules, read from PyJWT 2.15's ``api_jws.py`` and ``api_jwt.py``
and restated step for step, in PyJWT's order, with PyJWT's outcome for each. It exists because PyJWT checks
the base64url alphabet one character at a time in Python, which was half of a ``jwt.decode``;
``tests/test_differential_validation.py`` runs it against ``jwt.decode`` on every token of the attack
corpus, on generated tokens and on valid ones, and requires the same answer.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import jwt
from jwt.exceptions import (
    InvalidKeyError,
    PyJWKClientConnectionError,
    PyJWKClientError,
    PyJWKError,
)
from jwt.warnings import InsecureKeyLengthWarning

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


# The base64url alphabet (RFC 4648 section 5); compact JWS segments use nothing else, and no padding.
_B64URL = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
_B64URL_AND_DOT = _B64URL + b"."
_B64URL_TO_B64 = bytes.maketrans(b"-_", b"+/")
# The last character of a segment of length 2 or 3 mod 4 carries 4 or 2 unused low bits. PyJWT refuses a
# segment that does not re-encode to itself, which for alphabet-only input means exactly: those bits are 0.
_CANONICAL_LAST = {0: None, 2: frozenset(_B64URL[::16]), 3: frozenset(_B64URL[::4])}


class _Malformed(Exception):
    """A segment PyJWT's ``_decode_base64url_segment`` refuses (its ``DecodeError``: "malformed token")."""


def _check_b64url(segment: bytes) -> None:
    """PyJWT's ``_decode_base64url_segment`` checks for a segment already known to hold only alphabet bytes
    and no padding: a length of 1 mod 4 is refused, and so is a last character with unused bits set (PyJWT's
    decode-and-re-encode comparison). PyJWT's per-character alphabet check is the caller's one
    ``bytes.translate`` over the whole token."""
    expected = _CANONICAL_LAST.get(len(segment) % 4, _Malformed)
    if expected is _Malformed or (expected is not None and segment[-1] not in expected):
        raise _Malformed


def _b64url_segment(segment: bytes) -> bytes:
    """``_check_b64url``, then the decoded bytes."""
    _check_b64url(segment)
    try:
        return binascii.a2b_base64(segment.translate(_B64URL_TO_B64) + b"=" * (-len(segment) % 4))
    except binascii.Error:
        raise _Malformed from None


# The PyJWT options of every token this package validates (access and logout tokens): every check on, audience
# matched as PyJWT's non-strict rule does; the required claims differ by token kind.
VERIFY_EVERYTHING: Mapping[str, bool] = MappingProxyType({
    "verify_signature": True,
    "verify_exp": True,
    "verify_iat": True,
    "verify_nbf": True,
    "verify_iss": True,
    "verify_aud": True,
    "strict_aud": False,
})


@dataclass(frozen=True)
class DecodeRules:
    """What ``jwt.decode(raw, key, algorithms=..., audience=..., issuer=..., leeway=..., options=...)`` would
    check, resolved once per validator: the options merged over PyJWT's defaults by PyJWT itself."""

    algorithms: tuple[str, ...]
    audience: tuple[str, ...] | None
    issuer: str | None
    leeway: float
    require: tuple[str, ...]
    verify_exp: bool
    verify_iat: bool
    verify_nbf: bool
    verify_iss: bool
    verify_aud: bool
    verify_sub: bool
    verify_jti: bool
    strict_aud: bool
    enforce_minimum_key_length: bool

    @classmethod
    def from_options(
        cls,
        options: Mapping[str, Any],
        *,
        algorithms: Sequence[str],
        audience: Sequence[str] | None,
        issuer: str | None,
        leeway: float,
    ) -> DecodeRules:
        """``options`` as ``jwt.decode`` takes them; merged with PyJWT's defaults by ``jwt.PyJWT`` itself, so
        an option left out means what it means to PyJWT. A decode without the signature check is not offered."""
        merged: Mapping[str, Any] = jwt.PyJWT(options=dict(options)).options  # type: ignore[arg-type]
        if not merged["verify_signature"]:
            raise ValueError("verify_signature cannot be turned off")
        if not algorithms:
            raise ValueError("an algorithm allow-list is required")
        return cls(
            algorithms=tuple(algorithms),
            audience=None if audience is None else tuple(audience),
            issuer=issuer,
            leeway=float(leeway),
            require=tuple(merged["require"]),
            verify_exp=bool(merged["verify_exp"]),
            verify_iat=bool(merged["verify_iat"]),
            verify_nbf=bool(merged["verify_nbf"]),
            verify_iss=bool(merged["verify_iss"]),
            verify_aud=bool(merged["verify_aud"]),
            verify_sub=bool(merged["verify_sub"]),
            verify_jti=bool(merged["verify_jti"]),
            strict_aud=bool(merged.get("strict_aud", False)),
            enforce_minimum_key_length=bool(merged.get("enforce_minimum_key_length", False)),
        )


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
        # What jwt.decode would be asked to check, resolved once (iss and aud are required by PyJWT's rules
        # whenever issuer and audience are given).
        self._rules = DecodeRules.from_options(
            {"require": list(policy.required_claims), **VERIFY_EVERYTHING, **policy.extra_options},
            algorithms=policy.algorithms,
            audience=policy.audience,
            issuer=policy.issuer,
            leeway=policy.leeway,
        )
        # Header segment -> (kid, header), for headers that passed check_header and key_id under this
        # (frozen) policy. Bounded like the parse cache: tokens signed with one key share one header segment.
        self._checked_headers: dict[str, tuple[str, Mapping[str, Any]]] = {}
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
        checked = self._checked_headers.get(check_shape(raw, policy.max_token_bytes))
        kid, header = checked if checked is not None else self._check_new_header(raw)
        key = self._cached_key(kid) if self._cached_key is not None else None
        if key is None:
            key = fetch_signing_key(self.jwk_client, kid)
        claims = decode_verified(raw, header, key, self._rules)
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

    def _check_new_header(self, raw: str) -> tuple[str, Mapping[str, Any]]:
        """The header checks (``check_header``, access-token ``typ``, ``key_id``) for a header segment this
        validator has not accepted before; an accepted segment is remembered with its ``kid``."""
        policy = self.policy
        header = check_header(raw, policy.max_token_bytes, policy.algorithms)
        typ = header.get("typ")
        if typ is not None and (not isinstance(typ, str) or typ.lower() not in _ACCESS_TOKEN_HEADER_TYPES):
            # Same keys sign logout tokens (logout+jwt) and others: explicit typing refuses them (RFC 8725).
            raise TokenInvalid("not an access token (header typ)")
        checked = (key_id(header), header)
        if len(self._checked_headers) < _MAX_PARSED_HEADERS:
            self._checked_headers[raw[: raw.index(".")]] = checked
        return checked

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


def decode_verified(raw: str, header: Mapping[str, Any], key: jwt.PyJWK, rules: DecodeRules) -> dict[str, Any]:
    """The signature, then PyJWT's registered-claim checks, then the NumericDate rule; every failure mapped to
    a short, safe error. ``header`` is ``read_header``'s parse of ``raw`` (``check_header`` passed).

    Step for step what PyJWT's ``decode`` (with the strict payload parse) did here before, kept as the
    reference in ``tests/reference_validation.py`` (PyJWT 2.15.1: ``PyJWS._load``, ``decode_complete``,
    ``_verify_signature``, then ``PyJWT._validate_claims``), with PyJWT's exception for each step mapped as
    before: ``DecodeError`` -> "malformed token", ``InvalidSignatureError`` -> "bad
    signature" and so on. The header is not parsed again: PyJWT's plain ``json.loads`` of it gives the same
    dict as ``strict_json``, which accepts a subset of what it accepts.
    """
    # PyJWS._load: UTF-8 bytes, then each segment's alphabet, length and unused bits. A non-ASCII or lone
    # surrogate character fails PyJWT's alphabet check or its encode; either way "malformed token". Every
    # byte is checked at once (check_shape has left exactly two dots).
    if not raw.isascii():
        raise TokenInvalid("malformed token")
    data = raw.encode("ascii")
    if data.translate(None, _B64URL_AND_DOT):
        raise TokenInvalid("malformed token")
    head, body, crypto = data.split(b".")
    detached = header.get("b64", True) is False
    try:
        _check_b64url(head)  # checked as PyJWT does; its parse is read_header's
        if detached:
            # RFC 7797 form: PyJWT wants the payload segment empty (and then refuses it below).
            if body:
                raise _Malformed
            payload = b""
        else:
            payload = _b64url_segment(body)
        signature = _b64url_segment(crypto)
    except _Malformed:
        raise TokenInvalid("malformed token") from None
    # PyJWS.decode_complete: kid and crit are check_header's and key_id's; b64=false needs "b64" in crit,
    # which check_header refuses, so PyJWT's InvalidTokenError.
    if detached:
        raise TokenInvalid("invalid token")
    # PyJWS._verify_signature with a PyJWK: the allow-list, then the key's own algorithm, not the header's.
    alg = header.get("alg")
    if not alg or alg not in rules.algorithms or alg != key.algorithm_name:
        raise TokenInvalid("algorithm not allowed")
    algorithm = key.Algorithm
    try:
        prepared = algorithm.prepare_key(key.key)
        short = algorithm.check_key_length(prepared)
        if short:
            if rules.enforce_minimum_key_length:
                raise TokenInvalid("unusable key")
            warnings.warn(short, InsecureKeyLengthWarning, stacklevel=2)
        if not algorithm.verify(data[: len(head) + 1 + len(body)], prepared, signature):
            raise TokenInvalid("bad signature")
    except InvalidKeyError:
        raise TokenInvalid("unusable key") from None
    except (ValueError, TypeError):
        raise TokenInvalid("malformed token") from None
    # PyJWT._decode_payload, as StrictPyJWT overrode it: strict JSON, an object.
    try:
        claims = strict_json(payload)
    except (ValueError, RecursionError):
        raise TokenInvalid("malformed token") from None
    if not isinstance(claims, dict):
        raise TokenInvalid("malformed token")
    _validate_claims(claims, rules)
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


def _validate_claims(claims: dict[str, Any], rules: DecodeRules) -> None:
    """``PyJWT._validate_claims`` (2.15.1), check for check and in its order, each exception as the old
    mapping named it: required, iat, nbf, exp, iss, aud, sub, jti. ``int()`` is PyJWT's own reading of a
    date (numeric strings and booleans pass it; the NumericDate rule after this refuses them)."""
    for name in rules.require:
        if claims.get(name) is None:
            raise TokenInvalid("missing required claim")
    now = time.time()
    leeway = rules.leeway
    if rules.verify_iat and "iat" in claims:
        try:
            iat = int(claims["iat"])
        except (ValueError, TypeError, OverflowError):
            raise TokenInvalid("malformed iat claim") from None
        if iat > now + leeway:
            raise TokenInvalid("token not yet valid")
    if rules.verify_nbf and "nbf" in claims:
        try:
            nbf = int(claims["nbf"])
        except (ValueError, TypeError, OverflowError):
            raise TokenInvalid("malformed token") from None
        if nbf > now + leeway:
            raise TokenInvalid("token not yet valid")
    if rules.verify_exp and "exp" in claims:
        try:
            exp = int(claims["exp"])
        except (ValueError, TypeError, OverflowError):
            raise TokenInvalid("malformed token") from None
        if exp <= now - leeway:
            raise TokenExpired("token expired")
    if rules.verify_iss and rules.issuer is not None:
        if "iss" not in claims:
            raise TokenInvalid("missing required claim")
        if claims["iss"] != rules.issuer:  # a non-string is never equal to the (string) issuer
            raise TokenInvalid("wrong issuer")
    if rules.verify_aud:
        _validate_aud(claims, rules)
    if rules.verify_sub and "sub" in claims and not isinstance(claims["sub"], str):
        raise TokenInvalid("malformed sub claim")
    if rules.verify_jti and "jti" in claims and not isinstance(claims["jti"], str):
        raise TokenInvalid("malformed jti claim")


def _validate_aud(claims: dict[str, Any], rules: DecodeRules) -> None:
    """``PyJWT._validate_aud``: the audience claim a string or a list of strings, one of ours among them."""
    audience = rules.audience
    present = claims.get("aud")  # PyJWT: absent, or any falsy value ("", [], 0, null...)
    if audience is None:
        if present:
            raise TokenInvalid("wrong audience")
        return
    if not present:
        raise TokenInvalid("missing required claim")
    if rules.strict_aud:
        # Only one audience, as a string, on both sides; the policy's is a tuple, so PyJWT refuses always.
        raise TokenInvalid("wrong audience")
    if isinstance(present, str):
        present = [present]
    if not isinstance(present, list) or any(not isinstance(item, str) for item in present):
        raise TokenInvalid("wrong audience")
    if all(name not in present for name in audience):
        raise TokenInvalid("wrong audience")


def audience_tuple(value: str | Sequence[str] | None) -> tuple[str, ...]:
    """Normalise the AUDIENCE setting (a string or a list of strings) to a tuple."""
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    return tuple(value)
