"""Validation of an OIDC Back-Channel Logout 1.0 logout token (section 2.6 of the spec), as Keycloak sends it.

A logout token is signed by the same realm keys as access, ID and refresh tokens, so everything that tells
them apart is checked here: the header ``typ`` (``logout+jwt``, RFC 8725 explicit typing), the ``events``
member, the absence of ``nonce`` and, when present, the payload ``typ`` (Keycloak writes ``"Logout"``).

The header checks and the key lookup are the access-token validator's own (``tokens.check_header``,
``tokens.key_id``, ``tokens.fetch_signing_key``, ``tokens.decode_verified``), and the validator uses the
process's one JWKS client: no second key cache, no second code path to keep safe.

Order: compact JWS and size bound, ``alg`` allow-list, no ``crit``, header ``typ``, ``kid``, signature with
the issuer's keys, then ``iss``, ``aud``, ``iat``, ``exp`` (PyJWT's rules, in ``decode_verified``), then
this module's claim rules. Every failure is a ``TokenInvalid`` with a short description that never echoes
the token; ``KeysUnavailable`` when the keys cannot be fetched. Pure Python: nothing here imports Django.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import jwt

from .errors import TokenExpired, TokenInvalid
from .revocation import MAX_IDENTIFIER_LENGTH
from .tokens import (
    VERIFY_EVERYTHING,
    DecodeRules,
    audience_tuple,
    check_header,
    decode_verified,
    fetch_signing_key,
    key_id,
)

BACKCHANNEL_LOGOUT_EVENT = "http://schemas.openid.net/event/backchannel-logout"
LOGOUT_TOKEN_TYPES = ("logout+jwt", "application/logout+jwt")  # RFC 7515 4.1.9: "application/" is implied
KEYCLOAK_PAYLOAD_TYPE = "Logout"

# jti is stored and compared, never interpreted: visible ASCII only (no NUL, no control or odd characters).
_JTI = re.compile(r"^[\x21-\x7e]{1,255}$")


@dataclass(frozen=True)
class LogoutTokenPolicy:
    """What a valid logout token must look like for one back-channel receiver."""

    issuer: str
    # The Keycloak client id(s) of the receiver: Keycloak puts the receiving client's clientId into ``aud``.
    audience: tuple[str, ...]
    algorithms: tuple[str, ...] = ("RS256",)
    leeway: float = 5.0
    # Refuse tokens issued longer ago than this, whatever their exp (Keycloak: exp = iat + 120 s).
    max_age: float = 300.0
    max_token_bytes: int = 8192

    def __post_init__(self) -> None:
        object.__setattr__(self, "audience", audience_tuple(self.audience))


@dataclass(frozen=True)
class LogoutToken:
    """The validated content of a logout token; ``subject`` or ``session_id`` (or both) is set."""

    issuer: str
    jti: str
    issued_at: float
    expires_at: float
    # Until when this jti must be remembered to refuse a replay: after it, the token fails on exp or age.
    replay_until: float
    subject: str | None = None
    session_id: str | None = None
    claims: Mapping[str, Any] = field(default_factory=dict, repr=False)


class LogoutTokenValidator:
    """Validates logout tokens with the JWKS client the access-token validator already holds."""

    def __init__(self, policy: LogoutTokenPolicy, jwk_client: jwt.PyJWKClient) -> None:
        if not policy.audience:
            raise ValueError("a logout token policy needs the receiver's client id as audience")
        self.policy = policy
        self.jwk_client = jwk_client
        self._rules = DecodeRules.from_options(
            {"require": ["iss", "aud", "iat", "exp", "jti"], **VERIFY_EVERYTHING},
            algorithms=policy.algorithms,
            audience=policy.audience,
            issuer=policy.issuer,
            leeway=policy.leeway,
        )

    def validate(self, raw: str) -> LogoutToken:
        """Return the validated logout token, or raise ``TokenInvalid`` / ``KeysUnavailable``."""
        policy = self.policy
        if not isinstance(raw, str):
            raise TokenInvalid("not a compact JWS")
        header = check_header(raw, policy.max_token_bytes, policy.algorithms)
        _check_header_type(header)
        key = fetch_signing_key(self.jwk_client, key_id(header))
        try:
            claims = decode_verified(raw, header, key, self._rules)
        except TokenExpired:
            raise TokenInvalid("token expired") from None
        return self._check_claims(claims, time.time())

    def _check_claims(self, claims: dict[str, Any], now: float) -> LogoutToken:
        policy = self.policy
        iat = _number(claims, "iat")
        exp = _number(claims, "exp")
        # PyJWT has refused an iat in the future and a past exp; the checks below are its strict twins
        # (PyJWT accepts numeric strings), plus the age bound.
        if iat > now + policy.leeway:
            raise TokenInvalid("token issued in the future")
        if exp <= now - policy.leeway:
            raise TokenInvalid("token expired")
        if now - iat > policy.max_age + policy.leeway:
            raise TokenInvalid("token too old")
        jti = claims.get("jti")
        if not isinstance(jti, str) or not _JTI.match(jti):
            raise TokenInvalid("malformed jti claim")
        subject = _optional_identifier(claims, "sub")
        session_id = _optional_identifier(claims, "sid")
        if subject is None and session_id is None:
            raise TokenInvalid("token has neither sub nor sid")
        events = claims.get("events")
        if not isinstance(events, dict):
            raise TokenInvalid("missing or malformed events claim")
        if not isinstance(events.get(BACKCHANNEL_LOGOUT_EVENT), dict):
            raise TokenInvalid("events claim has no back-channel logout event")
        if "nonce" in claims:
            raise TokenInvalid("a logout token must not contain nonce")
        payload_type = claims.get("typ", KEYCLOAK_PAYLOAD_TYPE)
        if payload_type != KEYCLOAK_PAYLOAD_TYPE:
            # Keycloak's ID, access and refresh tokens say "ID", "Bearer", "Refresh".
            raise TokenInvalid("not a logout token (payload typ)")
        return LogoutToken(
            issuer=claims["iss"],
            jti=jti,
            issued_at=iat,
            expires_at=exp,
            replay_until=min(exp, iat + policy.max_age) + policy.leeway,
            subject=subject,
            session_id=session_id,
            claims=claims,
        )


def _check_header_type(header: Mapping[str, Any]) -> None:
    """RFC 8725 explicit typing: a ``typ`` header, when present, must say ``logout+jwt``."""
    if "typ" not in header:
        return
    typ = header["typ"]
    if not isinstance(typ, str) or typ.lower() not in LOGOUT_TOKEN_TYPES:
        raise TokenInvalid("not a logout token (header typ must be logout+jwt)")


def _number(claims: Mapping[str, Any], name: str) -> float:
    value = claims.get(name)
    if type(value) is int or (type(value) is float and math.isfinite(value)):
        return value
    raise TokenInvalid(f"malformed {name} claim")


def _optional_identifier(claims: Mapping[str, Any], name: str) -> str | None:
    if name not in claims:
        return None
    value = claims[name]
    if not isinstance(value, str) or not value or len(value) > MAX_IDENTIFIER_LENGTH:
        raise TokenInvalid(f"malformed {name} claim")
    return value
