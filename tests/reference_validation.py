"""The reference side of ``tests/test_differential_validation.py``: token validation through PyJWT's ``decode``.

This is the validation path as it was before ``tokens.decode_verified`` stopped calling PyJWT's decode
(commit fb22833 replaced it): ``check_header`` -> header ``typ`` -> ``key_id`` -> ``fetch_signing_key`` ->
``jwt.PyJWT.decode_complete`` with the same options (its payload parsed by the project's ``strict_json``,
PyJWT's documented override point) -> the NumericDate rule -> payload ``typ`` and ``sub``, every PyJWT
exception mapped to the same short description as then. The header checks are the shared, unchanged
``core.tokens`` functions: what is compared is everything from the signature on.

Kept only for the differential test; nothing in the package imports it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from typing import Any

import jwt
from jwt.exceptions import DecodeError, ExpiredSignatureError, ImmatureSignatureError, InvalidTokenError

from tokenversion.core.errors import TokenExpired, TokenInvalid
from tokenversion.core.logout_tokens import LogoutToken, LogoutTokenValidator, _check_header_type
from tokenversion.core.tokens import TokenPolicy, check_header, fetch_signing_key, key_id, strict_json

_MAX_DATE = 2**63
_ACCESS_TOKEN_HEADER_TYPES = frozenset({"jwt", "at+jwt", "application/jwt", "application/at+jwt"})


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


def reference_decode(
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
    """PyJWT's decode (signature, then its registered-claim checks), then the NumericDate rule."""
    try:
        claims = decoder.decode_complete(
            raw,
            key=key,
            algorithms=algorithms,
            options=options,  # type: ignore[arg-type]
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
        value = claims.get(name, 0)
        if (type(value) is not int and not (type(value) is float and math.isfinite(value))) or not (
            -_MAX_DATE <= value <= _MAX_DATE
        ):
            raise TokenInvalid(f"malformed {name} claim")
    return claims


def _describe(exc: InvalidTokenError) -> str:
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


class ReferenceAccessTokenValidator:
    """``AccessTokenValidator.validate`` through PyJWT's decode, without the caches (every token first-seen)."""

    def __init__(self, policy: TokenPolicy, jwk_client: jwt.PyJWKClient) -> None:
        self.policy = policy
        self.jwk_client = jwk_client
        self._decoder = StrictPyJWT(
            options={  # type: ignore[arg-type]
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
        )

    def validate(self, raw: str) -> dict[str, Any]:
        policy = self.policy
        header = check_header(raw, policy.max_token_bytes, policy.algorithms)
        typ = header.get("typ")
        if typ is not None and (not isinstance(typ, str) or typ.lower() not in _ACCESS_TOKEN_HEADER_TYPES):
            raise TokenInvalid("not an access token (header typ)")
        key = fetch_signing_key(self.jwk_client, key_id(header))
        claims = reference_decode(
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
        return claims


class ReferenceLogoutTokenValidator(LogoutTokenValidator):
    """``LogoutTokenValidator.validate`` through PyJWT's decode; its own claim rules are the class's."""

    _reference_options = {
        "require": ["iss", "aud", "iat", "exp", "jti"],
        "verify_signature": True,
        "verify_exp": True,
        "verify_iat": True,
        "verify_nbf": True,
        "verify_iss": True,
        "verify_aud": True,
        "strict_aud": False,
    }

    def validate(self, raw: str) -> LogoutToken:
        policy = self.policy
        if not isinstance(raw, str):
            raise TokenInvalid("not a compact JWS")
        header = check_header(raw, policy.max_token_bytes, policy.algorithms)
        _check_header_type(header)
        key = fetch_signing_key(self.jwk_client, key_id(header))
        try:
            claims = reference_decode(
                StrictPyJWT(),
                raw,
                key,
                algorithms=policy.algorithms,
                audience=policy.audience,
                issuer=policy.issuer,
                leeway=policy.leeway,
                options=self._reference_options,
            )
        except TokenExpired:
            raise TokenInvalid("token expired") from None
        return self._check_claims(claims, time.time())
