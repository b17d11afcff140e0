"""The OIDC Back-Channel Logout 1.0 receiver (docs/backchannel-logout.md), with real signed logout tokens.

Keys are the JWKS server's own (tests/jwks.py), served over loopback HTTP; nothing in the validation path is
mocked. Every refusal must be a 400 (or 503) with ``Cache-Control: no-store`` and must write nothing.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import time
from urllib.parse import urlencode

import pytest
from cryptography.hazmat.primitives import serialization
from django.db import DatabaseError
from django.test import Client

from tests.conftest import database_down
from tests.jwks import DROP, SigningKey
from tokenversion.authentication import get_validator
from tokenversion.core.errors import KeysUnavailable, TokenInvalid
from tokenversion.core.keys import ResilientJWKClient
from tokenversion.core.logout_tokens import BACKCHANNEL_LOGOUT_EVENT, LogoutTokenPolicy, LogoutTokenValidator
from tokenversion_server import services
from tokenversion_server.models import RevocationEvent, RevokedSession, SeenIdentifier, SubjectVersion

URL = "/tokenversion/backchannel-logout"
FORM = "application/x-www-form-urlencoded"
SUB = "5b7f0b36-8d0e-4a35-9f49-7a5ad1b0c001"
SID = "c1d2e3f4-0000-4000-8000-000000000001"
OTHER_SID = "c1d2e3f4-0000-4000-8000-000000000002"
RECEIVER = "tokenversion-backchannel"
pytestmark = pytest.mark.django_db


def post(client, body, content_type: str = FORM):
    if isinstance(body, dict):
        body = urlencode(body, doseq=True)
    # CONTENT_TYPE explicitly: the test client drops it for an empty body, a real client does not.
    return client.generic("POST", URL, body, content_type=content_type, CONTENT_TYPE=content_type)


def logout(client, token: str):
    return post(client, {"logout_token": token})


def counts() -> tuple[int, int, int, int]:
    return (RevokedSession.objects.count(), SubjectVersion.objects.count(), RevocationEvent.objects.count(),
            SeenIdentifier.objects.count())


NOTHING = (0, 0, 0, 0)


def assert_error(response, status: int, code: str, detail: str | None = None) -> None:
    assert response.status_code == status, response.content
    assert response["Cache-Control"] == "no-store"
    body = response.json()
    assert body["error"] == code, body
    if detail is not None:
        assert detail in body["detail"], body


def whoami(api, token: str):
    return api.get("/api/whoami", HTTP_AUTHORIZATION=f"Bearer {token}")


def b64(data) -> str:
    if not isinstance(data, bytes):
        data = json.dumps(data, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def hand_made(header: dict, claims: dict, signature: bytes = b"") -> str:
    return f"{b64(header)}.{b64(claims)}.{b64(signature) if signature else ''}"


def hmac_signed(header: dict, claims: dict, secret: bytes) -> str:
    signing_input = f"{b64(header)}.{b64(claims)}"
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(signature)}"


def public_pem(key: SigningKey) -> bytes:
    return key.private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


# --- success --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("sid", ["_7qPM4IkrNvzPMoLQQ9Rgcto", "-rffKNQ1v-1B7ZkF3pzyenAe", "VFtKyGSMLaNge0OcT8FOFqRE"])
def test_every_shape_of_keycloak_session_id_is_revoked(client, api, jwks_server, sid,
                                                       django_capture_on_commit_callbacks):
    """Keycloak 26 session ids are 24 base64url characters: one in 32 starts with "-" or "_" (found by
    bench/propagation.py against the real server, where such logouts were refused with 400)."""
    token = jwks_server.mint(sid=sid)
    assert whoami(api, token).status_code == 200
    with django_capture_on_commit_callbacks(execute=True):
        response = logout(client, jwks_server.mint_logout(sid=sid))
    assert response.status_code == 200, response.content
    assert RevokedSession.objects.get().session_id == sid
    assert whoami(api, token).status_code == 401


def test_sid_logout_revokes_only_that_session(client, api, jwks_server, django_capture_on_commit_callbacks):
    this_session = jwks_server.mint(sid=SID)
    other_session = jwks_server.mint(sid=OTHER_SID)
    assert whoami(api, this_session).status_code == 200
    assert whoami(api, other_session).status_code == 200  # both cached as "not revoked" now

    token = jwks_server.mint_logout(sid=SID)
    with django_capture_on_commit_callbacks(execute=True):
        response = logout(client, token)

    assert response.status_code == 200, response.content
    assert response["Cache-Control"] == "no-store"
    assert response.json() == {"status": "ok", "action": "revoke_session"}
    session = RevokedSession.objects.get()
    assert (session.issuer, session.session_id, session.subject) == (jwks_server.issuer, SID, SUB)
    assert not SubjectVersion.objects.exists()  # the user's other sessions are untouched
    event = RevocationEvent.objects.get()
    assert (event.scope, event.reason, event.actor_type, event.session_id, event.subject) == (
        "session", "logout", "keycloak", SID, SUB)
    seen = SeenIdentifier.objects.get()
    assert (seen.kind, seen.issuer) == (SeenIdentifier.KIND_LOGOUT_TOKEN, jwks_server.issuer)
    assert event.actor == f"backchannel-logout {seen.value}"

    refused = whoami(api, this_session)
    assert refused.status_code == 401
    assert refused.json()["code"] == "token_revoked"
    assert whoami(api, other_session).status_code == 200


def test_sub_only_logout_bumps_the_user_version(client, api, jwks_server, django_capture_on_commit_callbacks):
    access = jwks_server.mint(token_version=0)
    assert whoami(api, access).status_code == 200

    with django_capture_on_commit_callbacks(execute=True):
        response = logout(client, jwks_server.mint_logout(sid=DROP))

    assert response.status_code == 200, response.content
    assert response.json() == {"status": "ok", "action": "revoke_user"}
    assert SubjectVersion.objects.get(issuer=jwks_server.issuer, subject=SUB).token_version == 1
    assert not RevokedSession.objects.exists()
    event = RevocationEvent.objects.get()
    assert (event.scope, event.reason, event.actor_type, event.old_version, event.new_version) == (
        "user", "logout", "keycloak", 0, 1)
    refused = whoami(api, access)
    assert refused.status_code == 401 and refused.json()["code"] == "token_revoked"
    assert whoami(api, jwks_server.mint(token_version=1)).status_code == 200


def test_sid_alone_is_enough(client, jwks_server):
    response = logout(client, jwks_server.mint_logout(sub=DROP))
    assert response.status_code == 200, response.content
    session = RevokedSession.objects.get()
    assert (session.session_id, session.subject) == (SID, "")


def test_replay_record_lives_until_exp_plus_leeway(client, jwks_server):
    now = int(time.time())
    token = jwks_server.mint_logout(iat=now, exp=now + 120, jti="jti-lifetime")
    assert logout(client, token).status_code == 200
    seen = SeenIdentifier.objects.get(value="jti-lifetime")
    assert seen.expires_at == dt.datetime.fromtimestamp(now + 120 + 5, tz=dt.UTC)


@pytest.mark.parametrize("typ", ["logout+jwt", "LOGOUT+JWT", "Logout+JWT", "application/logout+jwt", DROP])
def test_header_typ_logout_jwt_in_any_case_or_absent_is_accepted(client, jwks_server, typ):
    assert logout(client, jwks_server.mint_logout(headers={"typ": typ})).status_code == 200


@pytest.mark.parametrize("claims", [
    {"aud": ["other-client", RECEIVER]},
    {"events": {BACKCHANNEL_LOGOUT_EVENT: {}, "revoke_offline_access": True}},  # Keycloak's optional extra
    {"typ": DROP},  # payload typ is Keycloak's; other issuers leave it out
])
def test_other_valid_shapes_are_accepted(client, jwks_server, claims):
    assert logout(client, jwks_server.mint_logout(**claims)).status_code == 200


def test_uses_the_one_jwks_client_of_the_access_token_validator(client, api, jwks_server):
    assert whoami(api, jwks_server.mint()).status_code == 200
    fetched = jwks_server.requests
    assert logout(client, jwks_server.mint_logout()).status_code == 200
    assert jwks_server.requests == fetched  # the keys the access-token validator fetched were reused


def test_csrf_does_not_apply(jwks_server):
    response = logout(Client(enforce_csrf_checks=True), jwks_server.mint_logout())
    assert response.status_code == 200, response.content


# --- replay --------------------------------------------------------------------------------------------


def test_replayed_jti_is_refused_and_writes_nothing(client, jwks_server):
    token = jwks_server.mint_logout()
    assert logout(client, token).status_code == 200
    before = counts()
    assert_error(logout(client, token), 400, "invalid_request", "replay")
    assert counts() == before


def test_same_jti_in_a_new_token_is_refused(client, jwks_server):
    assert logout(client, jwks_server.mint_logout(jti="same-jti", sid=SID)).status_code == 200
    before = counts()
    assert_error(logout(client, jwks_server.mint_logout(jti="same-jti", sid=OTHER_SID)), 400,
                 "invalid_request", "replay")
    assert counts() == before
    assert not RevokedSession.objects.filter(session_id=OTHER_SID).exists()


def test_replay_record_and_revocation_commit_together(client, jwks_server, monkeypatch):
    token = jwks_server.mint_logout()

    def broken(*args, **kwargs):
        raise DatabaseError("disk full")

    monkeypatch.setattr(services, "revoke_session", broken)
    assert_error(logout(client, token), 503, "unavailable")
    assert counts() == NOTHING  # the jti was not remembered either
    monkeypatch.undo()
    assert logout(client, token).status_code == 200  # so Keycloak's token is not refused as a replay


# --- invalid tokens: each is a 400 that writes nothing ----------------------------------------------------


def _now() -> int:
    return int(time.time())


def _other_key_same_kid(server):
    return server.mint_logout(key=SigningKey("key-1"))


def _tampered(server):
    header, payload, signature = server.mint_logout().split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["sid"] = OTHER_SID
    return f"{header}.{b64(claims)}.{signature}"


def _alg_none(alg):
    def make(server):
        return hand_made({"alg": alg, "kid": server.key.kid, "typ": "logout+jwt"}, server.logout_claims())
    return make


def _hs256_with_public_pem(server):
    header = {"alg": "HS256", "kid": server.key.kid, "typ": "logout+jwt"}
    return hmac_signed(header, server.logout_claims(), public_pem(server.key))


def _hs256_with_public_jwk(server):
    header = {"alg": "HS256", "kid": server.key.kid, "typ": "logout+jwt"}
    return hmac_signed(header, server.logout_claims(), json.dumps(server.key.jwk()).encode())


def _jwe_shaped(server):
    return "eyJhbGciOiJSU0EtT0FFUCIsImVuYyI6IkEyNTZHQ00ifQ.a.b.c.d"


def _json_serialization(server):
    header, payload, signature = server.mint_logout().split(".")
    return json.dumps({"payload": payload, "protected": header, "signature": signature})


def _id_token(server):
    # Keycloak's ID token for the receiving client: same keys, header typ "JWT", payload typ "ID", a nonce.
    return server.mint(aud=RECEIVER, typ="ID", nonce="n-0S6_WzA2Mj")


def _id_token_without_header_typ(server):
    return server.mint(aud=RECEIVER, typ="ID", nonce="n-0S6_WzA2Mj", headers={"typ": None})


def _access_token(server):
    return server.mint()


def _access_token_for_receiver_without_header_typ(server):
    return server.mint(aud=RECEIVER, headers={"typ": None})


INVALID_TOKENS = {
    # structure and size
    "not a JWS": (lambda s: "not-a-token", "not a compact JWS"),
    "two segments": (lambda s: "a.b", "not a compact JWS"),
    "JWE (five segments)": (_jwe_shaped, "not a compact JWS"),
    "JSON serialization": (_json_serialization, "not a compact JWS"),
    "too large": (lambda s: s.mint_logout(pad="x" * 9000), "token too large"),
    "bad header base64": (lambda s: "!!!." + s.mint_logout().split(".", 1)[1], "not a compact JWS"),
    "header not JSON": (lambda s: b64(b"\xff\xfe") + "." + s.mint_logout().split(".", 1)[1],
                        "malformed token header"),
    "header a JSON list": (lambda s: b64([1]) + "." + s.mint_logout().split(".", 1)[1],
                           "malformed token header"),
    # algorithm
    "alg none": (_alg_none("none"), "algorithm not allowed"),
    "alg None": (_alg_none("None"), "algorithm not allowed"),
    "alg NONE": (_alg_none("NONE"), "algorithm not allowed"),
    "alg missing": (lambda s: hand_made({"kid": s.key.kid}, s.logout_claims(), b"x"),
                    "algorithm not allowed"),
    "HS256 with the public key PEM": (_hs256_with_public_pem, "algorithm not allowed"),
    "HS256 with the public JWK": (_hs256_with_public_jwk, "algorithm not allowed"),
    "RS512 (not in the allow-list)": (lambda s: s.mint_logout(algorithm="RS512"), "algorithm not allowed"),
    # header
    "crit": (lambda s: s.mint_logout(headers={"crit": ["exp"]}), "unsupported critical header"),
    "typ JWT": (lambda s: s.mint_logout(headers={"typ": "JWT"}), "header typ"),
    "typ at+jwt": (lambda s: s.mint_logout(headers={"typ": "at+jwt"}), "header typ"),
    "typ secevent+jwt": (lambda s: s.mint_logout(headers={"typ": "secevent+jwt"}), "header typ"),
    "typ not a string": (lambda s: s.mint_logout(headers={"typ": 1}), "header typ"),
    "kid missing": (lambda s: hand_made({"alg": "RS256", "typ": "logout+jwt"}, s.logout_claims(), b"x"),
                    "key id"),
    "kid unknown": (lambda s: s.mint_logout(headers={"kid": "no-such-key"}), "unknown signing key"),
    "kid path traversal": (lambda s: s.mint_logout(headers={"kid": "../../../etc/passwd"}),
                           "unknown signing key"),
    # signature
    "other key, same kid": (_other_key_same_kid, "bad signature"),
    "tampered payload": (_tampered, "bad signature"),
    "empty signature": (lambda s: s.mint_logout().rsplit(".", 1)[0] + ".", "bad signature"),
    # iss, aud
    "wrong iss": (lambda s: s.mint_logout(iss="http://127.0.0.1:1/realms/evil"), "wrong issuer"),
    "iss with a trailing slash": (lambda s: s.mint_logout(iss=s.issuer + "/"), "wrong issuer"),
    "iss missing": (lambda s: s.mint_logout(iss=DROP), "missing required claim"),
    "aud of the APIs (an access token's)": (lambda s: s.mint_logout(aud="tokenversion-api"),
                                            "wrong audience"),
    "aud missing": (lambda s: s.mint_logout(aud=DROP), "missing required claim"),
    "aud not a string": (lambda s: s.mint_logout(aud=[1]), "wrong audience"),
    # iat, exp
    "iat missing": (lambda s: s.mint_logout(iat=DROP), "missing required claim"),
    "iat in the future": (lambda s: s.mint_logout(iat=_now() + 3600, exp=_now() + 3720), "not yet valid"),
    "iat a numeric string": (lambda s: s.mint_logout(iat=str(_now())), "malformed iat claim"),
    "iat a boolean": (lambda s: s.mint_logout(iat=True), "malformed iat claim"),
    "iat older than max age": (lambda s: s.mint_logout(iat=_now() - 400, exp=_now() + 60), "too old"),
    "exp missing": (lambda s: s.mint_logout(exp=DROP), "missing required claim"),
    "exp past": (lambda s: s.mint_logout(iat=_now() - 200, exp=_now() - 60), "token expired"),
    "exp a numeric string": (lambda s: s.mint_logout(exp=str(_now() + 60)), "malformed exp claim"),
    "nbf in the future": (lambda s: s.mint_logout(nbf=_now() + 3600), "not yet valid"),
    # jti
    "jti missing": (lambda s: s.mint_logout(jti=DROP), "missing required claim"),
    "jti a number": (lambda s: s.mint_logout(jti=12345), "malformed jti claim"),
    "jti empty": (lambda s: s.mint_logout(jti=""), "malformed jti claim"),
    "jti with a NUL": (lambda s: s.mint_logout(jti="a\x00b"), "malformed jti claim"),
    "jti too long": (lambda s: s.mint_logout(jti="j" * 256), "malformed jti claim"),
    # sub, sid
    "neither sub nor sid": (lambda s: s.mint_logout(sub=DROP, sid=DROP), "neither sub nor sid"),
    "sub a number": (lambda s: s.mint_logout(sub=42, sid=DROP), "malformed sub claim"),
    "sub empty": (lambda s: s.mint_logout(sub="", sid=DROP), "malformed sub claim"),
    "sid null": (lambda s: s.mint_logout(sid=None), "malformed sid claim"),
    "sid empty": (lambda s: s.mint_logout(sid=""), "malformed sid claim"),
    "sid a list": (lambda s: s.mint_logout(sid=[SID]), "malformed sid claim"),
    "sid not an identifier": (lambda s: s.mint_logout(sid="a/../b c"), "sid must be"),
    "sub not an identifier": (lambda s: s.mint_logout(sub="<script>", sid=DROP), "sub must be"),
    # events
    "events missing": (lambda s: s.mint_logout(events=DROP), "events claim"),
    "events a list": (lambda s: s.mint_logout(events=[BACKCHANNEL_LOGOUT_EVENT]), "events claim"),
    "events a string": (lambda s: s.mint_logout(events=BACKCHANNEL_LOGOUT_EVENT), "events claim"),
    "events without the member": (lambda s: s.mint_logout(events={"other": {}}), "back-channel logout event"),
    "events member not an object": (lambda s: s.mint_logout(events={BACKCHANNEL_LOGOUT_EVENT: True}),
                                    "back-channel logout event"),
    "https spelling of the member": (
        lambda s: s.mint_logout(events={"https://schemas.openid.net/event/backchannel-logout": {}}),
        "back-channel logout event"),
    # nonce, payload typ
    "nonce present": (lambda s: s.mint_logout(nonce="abc"), "nonce"),
    "nonce null": (lambda s: s.mint_logout(nonce=None), "nonce"),
    "payload typ ID": (lambda s: s.mint_logout(typ="ID", headers={"typ": DROP}), "payload typ"),
    # other tokens of the same realm sent as logout tokens
    "ID token": (_id_token, "header typ"),
    "ID token without header typ": (_id_token_without_header_typ, "events claim"),
    "access token": (_access_token, "header typ"),
    "access token for the receiver without header typ": (_access_token_for_receiver_without_header_typ,
                                                          "events claim"),
}


@pytest.mark.parametrize("case", list(INVALID_TOKENS))
def test_invalid_logout_token_is_400_and_writes_nothing(client, jwks_server, case):
    make, detail = INVALID_TOKENS[case]
    token = make(jwks_server)
    response = logout(client, token)
    assert_error(response, 400, "invalid_request", detail)
    assert counts() == NOTHING
    assert token not in response.content.decode() or len(token) < 12  # the answer never echoes the token


def test_a_refused_token_does_not_burn_its_jti(client, jwks_server):
    refused = logout(client, jwks_server.mint_logout(jti="kept", nonce="x"))
    assert_error(refused, 400, "invalid_request", "nonce")
    assert logout(client, jwks_server.mint_logout(jti="kept")).status_code == 200


# --- the request itself ------------------------------------------------------------------------------


@pytest.mark.parametrize(("body", "content_type", "status", "code"), [
    ({"token": "x"}, FORM, 400, "invalid_request"),
    ({"logout_token": ""}, FORM, 400, "invalid_request"),
    ("", FORM, 400, "invalid_request"),
    ("logout_token=%FF%FE", FORM, 400, "invalid_request"),  # not UTF-8
    ("logout_token=a&" + "&".join(f"f{i}=1" for i in range(100)), FORM, 400, "invalid_request"),
    ("logout_token=" + "a" * 20000, FORM, 413, "body_too_large"),
])
def test_malformed_requests(client, body, content_type, status, code):
    assert_error(post(client, body, content_type), status, code)
    assert counts() == NOTHING


def test_duplicated_logout_token_field_is_refused(client, jwks_server):
    body = {"logout_token": [jwks_server.mint_logout(), jwks_server.mint_logout()]}
    assert_error(post(client, body), 400, "invalid_request", "exactly one")
    assert counts() == NOTHING


@pytest.mark.parametrize("content_type",
                         ["application/json", "text/plain", "multipart/form-data; boundary=x"])
def test_wrong_content_type_is_400(client, jwks_server, content_type):
    body = urlencode({"logout_token": jwks_server.mint_logout()})
    assert_error(post(client, body, content_type), 400, "invalid_request", "Content-Type")
    assert counts() == NOTHING


def test_charset_parameter_is_fine(client, jwks_server):
    body = urlencode({"logout_token": jwks_server.mint_logout()})
    assert post(client, body, FORM + "; charset=UTF-8").status_code == 200


def test_extra_fields_are_ignored(client, jwks_server):
    assert post(client, {"logout_token": jwks_server.mint_logout(), "state": "x"}).status_code == 200


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH"])
def test_other_methods_are_405(client, method):
    response = client.generic(method, URL)
    assert_error(response, 405, "method_not_allowed")
    assert response["Allow"] == "POST"


def test_head_is_405_too(client):
    response = client.head(URL)
    assert response.status_code == 405
    assert response["Cache-Control"] == "no-store"


# --- unavailable and unconfigured ------------------------------------------------------------------------


def test_keys_unavailable_is_503(client, jwks_server):
    jwks_server.fail = True  # before any key was fetched: the fixture gave this test a fresh JWKS client
    response = logout(client, jwks_server.mint_logout())
    assert_error(response, 503, "keys_unavailable")
    assert response["Retry-After"] == "1"
    assert counts() == NOTHING


def test_database_outage_is_503(client, jwks_server, transactional_db):
    token = jwks_server.mint_logout()
    with database_down():
        assert_error(logout(client, token), 503, "unavailable")
    assert counts() == NOTHING
    assert logout(client, token).status_code == 200  # nothing was remembered, so Keycloak's token still works


@pytest.mark.parametrize("value", [None, "", []])
def test_unconfigured_receiver_refuses_everything(client, jwks_server, tv_settings, value):
    tv_settings(BACKCHANNEL_AUDIENCE=value)
    assert_error(logout(client, jwks_server.mint_logout()), 400, "not_configured")
    assert counts() == NOTHING


def test_no_fallback_to_the_api_audience(client, jwks_server, tv_settings):
    tv_settings(BACKCHANNEL_AUDIENCE=None)
    assert_error(logout(client, jwks_server.mint_logout(aud="tokenversion-api")), 400, "not_configured")


def test_several_receiver_client_ids(client, jwks_server, tv_settings):
    tv_settings(BACKCHANNEL_AUDIENCE=["web", "mobile"])
    assert logout(client, jwks_server.mint_logout(aud="mobile")).status_code == 200
    assert_error(logout(client, jwks_server.mint_logout()), 400, "invalid_request", "wrong audience")


def test_max_age_is_a_setting(client, jwks_server, tv_settings):
    tv_settings(BACKCHANNEL_MAX_AGE=30)
    now = _now()
    assert_error(logout(client, jwks_server.mint_logout(iat=now - 60, exp=now + 60)), 400, "invalid_request",
                 "too old")


def test_unexpected_errors_are_500_json_and_no_store(client, jwks_server, monkeypatch):
    def boom(*args, **kwargs):
        raise RuntimeError("bug")

    monkeypatch.setattr(services, "remember_once", boom)
    assert_error(logout(client, jwks_server.mint_logout()), 500, "internal_error")
    assert counts() == NOTHING


# --- the pure validator, without Django's request path ----------------------------------------------------


def _validator(server, **policy) -> LogoutTokenValidator:
    values = {"issuer": server.issuer, "audience": RECEIVER, **policy}
    return LogoutTokenValidator(LogoutTokenPolicy(**values), ResilientJWKClient(server.jwks_url))


def test_validator_returns_what_the_view_needs(jwks_server):
    now = _now()
    token = _validator(jwks_server).validate(jwks_server.mint_logout(iat=now, exp=now + 120, jti="j-1"))
    assert (token.issuer, token.jti, token.subject, token.session_id) == (jwks_server.issuer, "j-1", SUB, SID)
    assert (token.issued_at, token.expires_at, token.replay_until) == (now, now + 120, now + 125)


def test_validator_caps_the_replay_window_at_max_age(jwks_server):
    now = _now()
    token = _validator(jwks_server, max_age=60).validate(jwks_server.mint_logout(iat=now, exp=now + 86400))
    assert token.replay_until == now + 60 + 5


def test_validator_maps_key_failures(jwks_server):
    jwks_server.fail = True
    with pytest.raises(KeysUnavailable):
        _validator(jwks_server).validate(jwks_server.mint_logout())


def test_validator_refuses_non_strings(jwks_server):
    with pytest.raises(TokenInvalid):
        _validator(jwks_server).validate(b"abc")  # type: ignore[arg-type]


def test_validator_needs_an_audience(jwks_server):
    with pytest.raises(ValueError, match="audience"):
        _validator(jwks_server, audience=())


def test_view_validator_shares_the_process_client(jwks_server):
    from tokenversion_server.conf import logout_token_policy

    client = get_validator().jwk_client
    validator = LogoutTokenValidator(logout_token_policy(), client)
    assert validator.validate(jwks_server.mint_logout()).session_id == SID
    assert get_validator().jwk_client is client
