"""Property-based fuzzing of ``TokenVersionAuthentication`` (hypothesis), through a real DRF view.

Three properties, each checked against an oracle written from the rules in docs/authentication.md rather than
from the code, so that a divergence in either direction (an acceptance the rules forbid, or a refusal they
allow) fails:

- any ``Authorization`` header: 401 (``invalid_token`` when it is a Bearer token), 400 ``invalid_request`` for
  a malformed Bearer header, nothing else, never a 5xx;
- any mutation of a genuine token: refused unless it is still the same token;
- any JSON in the payload or the header of a token signed with the issuer's real key: accepted exactly when
  the oracle says it is a valid access token with a current version, otherwise 401 ``invalid_token``.

Example counts come from the ``tokenversion`` hypothesis profile (tests/conftest.py): modest and derandomized
by default; ``HYPOTHESIS_PROFILE=thorough`` explores thousands of random examples.
"""

from __future__ import annotations

import base64
import json
import math
import time
from dataclasses import dataclass
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from hypothesis import given
from hypothesis import strategies as st

from tests.jwks import DROP

URL = "/api/whoami"
API = "tokenversion-api"
SUB = "5b7f0b36-8d0e-4a35-9f49-7a5ad1b0c001"
SID = "c1d2e3f4-0000-4000-8000-000000000001"
LEEWAY = 5
MAX_TOKEN_LIFETIME = 3600  # the test settings' (provider default)
MAX_TOKEN_BYTES = 8192
MAX_VERSION = 2**63 - 1
REFUSAL_CODES = {"token_invalid", "token_expired", "token_missing_claim", "token_lifetime_exceeded"}
pytestmark = pytest.mark.django_db


def call(api, header: str):
    return api.get(URL, HTTP_AUTHORIZATION=header)


def assert_invalid_token(response) -> None:
    assert response.status_code == 401, response.content
    assert response.json()["code"] in REFUSAL_CODES
    assert response["WWW-Authenticate"].startswith('Bearer realm="api", error="invalid_token", error_description="')


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def sign(server, header: dict[str, Any], claims: dict[str, Any]) -> str:
    """RS256 with the issuer's real key over exactly the JSON given (NaN and Infinity included)."""
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"
    signature = server.key.private.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
    return f"{signing_input}.{b64(signature)}"


# --- strategies ------------------------------------------------------------------------------------------------

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3),
    max_leaves=6,
)


@dataclass(frozen=True)
class Rel:
    """A time relative to the moment the token is made (so examples stay meaningful however long a run takes)."""

    offset: float


# At least 10 s from now: well clear of the 5 s leeway, so the oracle never has to guess at a boundary.
TIMES = st.one_of(
    st.integers(10, 10**7).map(Rel), st.integers(-(10**7), -10).map(Rel),
    st.floats(10, 10**7).map(Rel), st.floats(-(10**7), -10).map(Rel),
    st.integers(10, 10**7).map(lambda o: Rel(o)).map(lambda r: ("string", r)),
    # Beyond 64-bit seconds; 10**309 is past float range (it once overflowed the expiry arithmetic: a 503).
    st.sampled_from([10**309, -(10**309), 2**63, 2**63 + 1, -(2**63) - 1, 1e300, -1e300]),
)

IDENTIFIERS = st.one_of(
    st.sampled_from([SUB, "f:ldap:jdoe", "a", "x" * 255, "x" * 256, "", "a\x00b", "a\ud800", "a\x1b[0m", "é😀"]),
    st.text(max_size=20),
)

CLAIM_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "iss": st.sampled_from(["ISSUER", "ISSUER/", "ISSUER_UPPER", "http://127.0.0.1:1/realms/test"]) | JSON,
    "aud": st.sampled_from([API, [API], ["account", API], "account", [], "", [API, 1], API.upper()]) | JSON,
    "exp": TIMES | JSON,
    "iat": TIMES | JSON,
    "nbf": TIMES | JSON,
    "typ": st.sampled_from(["Bearer", "ID", "Refresh", "Logout", "bearer"]) | JSON,
    "sub": IDENTIFIERS | JSON,
    "sid": IDENTIFIERS | JSON,
    "token_version": st.integers(-5, 5) | st.sampled_from([MAX_VERSION, MAX_VERSION + 1, 10**30]) | JSON,
    "azp": JSON,
    "preferred_username": JSON,
    "realm_access": JSON,
    "resource_access": JSON,
}
CHANGES = st.dictionaries(
    st.sampled_from(sorted(CLAIM_VALUES)) | st.text(max_size=8),
    st.just(DROP) | JSON,
    max_size=4,
).flatmap(
    # A claim the rules know about gets values aimed at its rule; any other key gets arbitrary JSON.
    lambda changes: st.fixed_dictionaries(
        {k: (st.just(DROP) | CLAIM_VALUES[k]) if k in CLAIM_VALUES else st.just(v) for k, v in changes.items()}
    )
)


def resolve(value: Any, now: int, issuer: str) -> Any:
    if isinstance(value, Rel):
        return now + value.offset
    if isinstance(value, tuple) and value[0] == "string":
        return str(int(now + value[1].offset))
    return {"ISSUER": issuer, "ISSUER/": issuer + "/", "ISSUER_UPPER": issuer.upper()}.get(value, value) \
        if isinstance(value, str) else value


# --- the oracle --------------------------------------------------------------------------------------------


def numeric_date(value: Any) -> bool:
    """A JSON number (not a string, not a boolean) within 64-bit seconds."""
    if type(value) is int:
        return -(2**63) <= value <= 2**63
    return type(value) is float and math.isfinite(value) and -(2**63) <= value <= 2**63


def storable(value: Any) -> bool:
    return isinstance(value, str) and 0 < len(value) <= 255 and not any(
        ord(ch) < 0x20 or 0x7F <= ord(ch) <= 0x9F or 0xD800 <= ord(ch) <= 0xDFFF for ch in value
    )


def valid_access_token(claims: dict[str, Any], issuer: str, now: float) -> bool:
    """docs/authentication.md, as a predicate (no revocation is stored, so version 0 and up are current)."""
    aud = claims.get("aud")
    version = claims.get("token_version")
    return (
        claims.get("iss") == issuer and isinstance(claims["iss"], str)
        and (aud == API or (isinstance(aud, list) and all(isinstance(a, str) for a in aud) and API in aud))
        and numeric_date(claims.get("exp")) and claims["exp"] > now - LEEWAY
        and numeric_date(claims.get("iat")) and claims["iat"] <= now + LEEWAY
        and claims["exp"] - claims["iat"] <= MAX_TOKEN_LIFETIME  # token_lifetime_exceeded beyond it
        and ("nbf" not in claims or (numeric_date(claims["nbf"]) and claims["nbf"] <= now + LEEWAY))
        and claims.get("typ") == "Bearer"
        and storable(claims.get("sub"))
        and (claims.get("sid") is None or storable(claims["sid"]))
        and type(version) is int and 0 <= version <= MAX_VERSION
    )


# --- properties --------------------------------------------------------------------------------------------


@given(header=st.text(max_size=200) | st.binary(max_size=200).map(lambda b: b.decode("latin-1")))
def test_any_authorization_header_is_answered_401_or_400(api, header: str):
    response = call(api, header)
    assert response.status_code in (400, 401), response.content
    challenge = response["WWW-Authenticate"]
    if response.status_code == 400:
        assert response.json() == {"detail": "malformed Authorization header", "code": "invalid_request"}
        assert challenge == 'Bearer realm="api", error="invalid_request"'
    elif "error=" in challenge:
        assert_invalid_token(response)
    else:
        assert challenge == 'Bearer realm="api"'  # not a Bearer credential at all


# No whitespace of any kind (str.strip's or ours), so this is exactly one opaque Bearer value.
ONE_VALUE = st.text(st.characters(blacklist_categories=("Zs", "Zl", "Zp", "Cc")), min_size=1, max_size=300)


@given(token=ONE_VALUE | ONE_VALUE.map(lambda t: ".".join([t, t, t])))
def test_any_single_bearer_value_is_invalid_token(api, token: str):
    assert_invalid_token(call(api, f"Bearer {token}"))


MUTATIONS = st.tuples(
    st.sampled_from(["replace", "insert", "delete", "truncate", "swap"]),
    st.integers(min_value=0),
    st.characters(codec="utf-8") | st.sampled_from(list("Aa0-_.= \t=+/")),
)


@given(mutation=MUTATIONS)
def test_any_mutation_of_a_genuine_token_is_refused(api, jwks_server, mutation):
    original = jwks_server.mint()
    kind, position, char = mutation
    i = position % len(original)
    mutated = {
        "replace": original[:i] + char + original[i + 1:],
        "insert": original[:i] + char + original[i:],
        "delete": original[:i] + original[i + 1:],
        "truncate": original[:i],
        "swap": original[:i] + original[i + 1:i + 2] + original[i:i + 1] + original[i + 2:],
    }[kind]
    token = f"Bearer {mutated}".strip().partition(" ")[2].strip()
    response = call(api, f"Bearer {mutated}")
    if token == original:
        assert response.status_code == 200  # whitespace around the token, or a no-op change
    elif not token or " " in token:
        assert response.status_code == 400
    else:
        assert_invalid_token(response)


@given(changes=CHANGES)
def test_any_payload_signed_with_the_real_key_is_judged_by_the_rules(api, jwks_server, changes):
    now = int(time.time())
    claims = jwks_server.claims()
    for name, value in changes.items():
        if value is DROP:
            claims.pop(name, None)
        else:
            claims[name] = resolve(value, now, jwks_server.issuer)
    token = sign(jwks_server, {"alg": "RS256", "typ": "JWT", "kid": jwks_server.key.kid}, claims)

    response = call(api, f"Bearer {token}")

    if len(token) <= MAX_TOKEN_BYTES and valid_access_token(claims, jwks_server.issuer, time.time()):
        assert response.status_code == 200, (response.content, claims)
        assert response.json()["sub"] == claims["sub"]
    else:
        assert_invalid_token(response)


HEADER_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "alg": st.sampled_from(["RS256", "none", "None", "HS256", "ES256", "RS512", "rs256", ""]) | JSON,
    "kid": st.sampled_from(["key-1", "key-2", "", "../key-1", "key-1\x00", "k" * 300]) | JSON,
    "typ": st.sampled_from(["JWT", "at+jwt", "AT+JWT", "application/at+jwt", "logout+jwt", "JOSE", "jwt "]) | JSON,
    "crit": st.sampled_from([["exp"], [], ["b64"], "exp"]) | JSON,
    "b64": st.booleans() | JSON,
    "jku": st.just("http://127.0.0.1:9/jwks.json") | JSON,
    "x5u": st.just("http://127.0.0.1:9/cert.pem") | JSON,
    "jwk": JSON,
    "x5c": JSON,
    "zip": st.just("DEF") | JSON,
}
HEADER_CHANGES = st.dictionaries(
    st.sampled_from(sorted(HEADER_VALUES)) | st.text(max_size=6), st.just(DROP) | JSON, max_size=4
).flatmap(
    lambda changes: st.fixed_dictionaries(
        {k: (st.just(DROP) | HEADER_VALUES[k]) if k in HEADER_VALUES else st.just(v) for k, v in changes.items()}
    )
)
ACCESS_HEADER_TYPES = {"jwt", "at+jwt", "application/jwt", "application/at+jwt"}


@given(changes=HEADER_CHANGES)
def test_any_header_signed_with_the_real_key_is_judged_by_the_rules(api, jwks_server, changes):
    header: dict[str, Any] = {"alg": "RS256", "typ": "JWT", "kid": jwks_server.key.kid}
    for name, value in changes.items():
        if value is DROP:
            header.pop(name, None)
        else:
            header[name] = value
    token = sign(jwks_server, header, jwks_server.claims())

    response = call(api, f"Bearer {token}")

    typ = header.get("typ")
    valid = (
        len(token) <= MAX_TOKEN_BYTES
        and header.get("alg") == "RS256"
        and header.get("kid") == jwks_server.key.kid
        and "crit" not in header
        and (typ is None or (isinstance(typ, str) and typ.lower() in ACCESS_HEADER_TYPES))
        and header.get("b64", True) is not False  # b64=false means a detached payload: not ours to accept
    )
    if valid:
        assert response.status_code == 200, (response.content, header)
    else:
        assert_invalid_token(response)
