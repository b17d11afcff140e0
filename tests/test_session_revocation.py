"""A manually revoked session must not come back (issue 9 item 3).

Manual session revocation (REST API, admin form, ``manage.py revoke --session``) asks Keycloak to end the
session: Keycloak re-runs the mappers on every refresh, so a live Keycloak session could otherwise mint new
tokens for the revoked ``sid`` once the revocation is purged. Where Keycloak cannot be asked, the revocation
is kept for ``SSO_SESSION_MAX`` (the longest a Keycloak session lives) instead of ``MAX_TOKEN_LIFETIME``,
``purge_revocations`` keeps it that long, and every answer says so.

Here Keycloak is a real unreachable URL (a loopback port nothing listens on), not a mock. The path where
Keycloak ends the session runs against the real Keycloak in tests/e2e/test_session_revocation.py.
"""

from __future__ import annotations

import datetime as dt
import io

import pytest
from django.contrib.auth.models import Permission, User
from django.contrib.messages import get_messages
from django.core.management import call_command
from django.urls import reverse
from django.utils import timezone

from tests.remote_helpers import free_port
from tokenversion.conf import get_settings
from tokenversion_server import services
from tokenversion_server.models import RevocationEvent, RevokedSession

pytestmark = pytest.mark.django_db(transaction=True)  # real commits: the store forgets its cache on commit

SUB = "5b7f0b36-8d0e-4a35-9f49-7a5ad1b0c001"  # the subject tests/jwks.py mints tokens for
SID = "sess-7f3a9c"
SSO_MAX = dt.timedelta(seconds=36000)  # TOKENVERSION_SERVER["SSO_SESSION_MAX"] by default: Keycloak's 10 hours


@pytest.fixture
def unreachable_keycloak(settings):
    """Admin credentials for a Keycloak that does not answer: connection refused on a free loopback port."""
    url = f"http://127.0.0.1:{free_port()}"
    settings.TOKENVERSION_KEYCLOAK = {"SERVER_URL": url, "REALM": "test", "USERNAME": "admin", "PASSWORD": "pw"}
    return url


@pytest.fixture
def revoker(db):
    user = User.objects.create_user("support", "support@staff.example", "pw", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="revoke_tokens"),
                              Permission.objects.get(codename="view_revokedsession"))
    return user


def whoami(api, token: str) -> int:
    return api.get("/api/whoami", HTTP_AUTHORIZATION=f"Bearer {token}").status_code


def assert_kept_for_the_sso_session_max() -> RevokedSession:
    row = RevokedSession.objects.get(session_id=SID)
    assert row.expires_at - row.revoked_at == SSO_MAX
    return row


def assert_refused_after_the_usual_purge(api, token: str) -> None:
    """The attack: MAX_TOKEN_LIFETIME (and then some) later, the purge has run, and Keycloak refreshes the
    still-live session into a token for the same sid. It must still be refused."""
    later = timezone.now() + dt.timedelta(seconds=get_settings().max_token_lifetime + 120)
    assert services.purge_expired(now=later)["sessions"] == 0
    assert whoami(api, token) == 401
    # And the row does go once no Keycloak session can be alive.
    assert services.purge_expired(now=timezone.now() + SSO_MAX + dt.timedelta(seconds=1))["sessions"] == 1


def test_rest_revocation_with_keycloak_unreachable_is_kept_for_the_sso_session_max(
        api, jwks_server, revoker, unreachable_keycloak):
    token = jwks_server.mint(sid=SID)
    assert whoami(api, token) == 200
    api.force_login(revoker)  # an admin session; API keys are tested in test_rest.py
    response = api.post("/tokenversion/revocations", {"scope": "session", "session_id": SID, "note": "INC-9"},
                        format="json")
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["keycloak_session"] == "not_ended"
    assert unreachable_keycloak in body["keycloak_detail"] and "SSO_SESSION_MAX (36000 s)" in body["keycloak_detail"]
    row = assert_kept_for_the_sso_session_max()
    assert dt.datetime.fromisoformat(body["kept_until"]) == row.expires_at
    event = RevocationEvent.objects.get()
    assert event.note.startswith("INC-9\nKeycloak session not ended (")  # the audit trail says so too
    assert "SSO_SESSION_MAX" in event.note
    assert whoami(api, token) == 401
    assert_refused_after_the_usual_purge(api, token)


def test_cli_revocation_with_keycloak_unreachable_says_so_and_keeps_longer(api, jwks_server, unreachable_keycloak):
    token = jwks_server.mint(sid=SID)
    out = io.StringIO()
    call_command("revoke", "--session", SID, stdout=out)
    first, second = out.getvalue().strip().splitlines()
    assert first == f"Revoked session {SID}."
    row = assert_kept_for_the_sso_session_max()
    assert second.startswith(f"Keycloak session not ended (Keycloak admin login at {unreachable_keycloak}/ failed")
    assert second.endswith(f"End the session in Keycloak. Kept until {row.expires_at.isoformat()}.")
    assert_refused_after_the_usual_purge(api, token)


def test_admin_form_revocation_with_keycloak_unreachable_warns_and_keeps_longer(
        client, jwks_server, revoker, unreachable_keycloak):
    client.force_login(revoker)
    response = client.post(reverse("admin:tokenversion_server_revokedsession_add"),
                           {"session_id": SID, "subject": SUB, "reason": "compromise", "note": "",
                            "tv_confirm": "Confirm"})  # past the confirmation page
    assert response.status_code == 302
    warnings = [str(m) for m in get_messages(response.wsgi_request) if m.level_tag == "warning"]
    assert len(warnings) == 1 and warnings[0].startswith("Keycloak session not ended (")
    assert "SSO_SESSION_MAX" in warnings[0]
    assert_kept_for_the_sso_session_max()


def test_without_admin_credentials_the_revocation_is_kept_longer_and_says_why(api, jwks_server, settings):
    settings.TOKENVERSION_KEYCLOAK = {}  # no USERNAME/PASSWORD or CLIENT_SECRET
    rev = services.revoke_session_everywhere(SID, actor=services.Actor.cli("ops"))
    assert rev.keycloak_session == "not_ended"
    assert "no Keycloak admin credentials" in rev.keycloak_detail
    assert_kept_for_the_sso_session_max()


def test_sso_session_max_is_a_setting(jwks_server, unreachable_keycloak, tv_settings):
    tv_settings(SSO_SESSION_MAX=7200)
    rev = services.revoke_session_everywhere(SID, actor=services.Actor.cli("ops"))
    row = RevokedSession.objects.get()
    assert row.expires_at - row.revoked_at == dt.timedelta(seconds=7200) and rev.kept_until == row.expires_at
    assert "SSO_SESSION_MAX (7200 s)" in rev.keycloak_detail


def test_never_shorter_than_max_token_lifetime(jwks_server, unreachable_keycloak, tv_settings):
    tv_settings(SSO_SESSION_MAX=60, MAX_TOKEN_LIFETIME=600)
    services.revoke_session_everywhere(SID, actor=services.Actor.cli("ops"))
    row = RevokedSession.objects.get()
    assert row.expires_at - row.revoked_at == dt.timedelta(seconds=600)


def test_a_repeated_manual_revocation_never_shortens_the_keep(jwks_server, unreachable_keycloak):
    services.revoke_session_everywhere(SID, actor=services.Actor.cli("ops"))
    kept = RevokedSession.objects.get().expires_at
    # A later logout of the same sid reported by Keycloak (back-channel, event) keeps MAX_TOKEN_LIFETIME only.
    again = services.revoke_session(SID, actor=services.Actor.keycloak("backchannel-logout j1"))
    assert not again.changed
    assert RevokedSession.objects.get().expires_at == kept
