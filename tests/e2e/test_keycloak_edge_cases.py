"""Keycloak's own edge cases, each on the real server (issue 12 item 6; docs/keycloak.md "Edge cases").

Lightweight access tokens, tokens without ``sid`` (service accounts, token exchange), offline tokens, and the
back-channel logouts that name one ``sid`` for several sessions (Keycloak issues 22914 and 27359).
"""

from __future__ import annotations

import time
import uuid

import jwt
import pytest
import requests
from keycloak.exceptions import KeycloakPostError

from keycloak import KeycloakOpenID

from .conftest import MAPPER_MAX_STALENESS, call_api, next_second, report, seconds_until_refused

EXCHANGE_GRANT = "urn:ietf:params:oauth:grant-type:token-exchange"
ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"


def claims_of(token: str) -> dict:
    return jwt.decode(token, options={"verify_signature": False})


def tokenversion_scope_id(stack) -> str:
    return stack.keycloak_admin().get_client_scope_by_name("tokenversion")["id"]


def make_client(stack, client_id: str, **representation) -> str:
    """A client in the test realm with the tokenversion client scope as a default scope; its internal id."""
    admin = stack.keycloak_admin()
    internal = admin.create_client({"clientId": client_id, "protocol": "openid-connect", **representation})
    scope = tokenversion_scope_id(stack)
    admin.add_client_default_client_scope(internal, scope, {"realm": stack.config.realm, "client": internal,
                                                            "clientScopeId": scope})
    return internal


def revoke_user(stack, subject: str) -> None:
    """A version bump only, as ``manage.py revoke`` (and the REST API) make it: no Keycloak session is ended."""
    out = stack.manage("revoke", subject, "--reason", "compromise").stdout
    assert "version 0 -> 1" in out, out
    # The mapper's cached mode puts a bump into every token issued later than its staleness bound (a token issued
    # sooner may still carry the old version, and is refused): the tests below check tokens issued after it.
    time.sleep(MAPPER_MAX_STALENESS)


def audit(stack, subject: str) -> list[tuple]:
    return stack.sql("SELECT scope, actor_type, reason, session_id FROM tokenversion_server_revocationevent "
                     "WHERE subject = %s ORDER BY id", subject)


# Lightweight access tokens -----------------------------------------------------------------------------------


def test_lightweight_access_tokens_carry_the_version_and_the_subject(stack, person):
    """A client on lightweight access tokens gets only the claims of mappers marked "Add to lightweight access
    token". Keycloak's own ``sub`` mapper is not marked, so keycloak_setup adds one that is, beside the marked
    version and audience mappers: without it the token has no ``sub`` and every service refuses it."""
    client = f"lightweight-{uuid.uuid4().hex[:8]}"
    make_client(stack, client, publicClient=True, directAccessGrantsEnabled=True,
                attributes={"client.use.lightweight.access.token.enabled": "true"})
    tokens = stack.openid(client).token(person.username, person.password)
    claims = claims_of(tokens["access_token"])
    assert "preferred_username" not in claims and "realm_access" not in claims  # it is a lightweight token
    assert claims["token_version"] == 0
    assert claims["sub"] == person.subject
    assert stack.config.audience in claims["aud"]
    assert call_api(stack, tokens["access_token"]).status_code == 200

    revoke_user(stack, person.subject)
    seconds_until_refused(stack, tokens["access_token"])


def test_admin_cli_tokens_are_lightweight_and_carry_the_version(stack, person):
    """The realm's own ``admin-cli`` client issues lightweight access tokens by default in Keycloak 26."""
    admin = stack.keycloak_admin()
    internal = admin.get_client_id("admin-cli")
    assert admin.get_client(internal)["attributes"]["client.use.lightweight.access.token.enabled"] == "true"
    scope = tokenversion_scope_id(stack)
    admin.add_client_default_client_scope(internal, scope, {"realm": stack.config.realm, "client": internal,
                                                            "clientScopeId": scope})
    tokens = stack.openid("admin-cli").token(person.username, person.password)
    claims = claims_of(tokens["access_token"])
    assert "preferred_username" not in claims
    assert (claims["token_version"], claims["sub"]) == (0, person.subject)
    assert call_api(stack, tokens["access_token"]).status_code == 200


# Tokens without sid ------------------------------------------------------------------------------------------


def test_a_service_account_token_has_no_sid_and_is_revocable_by_version(stack):
    """Client credentials: no user session, so no ``sid``; ``sub`` is the service-account user, whose version
    the mapper embeds like any user's. A revocation of that user refuses its tokens; the next one works."""
    client = f"robot-{uuid.uuid4().hex[:8]}"
    secret = uuid.uuid4().hex
    internal = make_client(stack, client, publicClient=False, serviceAccountsEnabled=True,
                           standardFlowEnabled=False, secret=secret)
    robot = stack.keycloak_admin().get_client_service_account_user(internal)
    oidc = KeycloakOpenID(server_url=stack.config.keycloak_url + "/", realm_name=stack.config.realm,
                          client_id=client, client_secret_key=secret)
    first = oidc.token(grant_type="client_credentials")
    claims = claims_of(first["access_token"])
    assert "sid" not in claims
    assert (claims["sub"], claims["token_version"]) == (robot["id"], 0)
    response = call_api(stack, first["access_token"])
    assert response.status_code == 200, response.text
    assert response.json()["sid"] is None

    revoke_user(stack, robot["id"])
    seconds_until_refused(stack, first["access_token"])
    second = oidc.token(grant_type="client_credentials")
    assert claims_of(second["access_token"])["token_version"] == 1
    assert call_api(stack, second["access_token"]).status_code == 200


def test_a_standard_token_exchange_keeps_the_session_and_dies_with_it(stack, person):
    """Standard token exchange (V2, supported and on by default since 26.2) issues the new token in the subject
    token's user session: same ``sid``, so logging that session out refuses the exchanged token too."""
    requester = f"exchanger-{uuid.uuid4().hex[:8]}"
    secret = uuid.uuid4().hex
    make_client(stack, requester, publicClient=False, standardFlowEnabled=False, secret=secret,
                attributes={"standard.token.exchange.enabled": "true"})
    # the subject token must name the requester in its audience
    login = f"te-app-{uuid.uuid4().hex[:8]}"
    internal = make_client(stack, login, publicClient=True, directAccessGrantsEnabled=True)
    stack.keycloak_admin().add_mapper_to_client(internal, {
        "name": "audience exchanger", "protocol": "openid-connect", "protocolMapper": "oidc-audience-mapper",
        "config": {"included.client.audience": requester, "access.token.claim": "true"}})
    oidc = stack.openid(login)
    subject_tokens = oidc.token(person.username, person.password)
    response = requests.post(f"{stack.config.issuer}/protocol/openid-connect/token", timeout=10, data={
        "grant_type": EXCHANGE_GRANT, "client_id": requester, "client_secret": secret,
        "subject_token": subject_tokens["access_token"], "subject_token_type": ACCESS_TOKEN_TYPE,
        "requested_token_type": ACCESS_TOKEN_TYPE})
    assert response.status_code == 200, response.text
    exchanged = response.json()["access_token"]
    claims = claims_of(exchanged)
    assert claims["azp"] == requester
    assert claims["sid"] == claims_of(subject_tokens["access_token"])["sid"]
    assert claims["token_version"] == 0
    assert call_api(stack, exchanged).status_code == 200

    oidc.logout(subject_tokens["refresh_token"])
    seconds_until_refused(stack, exchanged)


# Offline tokens ----------------------------------------------------------------------------------------------


def test_a_user_revocation_refuses_tokens_minted_from_an_offline_token(stack, person):
    """An offline token outlives the SSO session; the access tokens it mints carry the offline session's ``sid``
    and the version of their issue. A revocation refuses every one minted before it; a version bump alone
    leaves the offline session alive (its next token carries the new version), the Keycloak admin's "Sign out"
    of the user (what the admin's revocation actions call) ends it."""
    oidc = stack.openid()
    offline = oidc.token(person.username, person.password, scope="openid offline_access")
    assert claims_of(offline["refresh_token"])["typ"] == "Offline"
    minted = oidc.refresh_token(offline["refresh_token"])
    assert claims_of(minted["access_token"])["sid"] == claims_of(offline["access_token"])["sid"]
    assert call_api(stack, minted["access_token"]).status_code == 200

    revoke_user(stack, person.subject)
    seconds_until_refused(stack, minted["access_token"])
    seconds_until_refused(stack, offline["access_token"])
    after = oidc.refresh_token(offline["refresh_token"])
    assert claims_of(after["access_token"])["token_version"] == 1
    assert call_api(stack, after["access_token"]).status_code == 200

    next_second()  # Keycloak's not-before is in whole seconds: a token of the same second would survive it
    stack.keycloak_admin().user_logout(person.subject)
    with pytest.raises(KeycloakPostError) as refused:
        oidc.refresh_token(offline["refresh_token"])
    assert refused.value.response_code == 400
    seconds_until_refused(stack, after["access_token"])


def test_logging_out_with_an_offline_token_ends_the_offline_session(stack, person):
    """``POST /logout`` with the offline token: Keycloak sends a back-channel logout for its ``sid``."""
    oidc = stack.openid()
    offline = oidc.token(person.username, person.password, scope="openid offline_access")
    minted = oidc.refresh_token(offline["refresh_token"])
    sid = claims_of(minted["access_token"])["sid"]
    assert call_api(stack, minted["access_token"]).status_code == 200

    oidc.logout(offline["refresh_token"])
    seconds_until_refused(stack, minted["access_token"])
    with pytest.raises(KeycloakPostError) as refused:
        oidc.refresh_token(offline["refresh_token"])
    assert refused.value.response_code == 400
    assert ("session", "keycloak", "logout", sid) in audit(stack, person.subject)


# One sid for several sessions --------------------------------------------------------------------------------


def user_logout_and_check(stack, person, sessions: list[dict]) -> list[tuple]:
    """Keycloak admin "Sign out" of the user; every session's token refused; returns the audit rows."""
    for tokens in sessions:
        assert call_api(stack, tokens["access_token"]).status_code == 200
    response = stack.keycloak_admin().connection.raw_post(
        f"admin/realms/{stack.config.realm}/users/{person.subject}/logout", data="{}")
    assert response.status_code == 204, response.text
    for tokens in sessions:
        seconds_until_refused(stack, tokens["access_token"])
    rows = audit(stack, person.subject)
    # The event listener reports the admin's sign-out of the user: a version bump, which refuses every token
    # of the user whatever back-channel requests Keycloak sent.
    assert ("user", "keycloak", "logout", "") in rows
    return rows


def test_an_admin_sign_out_of_a_user_kills_every_session(stack, person):
    """Keycloak issue 22914: the admin's sign-out of a user sends back-channel logouts naming single ``sid``s,
    and only to clients with a back-channel URL; here the second session is on a client without one."""
    other = f"no-backchannel-{uuid.uuid4().hex[:8]}"
    make_client(stack, other, publicClient=True, directAccessGrantsEnabled=True)
    sessions = [stack.openid().token(person.username, person.password),
                stack.openid(other).token(person.username, person.password)]
    rows = user_logout_and_check(stack, person, sessions)
    session_rows = [r for r in rows if r[0] == "session"]
    report(f"Keycloak {stack.keycloak_version} admin sign-out of a user with 2 sessions (one on a client "
           f"without back-channel URL): {len(session_rows)} back-channel logout(s) received; all refused")


def test_several_sessions_on_one_client_all_die(stack, person):
    """Keycloak issue 27359: several sessions of one user on one client, ended together, may produce a single
    back-channel request; every one of them must be refused."""
    sessions = [stack.openid().token(person.username, person.password) for _ in range(3)]
    assert len({claims_of(t["access_token"])["sid"] for t in sessions}) == 3
    rows = user_logout_and_check(stack, person, sessions)
    session_rows = [r for r in rows if r[0] == "session"]
    report(f"Keycloak {stack.keycloak_version} admin sign-out of a user with 3 sessions on one client: "
           f"{len(session_rows)} back-channel logout(s) received; all refused")


def test_signing_out_every_device_from_the_account_console_kills_every_session(stack, person):
    """The account console's "Sign out all devices" (``DELETE /account/sessions``) ends several sessions of one
    user on one client at once, the shape of Keycloak issue 27359; it emits no admin event, so only the
    back-channel logouts tell the provider."""
    sessions = [stack.openid().token(person.username, person.password) for _ in range(3)]
    for tokens in sessions:
        assert call_api(stack, tokens["access_token"]).status_code == 200
    response = requests.delete(f"{stack.config.issuer}/account/sessions", params={"current": "true"}, timeout=10,
                               headers={"Authorization": f"Bearer {sessions[0]['access_token']}",
                                        "Accept": "application/json"})
    assert response.status_code == 204, response.text
    assert stack.keycloak_admin().get_sessions(person.subject) == []
    for tokens in sessions:
        seconds_until_refused(stack, tokens["access_token"])
    notes = [note for (note,) in stack.sql("SELECT note FROM tokenversion_server_revocationevent "
                                           "WHERE subject = %s AND scope = 'session'", person.subject)]
    report(f"Keycloak {stack.keycloak_version} account console sign-out of 3 sessions on one client: "
           f"{sum('back-channel' in n for n in notes)} back-channel logout(s), "
           f"{sum('(LOGOUT)' in n for n in notes)} LOGOUT event(s) from the listener; all refused")
