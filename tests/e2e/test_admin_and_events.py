"""Revocations that do not start from a user's own logout: the Django admin, and Keycloak admin actions that
back-channel logout does not cover (reported by the extension's event listener)."""

from __future__ import annotations

import re

import jwt
import pytest
from keycloak.exceptions import KeycloakPostError

from .conftest import call_api, past_the_leeway, seconds_until_refused


def run_admin_action(stack, subject: str, action: str, note: str = "") -> tuple[str, str]:
    """Select the user in the admin's user list, run the action, confirm it on the confirmation page; return
    that page and the messages of the page after it."""
    (pk,) = stack.sql("SELECT id FROM accounts_keycloakuser WHERE subject = %s", subject)[0]
    session = stack.admin_session()
    url = f"{stack.config.provider_url}/admin/accounts/keycloakuser/"
    page = session.post(url, timeout=30, data={
        "action": action, "_selected_action": [pk], "index": 0,
        "csrfmiddlewaretoken": session.cookies["csrftoken"],
    })
    assert page.status_code == 200 and 'name="tv_confirm"' in page.text, page.text[:500]
    response = session.post(url, timeout=30, data={
        "action": action, "_selected_action": [pk], "note": note, "tv_confirm": "Confirm",
        "csrfmiddlewaretoken": session.cookies["csrftoken"],
    })
    assert response.status_code == 200, response.text[:500]
    return page.text, " ".join(re.findall(r'<li class="(?:success|warning|error)">(.*?)</li>', response.text, re.S))


@pytest.mark.parametrize(("action", "reason"), [("revoke_for_logout", "logout"),
                                                ("revoke_for_compromise", "compromise")])
def test_admin_action_kills_every_token_and_every_refresh_token(stack, person, action, reason):
    oidc = stack.openid()
    phone = oidc.token(person.username, person.password)
    laptop = oidc.token(person.username, person.password)
    assert call_api(stack, phone["access_token"]).status_code == 200

    sessions = {s["id"] for s in stack.keycloak_admin().get_sessions(person.subject)}
    assert len(sessions) == 2
    page, messages = run_admin_action(stack, person.subject, action, note="ticket 4711")
    # The confirmation page names the user and the Keycloak sessions it will end.
    assert person.username in page and person.subject in page
    assert "2 Keycloak sessions will be ended" in page
    assert all(sid in page for sid in sessions), page
    assert ("so refresh tokens of the user are dead" if reason == "compromise"
            else "so clients cannot refresh into new tokens") in page
    assert f"Revoked every token of 1 user ({reason}); Keycloak sessions ended: 2." in messages, messages

    for tokens in (phone, laptop):
        seconds_until_refused(stack, tokens["access_token"], within=1.0)
        with pytest.raises(KeycloakPostError) as refused:
            oidc.refresh_token(tokens["refresh_token"])
        assert refused.value.response_code == 400
    audit = stack.sql("SELECT actor_type, actor, reason, note FROM tokenversion_server_revocationevent "
                      "WHERE subject = %s AND scope = 'user' AND actor_type = 'admin'", person.subject)
    assert audit == [("admin", "admin", reason, f"Django admin: {reason}; 2 Keycloak sessions ended; ticket 4711")]

    fresh = oidc.token(person.username, person.password)
    assert jwt.decode(fresh["access_token"], options={"verify_signature": False})["token_version"] >= 1
    assert call_api(stack, fresh["access_token"]).status_code == 200


def test_password_change_in_keycloak_kills_earlier_tokens(stack, person):
    oidc = stack.openid()
    before = oidc.token(person.username, person.password)
    assert call_api(stack, before["access_token"]).status_code == 200

    stack.keycloak_admin().set_user_password(person.subject, person.password + "-new", temporary=False)
    seconds_until_refused(stack, before["access_token"])
    audit = stack.sql("SELECT actor_type, reason FROM tokenversion_server_revocationevent "
                      "WHERE subject = %s AND scope = 'user'", person.subject)
    assert audit == [("keycloak", "password_change")]

    after = oidc.token(person.username, person.password + "-new")
    assert call_api(stack, after["access_token"]).status_code == 200


def test_disabling_a_user_in_keycloak_kills_their_tokens(stack, person):
    tokens = stack.openid().token(person.username, person.password)
    assert call_api(stack, tokens["access_token"]).status_code == 200
    stack.keycloak_admin().update_user(person.subject, {"enabled": False})
    seconds_until_refused(stack, tokens["access_token"])


def test_realm_sign_out_all_sessions_kills_every_earlier_token(stack, person):
    """Keycloak sends no back-channel logout for "sign out all active sessions"; the event listener reports it."""
    tokens = stack.openid().token(person.username, person.password)
    assert call_api(stack, tokens["access_token"]).status_code == 200

    admin = stack.keycloak_admin()
    response = admin.connection.raw_post(f"admin/realms/{stack.config.realm}/logout-all", data="{}")
    assert response.status_code == 200, response.text
    seconds_until_refused(stack, tokens["access_token"])
    assert stack.sql("SELECT actor_type, scope FROM tokenversion_server_revocationevent WHERE scope = 'realm'") \
        == [("keycloak", "realm")]

    past_the_leeway()  # a login within LEEWAY after a realm revocation is refused too (clock skew); see docs
    again = stack.openid().token(person.username, person.password)
    assert call_api(stack, again["access_token"]).status_code == 200
