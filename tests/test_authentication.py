"""TokenVersionAuthentication, end to end through a DRF view, with real keys served over loopback HTTP."""

from __future__ import annotations

import base64
import json
import math
import time

import jwt
import pytest
from django.db import connection

from accounts.models import KeycloakUser
from tests.conftest import database_down
from tests.jwks import DROP, SigningKey
from tokenversion_server import services

SUB = "5b7f0b36-8d0e-4a35-9f49-7a5ad1b0c001"
URL = "/api/whoami"
pytestmark = pytest.mark.django_db(transaction=True)


def call(api, token: str | None = None, header: str | None = None):
    if header is None and token is not None:
        header = f"Bearer {token}"
    extra = {"HTTP_AUTHORIZATION": header} if header is not None else {}
    return api.get(URL, **extra)


def assert_refused(response, code: str, status: int = 401) -> None:
    assert response.status_code == status, response.content
    assert response.json()["code"] == code
    if status == 401:
        header = response["WWW-Authenticate"]
        assert header.startswith('Bearer realm="api", error="invalid_token", error_description="')


def actor():
    return services.Actor.system("test")


# --- acceptance --------------------------------------------------------------------------------------


def test_valid_token_is_accepted_with_a_token_user(api, jwks_server):
    response = call(api, jwks_server.mint())
    assert response.status_code == 200
    assert response.json() == {"sub": SUB, "username": "alice", "token_version": 0}


def test_provider_user_is_returned_when_the_user_database_has_one(api, jwks_server, tv_settings):
    KeycloakUser.objects.create(issuer=jwks_server.issuer, subject=SUB, username="alice-from-db")
    response = call(api, jwks_server.mint(preferred_username="alice-claim"))
    assert response.json()["username"] == "alice-from-db"


def test_token_user_carries_roles_for_permissions(jwks_server, rf):
    from tokenversion.authentication import TokenVersionAuthentication

    request = rf.get(URL, HTTP_AUTHORIZATION=f"Bearer {jwks_server.mint(realm_access={'roles': ['ops']})}")
    from rest_framework.request import Request

    KeycloakUser.objects.all().delete()
    user, claims = TokenVersionAuthentication().authenticate(Request(request))
    assert user.is_authenticated and user.has_role("ops") and not user.has_role("admin")
    assert claims["sub"] == SUB


# --- the header ---------------------------------------------------------------------------------------


def test_no_header_is_401_without_error_code(api):
    response = call(api)
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == 'Bearer realm="api"'


def test_foreign_scheme_is_left_to_other_classes(api, jwks_server):
    response = call(api, header="Basic YWxpY2U6c2VjcmV0")
    assert response.status_code == 401  # no other class accepted it either
    assert "error=" not in response["WWW-Authenticate"]


@pytest.mark.parametrize("header", ["Bearer", "Bearer ", "Bearer a b", "bearer  "])
def test_malformed_bearer_header_is_invalid_request(api, header):
    """RFC 6750 section 3.1: a malformed request is 400 invalid_request; a bad token would be 401."""
    response = call(api, header=header)
    assert response.status_code == 400, response.content
    assert response.json() == {"detail": "malformed Authorization header", "code": "invalid_request"}
    assert response["WWW-Authenticate"] == 'Bearer realm="api", error="invalid_request"'


def test_bearer_scheme_is_case_insensitive(api, jwks_server):
    assert call(api, header=f"bEaReR {jwks_server.mint()}").status_code == 200


# --- local validation ---------------------------------------------------------------------------------


def test_expired_token(api, jwks_server):
    now = int(time.time())
    assert_refused(call(api, jwks_server.mint(iat=now - 600, exp=now - 60)), "token_expired")


def test_expiry_within_leeway_is_accepted(api, jwks_server):
    now = int(time.time())
    assert call(api, jwks_server.mint(iat=now - 600, exp=now - 2)).status_code == 200


@pytest.mark.parametrize(
    "claims",
    [
        {"iss": "http://127.0.0.1:1/realms/other"},
        {"aud": "someone-else"},
        {"aud": DROP},
        {"exp": DROP},
        {"iat": DROP},
        {"sub": DROP},
        {"sub": ""},
        {"typ": "ID"},
        {"typ": "Refresh"},
        {"typ": DROP},
        {"nbf": int(time.time()) + 3600},
        {"iat": int(time.time()) + 3600},
        {"sid": 12},
    ],
    ids=lambda c: ",".join(f"{k}={v}" for k, v in c.items()),
)
def test_claims_that_make_a_token_invalid(api, jwks_server, claims):
    assert_refused(call(api, jwks_server.mint(**claims)), "token_invalid")


def test_issuer_prefix_is_not_enough(api, jwks_server):
    assert_refused(call(api, jwks_server.mint(iss=jwks_server.issuer + "x")), "token_invalid")


def test_audience_list_containing_ours_is_accepted(api, jwks_server):
    assert call(api, jwks_server.mint(aud=["account", "tokenversion-api"])).status_code == 200


def test_wrong_key_with_the_right_kid(api, jwks_server):
    impostor = SigningKey(kid=jwks_server.key.kid)
    assert_refused(call(api, jwks_server.mint(key=impostor)), "token_invalid")


def _forge(header: dict, payload: dict, signature: bytes = b"") -> str:
    def enc(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    return ".".join([enc(json.dumps(header).encode()), enc(json.dumps(payload).encode()), enc(signature)])


@pytest.mark.parametrize("alg", ["none", "None", "NONE", "nOnE"])
def test_alg_none_in_any_spelling(api, jwks_server, alg):
    token = _forge({"alg": alg, "kid": jwks_server.key.kid, "typ": "JWT"}, jwks_server.claims())
    assert_refused(call(api, token), "token_invalid")


def test_hmac_signed_with_the_public_key(api, jwks_server):
    from cryptography.hazmat.primitives import serialization

    pem = jwks_server.key.private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    import hashlib
    import hmac

    header = {"alg": "HS256", "kid": jwks_server.key.kid, "typ": "JWT"}
    unsigned = _forge(header, jwks_server.claims()).rsplit(".", 1)[0]
    signature = hmac.new(pem, unsigned.encode(), hashlib.sha256).digest()
    token = unsigned + "." + base64.urlsafe_b64encode(signature).rstrip(b"=").decode()
    assert_refused(call(api, token), "token_invalid")


def test_critical_header_is_refused(api, jwks_server):
    assert_refused(call(api, jwks_server.mint(headers={"crit": ["exp"], "exp": 1})), "token_invalid")


def test_jku_header_is_ignored_not_followed(api, jwks_server):
    requests_before = jwks_server.requests
    token = jwks_server.mint(headers={"jku": "http://127.0.0.1:9/evil.json"})
    assert call(api, token).status_code == 200  # validated with the issuer's keys, jku never fetched
    assert jwks_server.requests - requests_before == 1


@pytest.mark.parametrize(
    "token",
    ["abc", "a.b", "a.b.c.d.e", "e30.e30.", "!!!.***.###", "eyJhbGciOiJSUzI1NiJ9.e30", "x" * 9000,
     "W10.e30.c2ln", "bnVsbA.e30.c2ln", "_w.e30.c2ln"],
)
def test_garbage_tokens(api, token):
    assert_refused(call(api, token), "token_invalid")


# --- keys ---------------------------------------------------------------------------------------------


def test_rotated_key_is_fetched_on_unknown_kid(api, jwks_server, tv_settings):
    tv_settings(JWKS_COOLDOWN=0)
    assert call(api, jwks_server.mint()).status_code == 200
    new_key = SigningKey("key-2")
    jwks_server.keys = [new_key, *jwks_server.keys]
    assert call(api, jwks_server.mint(key=new_key)).status_code == 200


def test_unknown_kid_flood_fetches_at_most_once_per_cooldown(api, jwks_server, tv_settings):
    tv_settings(JWKS_COOLDOWN=60)
    assert call(api, jwks_server.mint()).status_code == 200
    before = jwks_server.requests
    for i in range(20):
        stranger = SigningKey(f"random-{i}")
        assert_refused(call(api, jwks_server.mint(key=stranger)), "token_invalid")
    assert jwks_server.requests - before <= 1


def test_keys_unavailable_is_503(api, jwks_server):
    jwks_server.fail = True
    response = call(api, jwks_server.mint())
    assert response.status_code == 503
    assert response.json()["code"] == "keys_unavailable"
    assert response["Retry-After"] == "1"


def test_last_good_keys_serve_through_an_issuer_outage(api, jwks_server, tv_settings):
    tv_settings(JWKS_LIFESPAN=0.2, JWKS_STALE_GRACE=60)
    assert call(api, jwks_server.mint()).status_code == 200
    jwks_server.fail = True
    time.sleep(0.3)  # the cached set has expired; the refetch fails
    assert call(api, jwks_server.mint()).status_code == 200


def test_stale_keys_stop_serving_after_the_grace(api, jwks_server, tv_settings):
    tv_settings(JWKS_LIFESPAN=0.1, JWKS_STALE_GRACE=0.2)
    assert call(api, jwks_server.mint()).status_code == 200
    jwks_server.fail = True
    time.sleep(0.5)
    assert call(api, jwks_server.mint()).status_code == 503


# --- revocation ---------------------------------------------------------------------------------------


def test_bump_refuses_older_tokens_at_once_in_the_same_process(api, jwks_server):
    old = jwks_server.mint(token_version=0)
    assert call(api, old).status_code == 200  # cached as valid
    rev = services.revoke_user(SUB, reason="logout", actor=actor())
    assert (rev.old_version, rev.new_version) == (0, 1)
    assert_refused(call(api, old), "token_revoked")
    assert call(api, jwks_server.mint(token_version=1)).status_code == 200


def test_a_version_above_the_stored_one_is_accepted(api, jwks_server):
    # e.g. the provider's database restored from a backup; refusing would lock everyone out
    assert call(api, jwks_server.mint(token_version=7)).status_code == 200


def test_missing_version_claim_is_refused_by_default(api, jwks_server):
    assert_refused(call(api, jwks_server.mint(token_version=DROP)), "token_missing_claim")


def test_missing_version_claim_can_be_allowed(api, jwks_server, tv_settings):
    tv_settings(REQUIRE_VERSION_CLAIM=False)
    assert call(api, jwks_server.mint(token_version=DROP)).status_code == 200


@pytest.mark.parametrize("value", ["0", 0.0, 1.5, -1, True, False, None, [0], {"v": 0}, 2**63, "1e3"])
def test_malformed_version_claims(api, jwks_server, value):
    assert_refused(call(api, jwks_server.mint(token_version=value)), "token_invalid")


def test_custom_claim_name(api, jwks_server, tv_settings):
    tv_settings(CLAIM="tv")
    assert call(api, jwks_server.mint(tv=0, token_version=DROP)).status_code == 200
    assert_refused(call(api, jwks_server.mint()), "token_missing_claim")


def test_revoked_session_kills_only_that_session(api, jwks_server):
    mine = jwks_server.mint(sid="session-a")
    other = jwks_server.mint(sid="session-b")
    assert call(api, mine).status_code == 200
    services.revoke_session("session-a", subject=SUB, actor=actor())
    assert_refused(call(api, mine), "token_revoked")
    assert call(api, other).status_code == 200


def test_realm_epoch_kills_tokens_issued_up_to_its_second_plus_the_leeway(api, jwks_server):
    """Keycloak's clock may run up to LEEWAY (5 s here) ahead of the provider's: a token minted just before
    the revocation can carry an iat up to LEEWAY after it, so those are refused too (the documented cost: a
    login within LEEWAY after a realm revocation must refresh)."""
    rev = services.revoke_realm(actor=actor())
    epoch = int(rev.at.timestamp())
    assert_refused(call(api, jwks_server.mint(iat=epoch - 5)), "token_revoked")
    assert_refused(call(api, jwks_server.mint(iat=epoch)), "token_revoked")  # same second: fail closed
    assert_refused(call(api, jwks_server.mint(iat=epoch + 1)), "token_revoked")  # Keycloak 1 s ahead
    assert_refused(call(api, jwks_server.mint(iat=epoch + 5)), "token_revoked")  # Keycloak LEEWAY ahead
    _until_not_in_the_future(epoch + 6)
    assert call(api, jwks_server.mint(iat=epoch + 6)).status_code == 200


def _until_not_in_the_future(iat: int, leeway: int = 5) -> None:
    """Sleep until a token with this iat is no longer "issued in the future" (iat <= now + LEEWAY)."""
    time.sleep(max(0.0, iat - leeway - time.time()) + 0.05)


def test_a_fractional_iat_before_a_realm_revocation_in_its_second_is_refused(api, jwks_server, tv_settings):
    """iat has whole-second resolution; a fractional one issued before T in T's second is not let through by
    comparing it with floor(T). LEEWAY 0 isolates this rule from the skew margin."""
    tv_settings(LEEWAY=0)
    rev = services.revoke_realm(actor=actor())
    at = rev.at.timestamp()
    before_in_same_second = math.floor(at) + (at - math.floor(at)) / 2  # floor(T) <= iat < T
    assert before_in_same_second < at
    assert_refused(call(api, jwks_server.mint(iat=before_in_same_second)), "token_revoked")
    assert_refused(call(api, jwks_server.mint(iat=math.floor(at) + 0.999)), "token_revoked")
    _until_not_in_the_future(math.floor(at) + 1, leeway=0)
    assert call(api, jwks_server.mint(iat=math.floor(at) + 1.0)).status_code == 200


def test_logout_time_rule_for_issuers_without_the_mapper(api, jwks_server, tv_settings):
    tv_settings(REQUIRE_VERSION_CLAIM=False, CHECK_LOGOUT_TIME=True)
    rev = services.revoke_user(SUB, reason="logout", actor=actor())
    logout = int(rev.at.timestamp())
    assert_refused(call(api, jwks_server.mint(token_version=DROP, iat=logout)), "token_revoked")
    assert_refused(call(api, jwks_server.mint(token_version=DROP, iat=logout + 5)), "token_revoked")  # LEEWAY
    assert_refused(call(api, jwks_server.mint(token_version=DROP, iat=logout + 0.5)), "token_revoked")
    _until_not_in_the_future(logout + 6)
    assert call(api, jwks_server.mint(token_version=DROP, iat=logout + 6)).status_code == 200


def test_logout_time_rule_is_off_by_default(api, jwks_server):
    rev = services.revoke_user(SUB, reason="logout", actor=actor())
    # The version decides: a token minted after the bump with the new version is fine whatever its iat.
    assert call(api, jwks_server.mint(token_version=1, iat=int(rev.at.timestamp()))).status_code == 200


def test_a_bump_from_another_process_bites_within_the_cache_ttl(api, jwks_server, tv_settings):
    """Another process's bump does not call our invalidate(): only the TTL bounds how long we trust the cache.

    Simulated faithfully by writing the new version with SQL, as another process would, bypassing this
    process's services.
    """
    tv_settings(CACHE_TTL=0.5)
    token = jwks_server.mint(token_version=0)
    services.current_version(SUB)
    assert call(api, token).status_code == 200
    with connection.cursor() as cursor:
        cursor.execute("UPDATE tokenversion_server_subjectversion SET token_version = 1 WHERE subject = %s", [SUB])
    assert call(api, token).status_code == 200  # still inside the bound
    time.sleep(0.55)
    assert_refused(call(api, token), "token_revoked")


def test_store_outage_is_503_and_recovers_without_restart(api, jwks_server, tv_settings):
    tv_settings(CACHE_TTL=0)
    token = jwks_server.mint()
    assert call(api, token).status_code == 200
    with database_down():
        response = call(api, token)
        assert response.status_code == 503
        assert response.json()["code"] == "revocation_store_unavailable"
    assert call(api, token).status_code == 200


def test_refusal_never_leaks_internals(api, jwks_server):
    response = call(api, jwks_server.mint(iss="http://evil\"injected"))
    assert '"injected' not in response["WWW-Authenticate"]


def test_validator_is_one_per_process_and_rebuilt_on_settings_change(jwks_server, tv_settings):
    from tokenversion.authentication import get_validator

    first = get_validator()
    assert get_validator() is first
    tv_settings(LEEWAY=1)
    assert get_validator() is not first


def test_pyjwt_is_recent_enough():
    major, minor, patch = (int(p) for p in jwt.__version__.split(".")[:3])
    assert (major, minor, patch) >= (2, 15, 1)


def test_a_token_living_longer_than_max_token_lifetime_is_refused(api, jwks_server, tv_settings):
    """Revocations are kept MAX_TOKEN_LIFETIME; a token whose exp - iat is longer (a Keycloak client whose
    lifespan was raised) could outlive its revocation, so it is refused with its own code."""
    tv_settings(MAX_TOKEN_LIFETIME=600)
    now = int(time.time())
    response = call(api, jwks_server.mint(iat=now, exp=now + 601))
    assert_refused(response, "token_lifetime_exceeded")
    assert "MAX_TOKEN_LIFETIME" in response.json()["detail"]
    assert call(api, jwks_server.mint(iat=now, exp=now + 600)).status_code == 200  # exactly the limit
    assert call(api, jwks_server.mint(iat=now - 500, exp=now + 100)).status_code == 200
