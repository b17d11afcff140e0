"""The Django admin as support staff use it: users and their versions, bulk revocation actions, session and
realm-wide revocation, and the audit trail that nobody can edit."""

from __future__ import annotations

import datetime as dt

import pytest
from django.contrib.auth.models import Permission, User
from django.contrib.messages import get_messages
from django.db.models import ProtectedError
from django.urls import reverse
from django.utils import timezone

from accounts.models import KeycloakUser
from tokenversion.conf import get_settings
from tokenversion_server.conf import get_server_settings
from tokenversion_server.models import RealmRevocation, RevocationEvent, RevokedSession, SubjectVersion
from tokenversion_server.signals import revocation_committed

pytestmark = pytest.mark.django_db

USERS_URL = "admin:accounts_keycloakuser_changelist"
ALICE = "5b7f0b36-8d0e-4a35-9f49-7a5ad1b0c0a1"
BOB = "5b7f0b36-8d0e-4a35-9f49-7a5ad1b0c0b2"
CAROL = "5b7f0b36-8d0e-4a35-9f49-7a5ad1b0c0c3"


def grant(user: User, *perms: str) -> None:
    for perm in perms:
        app_label, codename = perm.split(".")
        perm_row = Permission.objects.get(content_type__app_label=app_label, codename=codename)
        user.user_permissions.add(perm_row)


def staff_client(client, username: str, *perms: str):
    user = User.objects.create_user(username, f"{username}@staff.example", "pw-not-checked", is_staff=True)
    grant(user, *perms)
    client.force_login(user)
    return client, user


@pytest.fixture
def issuer_url():
    return get_settings().issuer


@pytest.fixture
def people(issuer_url):
    alice = KeycloakUser.objects.create(issuer=issuer_url, subject=ALICE, username="alice",
                                        email="alice@example.com")
    bob = KeycloakUser.objects.create(issuer=issuer_url, subject=BOB, username="bob", email="bob@example.com")
    carol = KeycloakUser.objects.create(issuer=issuer_url, subject=CAROL, username="carol",
                                        email="carol@example.com")
    SubjectVersion.objects.create(issuer=issuer_url, subject=ALICE, token_version=7)
    return alice, bob, carol


@pytest.fixture
def support(client):
    """Support staff with exactly the permissions the revocation work needs."""
    return staff_client(client, "support", "accounts.view_keycloakuser", "tokenversion_server.revoke_tokens",
                        "tokenversion_server.view_revocationevent", "tokenversion_server.view_revokedsession")


def messages_of(response) -> list[tuple[str, str]]:
    return [(m.level_tag, str(m)) for m in get_messages(response.wsgi_request)]


def revoke_action(client, action: str, pks: list, note: str = ""):
    """Run a user action as support staff do: the action shows the confirmation page, Confirm revokes."""
    page = client.post(reverse(USERS_URL), {"action": action, "_selected_action": pks, "index": 0})
    assert page.status_code == 200, page.status_code
    assert page.templates[0].name == "admin/tokenversion_server/confirm_revocation.html"
    return client.post(reverse(USERS_URL), {"action": action, "_selected_action": pks, "note": note,
                                            "tv_confirm": "Confirm"})


def version_of(issuer: str, subject: str) -> int | None:
    return SubjectVersion.objects.filter(issuer=issuer, subject=subject).values_list(
        "token_version", flat=True).first()


# --- KeycloakUser changelist -----------------------------------------------------------------------------


def test_changelist_lists_users_with_their_token_version(support, people):
    client, _ = support
    response = client.get(reverse(USERS_URL))
    assert response.status_code == 200
    rows = {u.username: u for u in response.context["cl"].result_list}
    assert sorted(rows) == ["alice", "bob", "carol"]
    html = response.content.decode()
    # alice has a stored version of 7; bob and carol have none yet, so they are at the initial version 0.
    assert '<td class="field-token_version">7</td>' in html
    assert html.count('<td class="field-token_version">0</td>') == 2
    assert ALICE in html and "bob@example.com" in html


def test_changelist_shows_initial_version_for_users_without_a_row(support, people, tv_settings, issuer_url):
    tv_settings(INITIAL_VERSION=5)
    client, _ = support
    html = client.get(reverse(USERS_URL), {"q": "bob"}).content.decode()
    assert '<td class="field-token_version">5</td>' in html  # what bob's tokens carry, not 0
    revoke_action(client, "revoke_for_logout", [people[1].pk])
    assert version_of(issuer_url, BOB) == 6
    assert RevocationEvent.objects.values_list("old_version", "new_version").get() == (5, 6)


@pytest.mark.parametrize(("query", "expected"), [
    ("alice", ["alice"]),
    ("bob@example.com", ["bob"]),
    (CAROL, ["carol"]),
    ("example.com", ["alice", "bob", "carol"]),
    ("nobody-matches-this", []),
])
def test_changelist_search_by_username_email_subject(support, people, query, expected):
    client, _ = support
    response = client.get(reverse(USERS_URL), {"q": query})
    assert response.status_code == 200
    assert sorted(u.username for u in response.context["cl"].result_list) == expected


# --- bulk revocation actions ----------------------------------------------------------------------------


@pytest.mark.parametrize(("action", "reason"), [
    ("revoke_for_logout", RevocationEvent.Reason.LOGOUT),
    ("revoke_for_compromise", RevocationEvent.Reason.COMPROMISE),
])
def test_revoke_action_bumps_each_selected_user_once_and_audits(support, people, issuer_url, action, reason):
    client, staff = support
    alice, bob, _carol = people
    response = revoke_action(client, action, [alice.pk, bob.pk])
    assert response.status_code == 302
    messages = messages_of(response)
    assert ("success", f"Revoked every token of 2 users ({reason}); Keycloak sessions ended: 0.") in messages
    # The test settings give no Keycloak admin credentials: the admin is told the sessions were not ended.
    warning = dict(messages)["warning"]
    assert warning.startswith("Keycloak sessions not ended (no Keycloak admin credentials")

    assert version_of(issuer_url, ALICE) == 8
    assert version_of(issuer_url, BOB) == 1
    assert version_of(issuer_url, CAROL) is None  # not selected: untouched

    events = {e.subject: e for e in RevocationEvent.objects.all()}
    assert set(events) == {ALICE, BOB}
    for subject, old, new in ((ALICE, 7, 8), (BOB, 0, 1)):
        event = events[subject]
        assert event.scope == RevocationEvent.Scope.USER
        assert event.issuer == issuer_url
        assert event.actor_type == RevocationEvent.ActorType.ADMIN
        assert event.actor == "support"
        assert event.admin_user == staff
        assert event.reason == reason
        assert (event.old_version, event.new_version) == (old, new)
        # Issue 11: the note says the Keycloak sessions were not ended, and why.
        assert event.note == (f"Django admin: {reason}; Keycloak sessions not ended: no Keycloak admin "
                              "credentials: set TOKENVERSION_KEYCLOAK USERNAME/PASSWORD or CLIENT_SECRET")

    # The changelist now shows the new versions.
    html = client.get(reverse(USERS_URL)).content.decode()
    assert '<td class="field-token_version">8</td>' in html
    assert '<td class="field-token_version">1</td>' in html


def test_revoke_action_announces_each_revocation_after_commit(support, people, issuer_url,
                                                             django_capture_on_commit_callbacks):
    """Other processes learn of the bumps through ``revocation_committed``, sent only once committed."""
    client, _ = support
    alice, bob, _carol = people
    received = []

    def receiver(sender, record, **kwargs):
        received.append(record)

    revocation_committed.connect(receiver)
    try:
        with django_capture_on_commit_callbacks(execute=False) as callbacks:
            revoke_action(client, "revoke_for_compromise", [alice.pk, bob.pk])
            assert received == []  # not before commit
        for callback in callbacks:
            callback()
    finally:
        revocation_committed.disconnect(receiver)
    assert sorted((r.subject, r.old_version, r.new_version, r.reason) for r in received) == [
        (ALICE, 7, 8, "compromise"), (BOB, 0, 1, "compromise")]
    assert {r.audit_id for r in received} == set(RevocationEvent.objects.values_list("pk", flat=True))


def test_revoke_action_twice_bumps_twice(support, people, issuer_url):
    client, _ = support
    alice = people[0]
    for _ in range(2):
        revoke_action(client, "revoke_for_logout", [alice.pk])
    assert version_of(issuer_url, ALICE) == 9
    assert list(RevocationEvent.objects.order_by("id").values_list("old_version", "new_version")) == [
        (7, 8), (8, 9)]


def test_revoke_action_without_permission_changes_nothing(client, people, issuer_url):
    client, _ = staff_client(client, "viewer", "accounts.view_keycloakuser")
    alice, bob, _ = people
    response = client.post(reverse(USERS_URL), {
        "action": "revoke_for_compromise", "_selected_action": [alice.pk, bob.pk], "index": 0,
    }, follow=True)
    assert response.status_code == 200
    assert ("error", "You lack the permission to revoke tokens.") in messages_of(response)
    assert version_of(issuer_url, ALICE) == 7
    assert version_of(issuer_url, BOB) is None
    assert RevocationEvent.objects.count() == 0


def test_revoke_action_skips_users_of_another_issuer(support, people, issuer_url):
    """A user row left from a previous ISSUER cannot be revoked here; the others still are, no 500."""
    client, _ = support
    alice = people[0]
    stale = KeycloakUser.objects.create(issuer="https://old-sso.example.com/realms/main", subject="old-1",
                                        username="olduser")
    response = revoke_action(client, "revoke_for_logout", [alice.pk, stale.pk])
    assert response.status_code == 302
    levels = dict(messages_of(response))
    assert "olduser" in levels["error"]
    assert levels["success"] == "Revoked every token of 1 user (logout); Keycloak sessions ended: 0."
    assert version_of(issuer_url, ALICE) == 8
    assert not SubjectVersion.objects.filter(subject="old-1").exists()
    assert list(RevocationEvent.objects.values_list("subject", flat=True)) == [ALICE]


# --- RevokedSession "add" form --------------------------------------------------------------------------


def test_revoke_session_through_add_form(support, issuer_url):
    client, staff = support
    add_url = reverse("admin:tokenversion_server_revokedsession_add")
    assert client.get(add_url).status_code == 200
    before = timezone.now()
    fields = {"session_id": "sid-0001", "subject": ALICE, "reason": "compromise", "note": "phone stolen"}
    page = client.post(add_url, fields)
    assert page.status_code == 200  # the confirmation page; nothing revoked yet
    assert page.templates[0].name == "admin/tokenversion_server/confirm_revocation.html"
    assert RevokedSession.objects.count() == 0 and RevocationEvent.objects.count() == 0
    response = client.post(add_url, {**fields, "tv_confirm": "Confirm"})
    assert response.status_code == 302

    row = RevokedSession.objects.get()
    assert (row.issuer, row.session_id, row.subject) == (issuer_url, "sid-0001", ALICE)
    assert before <= row.revoked_at <= timezone.now()
    # No Keycloak admin credentials in the unit tests: kept for SSO_SESSION_MAX (test_session_revocation.py).
    assert row.expires_at - row.revoked_at == dt.timedelta(seconds=get_server_settings().sso_session_max)

    event = RevocationEvent.objects.get()
    assert event.scope == RevocationEvent.Scope.SESSION
    assert (event.session_id, event.subject, event.issuer) == ("sid-0001", ALICE, issuer_url)
    assert event.actor_type == RevocationEvent.ActorType.ADMIN
    assert event.admin_user == staff
    assert event.reason == RevocationEvent.Reason.COMPROMISE
    assert event.note.partition("\n")[0] == "phone stolen"  # then what became of the Keycloak session
    assert (event.old_version, event.new_version) == (None, None)


def test_revoke_same_session_twice_is_one_revocation(support):
    client, _ = support
    add_url = reverse("admin:tokenversion_server_revokedsession_add")
    for _ in range(2):
        response = client.post(add_url, {"session_id": "sid-0002", "subject": "", "reason": "logout",
                                         "tv_confirm": "Confirm"})
        assert response.status_code == 302
    assert RevokedSession.objects.count() == 1
    events = list(RevocationEvent.objects.all())
    assert len(events) == 1  # the second changed nothing, so it wrote no audit row
    assert events[0].note.partition("\n")[0] == "Django admin"


@pytest.mark.parametrize("fields", [
    {"session_id": "not a session id", "subject": ""},
    {"session_id": "", "subject": ""},
    {"session_id": "sid-0003", "subject": "not a subject!"},
])
def test_revoke_session_form_refuses_bad_identifiers(support, fields):
    client, _ = support
    response = client.post(reverse("admin:tokenversion_server_revokedsession_add"),
                           {**fields, "reason": "logout"})
    assert response.status_code == 200  # the form again, with its errors
    assert response.context["adminform"].form.errors
    assert RevokedSession.objects.count() == 0
    assert RevocationEvent.objects.count() == 0


def test_revoke_session_needs_permission(client):
    client, _ = staff_client(client, "viewer", "tokenversion_server.view_revokedsession")
    add_url = reverse("admin:tokenversion_server_revokedsession_add")
    assert client.get(add_url).status_code == 403
    assert client.post(add_url, {"session_id": "sid-0004", "reason": "logout"}).status_code == 403
    assert RevokedSession.objects.count() == 0
    assert RevocationEvent.objects.count() == 0


# --- realm-wide revocation ------------------------------------------------------------------------------

REALM_URL = "admin:tokenversion_server_realmrevocation_revoke_all"


def test_realm_page_asks_for_confirmation(support, issuer_url):
    client, _ = support
    response = client.get(reverse(REALM_URL))
    assert response.status_code == 200
    html = response.content.decode()
    assert "Revoke every token of the realm" in html
    assert issuer_url in html
    assert 'name="confirm"' in html
    assert RealmRevocation.objects.count() == 0
    assert RevocationEvent.objects.count() == 0


def test_realm_changelist_links_to_the_confirmation_page(support):
    client, _ = support
    response = client.get(reverse("admin:tokenversion_server_realmrevocation_changelist"))
    assert response.status_code == 200
    assert reverse(REALM_URL) in response.content.decode()


@pytest.mark.parametrize("data", [{}, {"note": "oops"}, {"confirm": ""}])
def test_realm_post_without_confirmation_does_nothing(support, data):
    client, _ = support
    response = client.post(reverse(REALM_URL), data)
    assert response.status_code == 200
    assert RealmRevocation.objects.count() == 0
    assert RevocationEvent.objects.count() == 0


def test_realm_confirmed_post_sets_epoch_and_audits(support, issuer_url):
    client, staff = support
    before = timezone.now()
    response = client.post(reverse(REALM_URL), {"confirm": "on", "note": "signing key leaked"})
    after = timezone.now()
    assert response.status_code == 302
    assert response["Location"] == reverse("admin:tokenversion_server_realmrevocation_changelist")
    assert ("success", "Every token of the realm issued until now is revoked.") in messages_of(response)

    realm = RealmRevocation.objects.get()
    assert realm.issuer == issuer_url
    assert before <= realm.not_before <= after

    event = RevocationEvent.objects.get()
    assert event.scope == RevocationEvent.Scope.REALM
    assert event.issuer == issuer_url
    assert event.actor_type == RevocationEvent.ActorType.ADMIN
    assert event.admin_user == staff
    assert event.reason == RevocationEvent.Reason.ADMIN
    assert event.note == "signing key leaked"
    assert event.created_at == realm.not_before

    # A second confirmation moves the epoch forward; still one row per issuer.
    client.post(reverse(REALM_URL), {"confirm": "on"})
    assert RealmRevocation.objects.get().not_before > realm.not_before
    assert RevocationEvent.objects.count() == 2


def test_realm_page_needs_permission(client):
    client, _ = staff_client(client, "viewer", "tokenversion_server.view_realmrevocation")
    assert client.get(reverse(REALM_URL)).status_code == 403
    assert client.post(reverse(REALM_URL), {"confirm": "on"}).status_code == 403
    assert RealmRevocation.objects.count() == 0
    assert RevocationEvent.objects.count() == 0


def test_realm_page_needs_staff_login(client):
    response = client.get(reverse(REALM_URL))
    assert response.status_code == 302
    assert reverse("admin:login") in response["Location"]
    client.post(reverse(REALM_URL), {"confirm": "on"})
    assert RealmRevocation.objects.count() == 0


# --- the audit trail is read-only -----------------------------------------------------------------------


@pytest.fixture
def superuser_client(client):
    user = User.objects.create_superuser("root-admin", "root@staff.example", "pw-not-checked")
    client.force_login(user)
    return client, user


@pytest.fixture
def event(issuer_url):
    return RevocationEvent.objects.create(
        created_at=timezone.now(), scope="user", issuer=issuer_url, subject=ALICE, actor_type="cli",
        actor="ops", reason="logout", old_version=0, new_version=1, note="original",
    )


def test_audit_trail_has_no_add_change_or_delete_even_for_superusers(superuser_client, event):
    client, _ = superuser_client
    changelist = client.get(reverse("admin:tokenversion_server_revocationevent_changelist"))
    assert changelist.status_code == 200
    assert [e.pk for e in changelist.context["cl"].result_list] == [event.pk]
    html = changelist.content.decode()
    assert 'value="delete_selected"' not in html
    assert reverse("admin:tokenversion_server_revocationevent_add") not in html

    assert client.get(reverse("admin:tokenversion_server_revocationevent_add")).status_code == 403
    assert client.post(reverse("admin:tokenversion_server_revocationevent_add"), {
        "created_at_0": "2024-01-01", "created_at_1": "00:00:00", "scope": "realm", "issuer": "x",
        "actor_type": "cli", "reason": "admin",
    }).status_code == 403

    change_url = reverse("admin:tokenversion_server_revocationevent_change", args=[event.pk])
    view = client.get(change_url)
    assert view.status_code == 200  # viewable, read-only
    assert 'name="_save"' not in view.content.decode()
    assert client.post(change_url, {"note": "tampered", "reason": "admin"}).status_code == 403

    delete_url = reverse("admin:tokenversion_server_revocationevent_delete", args=[event.pk])
    assert client.get(delete_url).status_code == 403
    assert client.post(delete_url, {"post": "yes"}).status_code == 403
    bulk = client.post(reverse("admin:tokenversion_server_revocationevent_changelist"),
                       {"action": "delete_selected", "_selected_action": [event.pk], "index": 0,
                        "post": "yes"})
    assert bulk.status_code in (200, 302)

    event.refresh_from_db()
    assert (event.note, event.reason) == ("original", "logout")
    assert RevocationEvent.objects.count() == 1


def test_audit_queryset_update_and_delete_raise(event):
    with pytest.raises(TypeError, match="append-only"):
        RevocationEvent.objects.update(note="tampered")
    with pytest.raises(TypeError, match="append-only"):
        RevocationEvent.objects.filter(pk=event.pk).update(note="tampered")
    with pytest.raises(TypeError, match="append-only"):
        RevocationEvent.objects.all().delete()
    with pytest.raises(TypeError, match="append-only"):
        RevocationEvent.objects.filter(pk=event.pk).delete()
    event.refresh_from_db()
    assert event.note == "original"
    assert RevocationEvent.objects.count() == 1


def test_audit_instance_save_and_delete_raise(event):
    loaded = RevocationEvent.objects.get(pk=event.pk)
    loaded.note = "tampered"
    with pytest.raises(TypeError, match="append-only"):
        loaded.save()
    with pytest.raises(TypeError, match="append-only"):
        loaded.delete()
    with pytest.raises(TypeError, match="append-only"):
        event.save()  # the instance create() returned is no longer "adding" either
    assert RevocationEvent.objects.get(pk=event.pk).note == "original"
    # A new row can still be appended.
    RevocationEvent(created_at=timezone.now(), scope="realm", issuer=event.issuer, actor_type="system",
                    reason="admin").save()
    assert RevocationEvent.objects.count() == 2


def test_deleting_a_staff_user_keeps_their_audit_rows(support, people, issuer_url):
    client, staff = support
    revoke_action(client, "revoke_for_logout", [people[0].pk])
    # Issue 9 item 4: the user cannot be deleted (PROTECT; deactivate instead), so link and name both stay.
    with pytest.raises(ProtectedError):
        staff.delete()
    event = RevocationEvent.objects.get()
    assert event.admin_user == staff
    assert event.actor == "support"  # the name stays in the trail
    assert (event.old_version, event.new_version) == (7, 8)


# --- issue 11: confirmation pages, usernames beside subjects, no "add user", branding ---------------------


def test_user_action_shows_a_confirmation_page_naming_the_users_and_changes_nothing(support, people, issuer_url):
    client, _ = support
    alice, bob, _carol = people
    page = client.post(reverse(USERS_URL), {"action": "revoke_for_compromise",
                                            "_selected_action": [alice.pk, bob.pk], "index": 0})
    assert page.status_code == 200
    html = page.content.decode()
    assert "Revoke every token of 2 users: account compromised" in html
    for shown in ("alice", "alice@example.com", ALICE, "bob", "bob@example.com", BOB,
                  reverse("admin:accounts_keycloakuser_change", args=[alice.pk])):
        assert shown in html
    assert "carol" not in html
    assert ("Keycloak sessions will not be ended: no Keycloak admin credentials: set TOKENVERSION_KEYCLOAK "
            "USERNAME/PASSWORD or CLIENT_SECRET") in html
    assert "The users must log in again." in html
    # Not ended, so the page does not pretend refresh tokens die; it says what to do.
    assert "Their Keycloak sessions are NOT ended, so refresh tokens of these users still work" in html
    assert "Change the password or credentials in Keycloak" in html
    assert 'name="note"' in html and 'name="tv_confirm"' in html
    assert f'href="{reverse(USERS_URL)}" class="button cancel-link">Cancel</a>' in html
    # Nothing happens until Confirm.
    assert version_of(issuer_url, ALICE) == 7
    assert version_of(issuer_url, BOB) is None
    assert RevocationEvent.objects.count() == 0


def test_logout_confirmation_says_what_happens_next(support, people, tv_settings):
    tv_settings(CACHE_TTL=2.5)
    client, _ = support
    page = client.post(reverse(USERS_URL), {"action": "revoke_for_logout", "_selected_action": [people[2].pk],
                                            "index": 0})
    html = page.content.decode()
    assert "Revoke every token of 1 user: logout" in html
    assert "Confirm: revoke 1 user" in html
    assert "refused by every service within 2.5 seconds" in html
    assert "The user must log in again." in html


def test_the_note_goes_into_the_audit_note(support, people):
    client, _ = support
    response = revoke_action(client, "revoke_for_compromise", [people[1].pk], note="  phished, ticket 4711 ")
    assert response.status_code == 302
    assert RevocationEvent.objects.get().note == (
        "Django admin: compromise; Keycloak sessions not ended: no Keycloak admin credentials: set "
        "TOKENVERSION_KEYCLOAK USERNAME/PASSWORD or CLIENT_SECRET; phished, ticket 4711")


def test_unreachable_keycloak_is_said_on_the_page_and_in_the_audit_note(support, people, settings, issuer_url):
    """Admin credentials set, but nothing listens at Keycloak's address (a closed loopback port)."""
    from tests.remote_helpers import free_port

    settings.TOKENVERSION_KEYCLOAK = {"SERVER_URL": f"http://127.0.0.1:{free_port()}", "REALM": "test",
                                      "USERNAME": "admin", "PASSWORD": "admin", "TIMEOUT": 2}
    client, _ = support
    bob = people[1]
    page = client.post(reverse(USERS_URL), {"action": "revoke_for_logout", "_selected_action": [bob.pk],
                                            "index": 0}).content.decode()
    assert "Keycloak sessions will not be ended: Keycloak admin login at http://127.0.0.1:" in page
    response = revoke_action(client, "revoke_for_logout", [bob.pk])
    assert version_of(issuer_url, BOB) == 1  # access tokens are revoked all the same
    note = RevocationEvent.objects.get().note
    assert note.startswith("Django admin: logout; Keycloak sessions not ended: Keycloak admin login at "
                           "http://127.0.0.1:")
    assert dict(messages_of(response))["warning"].startswith("Keycloak sessions not ended (Keycloak admin login")


def test_confirmation_with_a_too_long_note_shows_the_page_again(support, people, issuer_url):
    client, _ = support
    response = client.post(reverse(USERS_URL), {"action": "revoke_for_logout", "_selected_action": [people[1].pk],
                                                "note": "x" * 1001, "tv_confirm": "Confirm"})
    assert response.status_code == 200
    assert "at most 1000 characters" in response.content.decode()
    assert RevocationEvent.objects.count() == 0


def test_no_add_user_where_users_come_from_keycloak(superuser_client, people):
    client, _ = superuser_client
    add_url = reverse("admin:accounts_keycloakuser_add")
    assert client.get(add_url).status_code == 403
    assert add_url not in client.get(reverse(USERS_URL)).content.decode()
    assert add_url not in client.get(reverse("admin:index")).content.decode()


def test_branded_headers(support):
    client, _ = support
    html = client.get(reverse("admin:index")).content.decode()
    assert "<title>Token revocation | tokenversion admin</title>" in html
    assert '<div id="site-name"><a href="/admin/">tokenversion</a></div>' in html
    assert "Django administration" not in html and "Django site admin" not in html


def test_audit_trail_shows_usernames_linked_beside_subjects(superuser_client, people, event, issuer_url):
    client, _ = superuser_client
    alice = people[0]
    alice_url = reverse("admin:accounts_keycloakuser_change", args=[alice.pk])
    RevocationEvent.objects.create(created_at=timezone.now(), scope="user", issuer=issuer_url,
                                   subject="unknown-subject-1", actor_type="cli", reason="logout")
    html = client.get(reverse("admin:tokenversion_server_revocationevent_changelist")).content.decode()
    assert f'<a href="{alice_url}" class="tv-user" title="alice">alice</a>' in html
    assert f'title="{ALICE}">{ALICE}</span>' in html  # the whole subject, cut short by CSS only
    assert 'title="unknown-subject-1">unknown-subject-1</span>' in html  # no user known: the subject alone
    detail = client.get(reverse("admin:tokenversion_server_revocationevent_change", args=[event.pk]))
    assert f'<a href="{alice_url}" class="tv-user" title="alice">alice</a>' in detail.content.decode()


def test_audit_trail_found_by_username(support, people, event):
    client, _ = support
    url = reverse("admin:tokenversion_server_revocationevent_changelist")
    assert [e.pk for e in client.get(url, {"q": "alice"}).context["cl"].result_list] == [event.pk]
    assert [e.pk for e in client.get(url, {"q": "alice@example"}).context["cl"].result_list] == [event.pk]
    assert list(client.get(url, {"q": "bob"}).context["cl"].result_list) == []


def test_token_versions_and_revoked_sessions_show_usernames(superuser_client, people, issuer_url):
    client, _ = superuser_client
    alice = people[0]
    alice_url = reverse("admin:accounts_keycloakuser_change", args=[alice.pk])
    RevokedSession.objects.create(issuer=issuer_url, session_id="sid-9", subject=ALICE, revoked_at=timezone.now(),
                                  expires_at=timezone.now() + dt.timedelta(hours=1))
    for name in ("subjectversion", "revokedsession"):
        html = client.get(reverse(f"admin:tokenversion_server_{name}_changelist")).content.decode()
        assert f'<a href="{alice_url}" class="tv-user" title="alice">alice</a>' in html, name


def test_session_revocation_confirmation_names_the_user(support, people, issuer_url):
    client, _ = support
    add_url = reverse("admin:tokenversion_server_revokedsession_add")
    page = client.post(add_url, {"session_id": "sid-0005", "subject": ALICE, "reason": "logout",
                                 "note": "lost laptop"})
    html = page.content.decode()
    assert "Revoke one session" in html
    assert "alice" in html and "alice@example.com" in html and ALICE in html and "sid-0005" in html
    assert "Keycloak sessions will not be ended" in html
    assert "lost laptop</textarea>" in html  # the note carried over, still editable
    assert f'href="{reverse("admin:tokenversion_server_revokedsession_changelist")}" class="button cancel-link"' in html
    assert RevokedSession.objects.count() == 0 and RevocationEvent.objects.count() == 0


def test_realm_page_is_the_same_confirmation_page(support):
    client, _ = support
    response = client.get(reverse(REALM_URL))
    assert response.templates[0].name == "admin/tokenversion_server/confirm_revocation.html"
    html = response.content.decode()
    assert "Keycloak sessions will not be ended: a realm-wide revocation" in html
    assert 'name="tv_confirm"' in html and "cancel-link" in html
