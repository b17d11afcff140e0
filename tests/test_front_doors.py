"""One table of tokens through every front door: each must give the same status, error code and challenge.

The doors: the DRF class, the plain-Django ``bearer_required`` decorator, ``TokenVersionMiddleware``
(site-wide, with the decorator on the view), Django Ninja's ``TokenVersionBearer``, and, with no Django in
their path, FastAPI's ``TokenVersionBearer`` and Starlette's ``TokenVersionBackend`` (in process, through
Starlette's ASGI test client, with a verifier built by ``standalone.make_verifier`` from plain values over
the same store as the Django doors), and the forward-auth service for gateways (``tokenversion.forwardauth``,
which answers 200 with identity headers and no body). All are thin adapters over ``core.verifier.Verifier``;
this table is what keeps them one product. Real RSA keys served over loopback HTTP; real revocations in the database.
"""

from __future__ import annotations

import uuid

import jwt
import pytest
from starlette.testclient import TestClient

from tests.asgi_front_doors import fastapi_app, starlette_app
from tests.conftest import database_down
from tests.jwks import DROP, SigningKey
from tokenversion.conf import get_settings
from tokenversion.forwardauth import create_app
from tokenversion.runtime import get_runtime
from tokenversion.standalone import make_verifier
from tokenversion_server import services

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.urls("tests.front_doors_urls")]

MIDDLEWARE = "tokenversion.middleware.TokenVersionMiddleware"
DOORS = {"drf": "/drf/whoami", "decorator": "/plain/whoami", "middleware": "/plain/whoami",
         "ninja": "/ninja/whoami", "fastapi": "/whoami", "starlette": "/whoami",
         "forwardauth": "/any/path"}
ASGI = {"fastapi": fastapi_app, "starlette": starlette_app, "forwardauth": create_app}
SID = "c1d2e3f4-0000-4000-8000-000000000001"


def actor():
    return services.Actor.system("front-door test")


def header_for(case: str, jwks) -> str | None:
    """The Authorization header of each case (revocations are made here too, before the request)."""
    sub = str(uuid.uuid4())
    mint = jwks.mint
    if case == "valid":
        return f"Bearer {mint(sub=sub)}"
    if case == "no header":
        return None
    if case == "other scheme":
        return "Basic dXNlcjpwYXNz"
    if case == "bearer without token":
        return "Bearer"
    if case == "two values":
        return f"Bearer {mint(sub=sub)} extra"
    if case == "garbage":
        return "Bearer not.a.token"
    if case == "expired":
        return f"Bearer {mint(sub=sub, iat=1_000_000_000, exp=1_000_000_300)}"
    if case == "wrong audience":
        return f"Bearer {mint(sub=sub, aud='another-api')}"
    if case == "no version claim":
        return f"Bearer {mint(sub=sub, token_version=DROP)}"
    if case == "alg none":
        claims = jwks.claims(sub=sub)
        return "Bearer " + jwt.encode(claims, None, algorithm="none", headers={"kid": jwks.key.kid})
    if case == "unknown key":
        return f"Bearer {mint(key=SigningKey('unknown-kid'), sub=sub)}"
    if case == "lifetime too long":
        return f"Bearer {mint(sub=sub, exp=jwks.claims()['iat'] + 7200)}"  # MAX_TOKEN_LIFETIME is 3600
    if case == "revoked user":
        token = mint(sub=sub)
        services.revoke_user(sub, reason="logout", actor=actor())
        return f"Bearer {token}"
    if case == "revoked session":
        token = mint(sub=sub, sid=SID)
        services.revoke_session(SID, reason="logout", actor=actor())
        return f"Bearer {token}"
    if case == "revoked realm":
        token = mint(sub=sub, iat=jwks.claims()["iat"] - 10)
        services.revoke_realm(reason="admin", actor=actor())
        return f"Bearer {token}"
    raise AssertionError(case)


# case -> (status, code or None, the challenge's error or None for a bare challenge, "-" for no challenge)
EXPECTED = {
    "valid": (200, None, "-"),
    "no header": (401, None, None),
    "other scheme": (401, None, None),
    "bearer without token": (400, "invalid_request", "invalid_request"),
    "two values": (400, "invalid_request", "invalid_request"),
    "garbage": (401, "token_invalid", "invalid_token"),
    "expired": (401, "token_expired", "invalid_token"),
    "wrong audience": (401, "token_invalid", "invalid_token"),
    "no version claim": (401, "token_missing_claim", "invalid_token"),
    "alg none": (401, "token_invalid", "invalid_token"),
    "unknown key": (401, "token_invalid", "invalid_token"),
    "lifetime too long": (401, "token_lifetime_exceeded", "invalid_token"),
    "revoked user": (401, "token_revoked", "invalid_token"),
    "revoked session": (401, "token_revoked", "invalid_token"),
    "revoked realm": (401, "token_revoked", "invalid_token"),
}


def asgi_client(door: str) -> TestClient:
    """The ASGI door's app, its verifier made from the same values as the Django settings and sharing the
    Django doors' store (so the revocations made through ``services`` reach it the same way)."""
    return TestClient(ASGI[door](verifier_like_the_settings()))


def verifier_like_the_settings():
    """A verifier from plain values, the same values the Django doors read from ``TOKENVERSION``, over the
    Django doors' store."""
    conf = get_settings()
    return make_verifier(issuer=conf.issuer, audience=conf.audience, jwks_url=conf.jwks_url,
                         algorithms=conf.algorithms, leeway=conf.leeway, max_token_lifetime=conf.max_token_lifetime,
                         claim=conf.claim, require_version_claim=conf.require_version_claim,
                         check_logout_time=conf.check_logout_time, roles_client=conf.roles_client,
                         realm=conf.www_authenticate_realm, store=get_runtime().store,
                         token_type=conf.token_type, max_token_bytes=conf.max_token_bytes)


def request(client, door: str, header: str | None):
    if door in ASGI:
        with asgi_client(door) as asgi:
            return asgi.get(DOORS[door], headers={"Authorization": header} if header is not None else {})
    return client.get(DOORS[door], **({"HTTP_AUTHORIZATION": header} if header is not None else {}))


def observed(response) -> tuple[int, str | None, str | None]:
    challenge = response.headers.get("WWW-Authenticate")
    if challenge is None:
        error = "-"
    else:
        assert challenge.startswith('Bearer realm="api"'), challenge
        error = challenge.split('error="', 1)[1].split('"', 1)[0] if 'error="' in challenge else None
    code = response.json().get("code") if response.status_code != 200 else None
    return response.status_code, code, error


@pytest.mark.parametrize("door", DOORS)
@pytest.mark.parametrize("case", EXPECTED)
def test_every_front_door_answers_the_same(client, settings, jwks_server, door, case):
    if door == "middleware":
        settings.MIDDLEWARE = [*settings.MIDDLEWARE, MIDDLEWARE]
    header = header_for(case, jwks_server)
    response = request(client, door, header)
    status, code, error = observed(response)
    if case == "valid":
        sub = response.headers["X-Auth-Subject"] if door == "forwardauth" else response.json()["sub"]
        assert sub == jwt.decode(header.split()[1], options={"verify_signature": False})["sub"]
    expected_status, expected_code, expected_error = EXPECTED[case]
    # DRF's own "not authenticated" body has no code; the challenge and status are what RFC 6750 fixes.
    if expected_status == 401 and expected_code is None:
        code = None
    assert (status, code, error) == (expected_status, expected_code, expected_error)


@pytest.mark.parametrize("door", DOORS)
def test_every_front_door_refuses_with_503_when_the_store_is_down(client, settings, jwks_server, door,
                                                                  tv_settings):
    tv_settings(CACHE_TTL=0)
    if door == "middleware":
        settings.MIDDLEWARE = [*settings.MIDDLEWARE, MIDDLEWARE]
    token = jwks_server.mint(sub=str(uuid.uuid4()))
    with database_down():
        response = request(client, door, f"Bearer {token}")
    assert response.status_code == 503
    assert response.json()["code"] == "revocation_store_unavailable"
    assert response.headers["Retry-After"] == "1"


def test_the_descriptions_match_too(client, jwks_server):
    token = jwks_server.mint(iat=1_000_000_000, exp=1_000_000_300)
    answers = {door: request(client, door, f"Bearer {token}") for door in DOORS if door != "middleware"}
    assert len({a.headers["WWW-Authenticate"] for a in answers.values()}) == 1
    assert len({a.json()["detail"] for a in answers.values()}) == 1
