"""A session revoked by hand ends in Keycloak too (issue 9 item 3), against the real Keycloak.

Before: the REST API revoked the ``sid`` for MAX_TOKEN_LIFETIME only, the Keycloak session lived on, and its
refresh token kept minting tokens for that ``sid``, accepted again once the revocation was purged. Now the
provider ends the Keycloak session, so the refresh token fails at Keycloak itself. The path where Keycloak
cannot be asked (kept for SSO_SESSION_MAX) is tests/test_session_revocation.py, with a real unreachable URL.
"""

from __future__ import annotations

import datetime as dt

import jwt
import pytest
from keycloak.exceptions import KeycloakPostError

from .conftest import call_api, seconds_until_refused


def revoke_session_through_rest(stack, sid: str) -> dict:
    """``POST /tokenversion/revocations`` as a support person's browser session would (admin login + CSRF)."""
    session = stack.admin_session()
    response = session.post(f"{stack.config.provider_url}/tokenversion/revocations", timeout=30,
                            json={"scope": "session", "session_id": sid, "reason": "compromise",
                                  "note": "phone stolen"},
                            headers={"X-CSRFToken": session.cookies["csrftoken"]})
    assert response.status_code == 201, response.text[:500]
    return response.json()


def test_rest_session_revocation_ends_the_keycloak_session(stack, person):
    oidc = stack.openid()
    phone = oidc.token(person.username, person.password)
    laptop = oidc.token(person.username, person.password)
    sid = jwt.decode(phone["access_token"], options={"verify_signature": False})["sid"]
    answer = call_api(stack, phone["access_token"])
    assert answer.status_code == 200, answer.text

    body = revoke_session_through_rest(stack, sid)
    assert (body["keycloak_session"], body["keycloak_detail"]) == ("ended", "Keycloak session ended.")
    kept = dt.datetime.fromisoformat(body["kept_until"]) - dt.datetime.fromisoformat(body["revoked_at"])
    assert kept == dt.timedelta(seconds=3600)  # MAX_TOKEN_LIFETIME: no Keycloak session is left to refresh

    # The refresh token of that session fails at Keycloak: nothing can mint a new token for the sid.
    with pytest.raises(KeycloakPostError) as refused:
        oidc.refresh_token(phone["refresh_token"])
    assert refused.value.response_code == 400
    seconds_until_refused(stack, phone["access_token"], within=1.0)

    # The user's other session is untouched, at Keycloak and at the API.
    assert call_api(stack, laptop["access_token"]).status_code == 200
    refreshed = oidc.refresh_token(laptop["refresh_token"])
    assert call_api(stack, refreshed["access_token"]).status_code == 200

    # The audit trail names the person who revoked, with what became of the Keycloak session.
    rows = stack.sql("SELECT actor_type, actor, reason, note FROM tokenversion_server_revocationevent "
                     "WHERE session_id = %s AND actor_type = 'api'", sid)
    assert rows == [("api", "admin", "compromise", "phone stolen\nKeycloak session ended.")]


def test_revoking_a_session_keycloak_no_longer_has_says_so(stack, person):
    oidc = stack.openid()
    tokens = oidc.token(person.username, person.password)
    sid = jwt.decode(tokens["access_token"], options={"verify_signature": False})["sid"]
    oidc.logout(tokens["refresh_token"])  # the user logs out: Keycloak ends the session itself
    body = revoke_session_through_rest(stack, sid)
    assert body["keycloak_session"] == "not_found"
    seconds_until_refused(stack, tokens["access_token"], within=1.0)
