"""``manage.py revoke`` and ``manage.py purge_revocations`` as an operator runs them."""

from __future__ import annotations

import datetime as dt
import getpass
import io

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from accounts.models import KeycloakUser
from tokenversion.conf import get_settings
from tokenversion_server.conf import get_server_settings
from tokenversion_server.models import (
    RealmRevocation,
    RevocationEvent,
    RevokedSession,
    SeenIdentifier,
    SubjectVersion,
)

pytestmark = pytest.mark.django_db

ALICE = "0f1d2c3b-4a59-4e6f-8a7b-9c0d1e2f3a01"
BOB = "0f1d2c3b-4a59-4e6f-8a7b-9c0d1e2f3a02"


@pytest.fixture
def iss():
    return get_settings().issuer


@pytest.fixture
def alice(iss):
    return KeycloakUser.objects.create(issuer=iss, subject=ALICE, username="alice", email="Alice@Example.com")


def revoke(*args: str) -> str:
    out = io.StringIO()
    call_command("revoke", *args, stdout=out)
    return out.getvalue()


def nothing_written() -> bool:
    return not (SubjectVersion.objects.exists() or RevokedSession.objects.exists()
                or RealmRevocation.objects.exists() or RevocationEvent.objects.exists())


def assert_user_revoked(iss: str, subject: str, old: int, new: int, reason: str = "admin") -> RevocationEvent:
    assert SubjectVersion.objects.get(issuer=iss, subject=subject).token_version == new
    event = RevocationEvent.objects.get()
    assert event.scope == RevocationEvent.Scope.USER
    assert (event.issuer, event.subject) == (iss, subject)
    assert (event.old_version, event.new_version) == (old, new)
    assert event.reason == reason
    assert event.actor_type == RevocationEvent.ActorType.CLI
    assert event.actor == getpass.getuser()
    assert event.admin_user is None
    return event


# --- users ----------------------------------------------------------------------------------------------


def test_revoke_by_username(alice, iss):
    out = revoke("alice")
    assert out.strip() == f"Revoked every token of alice ({ALICE}): version 0 -> 1."
    assert_user_revoked(iss, ALICE, 0, 1)


def test_revoke_by_email_is_case_insensitive(alice, iss):
    revoke("alice@example.com", "--reason", "compromise", "--note", "ticket 42")
    event = assert_user_revoked(iss, ALICE, 0, 1, reason="compromise")
    assert event.note == "ticket 42"


def test_revoke_by_subject_of_known_user(alice, iss):
    SubjectVersion.objects.create(issuer=iss, subject=ALICE, token_version=3)
    out = revoke(ALICE, "--reason", "password_change")
    assert "version 3 -> 4" in out
    assert_user_revoked(iss, ALICE, 3, 4, reason="password_change")


def test_revoke_subject_only_known_from_version_table(iss):
    """A subject the claims endpoint has seen but with no user row (provisioning off, or before it ran)."""
    SubjectVersion.objects.create(issuer=iss, subject=BOB, token_version=9)
    out = revoke(BOB)
    assert f"({BOB}): version 9 -> 10." in out
    assert_user_revoked(iss, BOB, 9, 10)


def test_revoke_unknown_user_writes_nothing(alice):
    with pytest.raises(CommandError) as excinfo:
        revoke("mallory")
    message = str(excinfo.value)
    assert message == ("unknown user 'mallory': no Keycloak user, or more than one, has that subject, "
                       "username or email")
    assert nothing_written()


def test_revoke_user_of_another_issuer_is_unknown(iss):
    KeycloakUser.objects.create(issuer="https://other.example.com/realms/x", subject=BOB, username="bob")
    with pytest.raises(CommandError, match="unknown user 'bob'"):
        revoke("bob")
    assert nothing_written()


def test_ambiguous_email_is_refused(iss):
    KeycloakUser.objects.create(issuer=iss, subject=ALICE, username="alice", email="shared@example.com")
    KeycloakUser.objects.create(issuer=iss, subject=BOB, username="bob", email="shared@example.com")
    with pytest.raises(CommandError) as excinfo:
        revoke("shared@example.com")
    assert str(excinfo.value).startswith(
        "unknown user 'shared@example.com': no Keycloak user, or more than one")
    assert nothing_written()
    # Each of them can still be revoked by an unambiguous name.
    revoke("bob")
    assert SubjectVersion.objects.get(subject=BOB).token_version == 1
    assert not SubjectVersion.objects.filter(subject=ALICE).exists()


def test_ambiguous_username_is_refused(iss):
    KeycloakUser.objects.create(issuer=iss, subject=ALICE, username="sam", email="sam.a@example.com")
    KeycloakUser.objects.create(issuer=iss, subject=BOB, username="sam", email="sam.b@example.com")
    with pytest.raises(CommandError, match="'sam'"):
        revoke("sam")
    assert nothing_written()


# --- argument errors ------------------------------------------------------------------------------------


@pytest.mark.parametrize("args", [
    (),
    ("alice", "--session", "sid-1"),
    ("alice", "--all", "--yes"),
    ("--session", "sid-1", "--all", "--yes"),
    ("alice", "--session", "sid-1", "--all", "--yes"),
])
def test_exactly_one_target_is_required(alice, args):
    with pytest.raises(CommandError, match="exactly one of"):
        revoke(*args)
    assert nothing_written()


def test_invalid_reason_is_an_error(alice):
    with pytest.raises(CommandError, match="invalid choice: 'stolen'"):
        revoke("alice", "--reason", "stolen")
    assert nothing_written()


def test_invalid_session_id_is_an_error():
    with pytest.raises(CommandError, match="session id must be"):
        revoke("--session", "not a sid")
    assert nothing_written()


# --- sessions and the realm -----------------------------------------------------------------------------


def test_revoke_session(iss):
    """The unit tests have no Keycloak admin credentials, so the Keycloak session cannot be ended: the
    revocation is kept for SSO_SESSION_MAX and the second line says so (tests/test_session_revocation.py;
    the ended path against the real Keycloak: tests/e2e/test_session_revocation.py)."""
    before = timezone.now()
    out = revoke("--session", "sid-0001")
    first, second = out.strip().splitlines()
    assert first == "Revoked session sid-0001."
    assert second.startswith("Keycloak session not ended (no Keycloak admin credentials")
    row = RevokedSession.objects.get()
    assert (row.issuer, row.session_id) == (iss, "sid-0001")
    assert before <= row.revoked_at <= timezone.now()
    assert row.expires_at - row.revoked_at == dt.timedelta(seconds=get_server_settings().sso_session_max)
    event = RevocationEvent.objects.get()
    assert (event.scope, event.session_id, event.reason) == ("session", "sid-0001", "logout")
    assert (event.actor_type, event.actor) == ("cli", getpass.getuser())
    assert not SubjectVersion.objects.exists()


def test_revoke_realm_with_yes(iss):
    before = timezone.now()
    out = revoke("--all", "--yes", "--note", "key rotation")
    realm = RealmRevocation.objects.get()
    assert realm.issuer == iss
    assert before <= realm.not_before <= timezone.now()
    assert out.strip() == f"Revoked every token of {iss} issued until {realm.not_before.isoformat()}."
    event = RevocationEvent.objects.get()
    assert (event.scope, event.reason, event.note) == ("realm", "admin", "key rotation")
    assert (event.actor_type, event.actor) == ("cli", getpass.getuser())


def test_revoke_realm_asks_and_proceeds_on_yes(monkeypatch, capsys, iss):
    monkeypatch.setattr("sys.stdin", io.StringIO("y\n"))
    revoke("--all")
    assert "Revoke every token of the realm?" in capsys.readouterr().out
    assert RealmRevocation.objects.filter(issuer=iss).count() == 1
    assert RevocationEvent.objects.get().scope == "realm"


@pytest.mark.parametrize("answer", ["n\n", "\n", "", "maybe\n"], ids=["no", "empty-line", "eof", "other"])
def test_revoke_realm_aborts_without_a_yes(monkeypatch, answer):
    monkeypatch.setattr("sys.stdin", io.StringIO(answer))
    with pytest.raises(CommandError, match="aborted: nothing was revoked"):
        revoke("--all")
    assert nothing_written()


# --- purge ----------------------------------------------------------------------------------------------


def test_purge_deletes_only_expired_rows(iss):
    now = timezone.now()
    past, future = now - dt.timedelta(seconds=5), now + dt.timedelta(hours=1)
    RevokedSession.objects.create(issuer=iss, session_id="old-1", revoked_at=past, expires_at=past)
    RevokedSession.objects.create(issuer=iss, session_id="old-2", revoked_at=past, expires_at=past)
    RevokedSession.objects.create(issuer=iss, session_id="live", revoked_at=now, expires_at=future)
    SeenIdentifier.objects.create(kind=SeenIdentifier.KIND_EVENT, issuer=iss, value="ev-old", expires_at=past)
    SeenIdentifier.objects.create(kind=SeenIdentifier.KIND_LOGOUT_TOKEN, issuer=iss, value="jti-live",
                                  expires_at=future)
    SubjectVersion.objects.create(issuer=iss, subject=ALICE, token_version=2)
    RealmRevocation.objects.create(issuer=iss, not_before=past)
    RevocationEvent.objects.create(created_at=past - dt.timedelta(days=400), scope="user", issuer=iss,
                                   subject=ALICE, actor_type="cli", reason="admin")

    out = io.StringIO()
    call_command("purge_revocations", stdout=out)
    assert out.getvalue().strip() == "Purged 2 session revocation(s) and 1 seen identifier(s)."

    assert list(RevokedSession.objects.values_list("session_id", flat=True)) == ["live"]
    assert list(SeenIdentifier.objects.values_list("value", flat=True)) == ["jti-live"]
    # Versions, the realm epoch and the audit trail are never purged.
    assert SubjectVersion.objects.get().token_version == 2
    assert RealmRevocation.objects.count() == 1
    assert RevocationEvent.objects.count() == 1

    out = io.StringIO()
    call_command("purge_revocations", stdout=out)
    assert out.getvalue().strip() == "Purged 0 session revocation(s) and 0 seen identifier(s)."
