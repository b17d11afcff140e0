"""The seed scenario, as the user told it, against the real Keycloak: a logged-out user's token stops working."""

from __future__ import annotations

import jwt

from .conftest import call_api, report, seconds_until_refused


def test_logout_kills_the_access_token_within_a_second(stack, person):
    oidc = stack.openid()
    tokens = oidc.token(person.username, person.password)
    access = tokens["access_token"]
    claims = jwt.decode(access, options={"verify_signature": False})
    assert claims["token_version"] == 0
    assert claims["sub"] == person.subject

    ok = call_api(stack, access)
    assert ok.status_code == 200, ok.text
    assert ok.json()["username"] == person.username

    oidc.logout(tokens["refresh_token"])  # Keycloak calls the provider's back-channel logout before answering
    elapsed = seconds_until_refused(stack, access, within=1.0)
    report(f"seed scenario: every worker of the sample service refused the old token {elapsed * 1000:.0f} ms "
           f"after Keycloak's logout returned (target < 1000 ms)")
    assert elapsed < 1.0

    refused = call_api(stack, access)
    assert refused.status_code == 401
    assert refused.json()["detail"]
    # the session was revoked by Keycloak's back-channel logout, with an audit row naming Keycloak
    rows = stack.sql("SELECT scope, actor_type, reason FROM tokenversion_server_revocationevent "
                     "WHERE session_id = %s", claims["sid"])
    assert rows == [("session", "keycloak", "logout")]


def test_a_new_login_after_logout_gets_a_working_token(stack, person):
    oidc = stack.openid()
    first = oidc.token(person.username, person.password)
    oidc.logout(first["refresh_token"])
    seconds_until_refused(stack, first["access_token"])

    second = oidc.token(person.username, person.password)
    assert call_api(stack, second["access_token"]).status_code == 200
    assert call_api(stack, first["access_token"]).status_code == 401


def test_logging_out_one_device_keeps_the_other(stack, person):
    oidc = stack.openid()
    phone = oidc.token(person.username, person.password)
    laptop = oidc.token(person.username, person.password)
    sid_phone = jwt.decode(phone["access_token"], options={"verify_signature": False})["sid"]
    sid_laptop = jwt.decode(laptop["access_token"], options={"verify_signature": False})["sid"]
    assert sid_phone != sid_laptop

    oidc.logout(phone["refresh_token"])
    seconds_until_refused(stack, phone["access_token"])
    assert call_api(stack, laptop["access_token"]).status_code == 200
    refreshed = oidc.refresh_token(laptop["refresh_token"])
    assert call_api(stack, refreshed["access_token"]).status_code == 200
