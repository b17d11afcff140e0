"""The extension on older Keycloak servers: the compatibility matrix of docs/keycloak.md.

The whole end-to-end directory runs on the version pinned in keycloak/pom.xml (the newest we serve). Here the
same JAR (built against that version) runs on the newest patch of each older minor line that Maven Central
serves, one server at a time on the same ports, with five scenarios on each: the seed scenario (logout kills
the access token), a password change, a realm-wide sign-out, the account console's sign-out of several
sessions on one client (Keycloak issue 27359's shape, with no admin event to fall back on), and attribute mode
(no Java in the token path; issue 12 item 5). After the module
the pinned version runs again for any later test (conftest.py switches back; the matrix sorts last, so a full
run does not).
"""

from __future__ import annotations

import time

import jwt
import pytest
import requests
from keycloak.exceptions import KeycloakPostError

from . import test_admin_and_events, test_keycloak_edge_cases, test_seed_scenario
from .conftest import call_api, past_the_leeway, seconds_until_refused

# Newest patch of each older 26.x line on Maven Central (checked 2026-11-27 in its maven-metadata.xml; 26.6 was
# never published there). Keep in step with the table in docs/keycloak.md.
OLDER_VERSIONS = ("26.4.7", "26.5.6")


@pytest.fixture(scope="module", params=OLDER_VERSIONS)
def old_keycloak(request, stack):
    stack.switch_keycloak(request.param)
    assert stack.running_keycloak_version() == request.param
    return stack


def test_the_extension_loads_and_the_seed_scenario_holds(old_keycloak, person):
    # asserts token_version == 0 in a fresh token, then logout -> refused within a second
    test_seed_scenario.test_logout_kills_the_access_token_within_a_second(old_keycloak, person)


def test_a_password_change_kills_earlier_tokens(old_keycloak, person):
    test_admin_and_events.test_password_change_in_keycloak_kills_earlier_tokens(old_keycloak, person)


def test_a_realm_wide_sign_out_kills_every_earlier_token(old_keycloak, person):
    stack = old_keycloak
    tokens = stack.openid().token(person.username, person.password)
    assert jwt.decode(tokens["access_token"], options={"verify_signature": False})["token_version"] == 0
    assert call_api(stack, tokens["access_token"]).status_code == 200
    realm_rows = len(stack.sql("SELECT id FROM tokenversion_server_revocationevent WHERE scope = 'realm'"))

    response = stack.keycloak_admin().connection.raw_post(f"admin/realms/{stack.config.realm}/logout-all", data="{}")
    assert response.status_code == 200, response.text
    seconds_until_refused(stack, tokens["access_token"])
    # reported by the event listener (Keycloak sends no back-channel logout for it)
    rows = stack.sql("SELECT actor_type, scope FROM tokenversion_server_revocationevent WHERE scope = 'realm' "
                     "ORDER BY id")
    assert rows[realm_rows:] == [("keycloak", "realm")]

    past_the_leeway()  # a login within LEEWAY after a realm revocation is refused too (clock skew); see docs
    again = stack.openid().token(person.username, person.password)
    assert call_api(stack, again["access_token"]).status_code == 200


def test_signing_out_every_device(old_keycloak, person):
    """The account console's "Sign out all devices" ends three sessions of one user on one client. From 26.5 on
    every one is refused (one back-channel logout, the others as LOGOUT events through the listener). On 26.4.x
    Keycloak sends one back-channel logout and no event for the other two (issue 27359): their refresh tokens
    are dead in Keycloak, but their access tokens stay accepted until they expire. That known limit
    (docs/keycloak.md) is asserted exactly, so a change on either side shows."""
    stack = old_keycloak
    if not stack.keycloak_version.startswith("26.4."):
        test_keycloak_edge_cases.test_signing_out_every_device_from_the_account_console_kills_every_session(
            stack, person)
        return
    oidc = stack.openid()
    sessions = [oidc.token(person.username, person.password) for _ in range(3)]
    response = requests.delete(f"{stack.config.issuer}/account/sessions", params={"current": "true"}, timeout=10,
                               headers={"Authorization": f"Bearer {sessions[0]['access_token']}",
                                        "Accept": "application/json"})
    assert response.status_code == 204, response.text
    assert stack.keycloak_admin().get_sessions(person.subject) == []
    time.sleep(4 * stack.config.service_cache_ttl + 1.0)  # past every worker's cache
    statuses = sorted(call_api(stack, tokens["access_token"]).status_code for tokens in sessions)
    assert statuses == [200, 200, 401]
    for tokens in sessions:
        with pytest.raises(KeycloakPostError) as refused:
            oidc.refresh_token(tokens["refresh_token"])
        assert refused.value.response_code == 400
    notes = [note for (note,) in stack.sql("SELECT note FROM tokenversion_server_revocationevent "
                                           "WHERE subject = %s", person.subject)]
    assert notes == ["OIDC back-channel logout"]


def test_attribute_mode_works_on_this_version(old_keycloak, person):
    """Attribute mode on each older server, inside the matrix's own Keycloak (no extra start): keycloak_setup
    declares the admin-only attribute and the User Attribute mapper, a bump lands in the attribute, and the next
    token (lightweight included) carries it with no call to the provider. The realm goes back to the extension's
    mapper after."""
    from .test_attribute_mode import set_attribute_env
    from .test_keycloak_edge_cases import claims_of, make_client

    stack = old_keycloak
    set_attribute_env(stack, True)  # for the commands below; the running provider is left as it is
    try:
        out = stack.keycloak_setup("--attribute-mode")
        assert "declare user attribute token_version in the user profile (admin-only)" in out
        assert "version 0 -> 1" in stack.manage("revoke", person.subject).stdout
        once = stack.manage("tokenversion_attribute_sync", "--once").stdout
        assert once.endswith("0 failed; 0 pending.\n"), once
        assert stack.keycloak_admin().get_user(person.subject)["attributes"]["token_version"] == ["1"]
        tokens = stack.openid().token(person.username, person.password)
        assert claims_of(tokens["access_token"])["token_version"] == 1
        assert call_api(stack, tokens["access_token"]).status_code == 200
        client = f"lightweight-{person.username}"
        make_client(stack, client, publicClient=True, directAccessGrantsEnabled=True,
                    attributes={"client.use.lightweight.access.token.enabled": "true"})
        light = claims_of(stack.openid(client).token(person.username, person.password)["access_token"])
        assert ("preferred_username" not in light, light["token_version"]) == (True, 1)
    finally:
        set_attribute_env(stack, False)
        stack.keycloak_setup()
