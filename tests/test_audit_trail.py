"""Issue 9 item 4: nothing rewrites the audit trail. Deleting a staff user no longer nulls their rows, the base
manager is append-only too, and on PostgreSQL a trigger refuses UPDATE and DELETE whoever sends them."""

from __future__ import annotations

import io

import pytest
from django.contrib.auth.models import Permission, User
from django.core.management import call_command
from django.db import IntegrityError, connection, transaction
from django.urls import reverse
from django.utils import timezone

from tokenversion_server import services
from tokenversion_server.models import ApiKey, RevocationEvent, RevokedSession

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff(db) -> User:
    person = User.objects.create_user("support", "support@staff.example", "pw-not-checked", is_staff=True)
    person.user_permissions.add(Permission.objects.get(codename="revoke_tokens"))
    return person


@pytest.fixture
def event(staff) -> RevocationEvent:
    rev = services.revoke_user("sub-alice", reason="compromise", actor=services.Actor.admin(staff), note="original")
    return RevocationEvent.objects.get(pk=rev.audit_id)


def test_the_base_manager_is_append_only(event):
    """Django uses the base manager for related objects and internal updates; it was a plain manager."""
    base = RevocationEvent._base_manager
    assert RevocationEvent._meta.base_manager_name == "objects"
    with pytest.raises(TypeError, match="append-only"):
        base.filter(pk=event.pk).update(note="tampered")
    with pytest.raises(TypeError, match="append-only"):
        base.all().delete()
    with pytest.raises(TypeError, match="append-only"):
        base.all()._raw_delete(base.db)  # the deletion collector's fast path
    event.refresh_from_db()
    assert (event.note, RevocationEvent.objects.count()) == ("original", 1)


def test_deleting_a_staff_user_who_revoked_is_refused_with_a_clear_admin_page(client, staff, event):
    boss = User.objects.create_superuser("boss", "boss@staff.example", "pw-not-checked")
    client.force_login(boss)
    url = reverse("admin:auth_user_delete", args=[staff.pk])
    page = client.get(url)
    assert page.status_code == 200
    body = page.content.decode()
    assert "Cannot delete user" in body
    assert "revocation event" in body
    assert "Users named in the revocation audit trail cannot be\ndeleted" in body
    assert "Deactivate the user instead" in body

    assert "Deactivate the user instead" in client.post(url, {"post": "yes"}).content.decode()
    bulk = client.post(reverse("admin:auth_user_changelist"),
                       {"action": "delete_selected", "_selected_action": [staff.pk], "post": "yes"})
    assert "Deactivate the user instead" in bulk.content.decode()
    assert User.objects.filter(pk=staff.pk).exists()
    event.refresh_from_db()
    assert (event.admin_user, event.actor) == (staff, "support")

    # What to do instead: deactivate. The user can no longer log in or use an API key; the trail is intact.
    staff.is_active = False
    staff.save()
    event.refresh_from_db()
    assert (event.admin_user, event.actor) == (staff, "support")


def test_a_staff_user_who_never_revoked_can_still_be_deleted_with_their_keys(staff):
    ApiKey.issue(staff, "laptop", created_by="tests")
    services.revoke_user("sub-bob", reason="logout", actor=services.Actor.cli("ops"))  # someone else's row
    staff.delete()
    assert not ApiKey.objects.exists()
    assert RevocationEvent.objects.count() == 1


# --- PostgreSQL: the trigger --------------------------------------------------------------------------------


def _table() -> str:
    return connection.ops.quote_name(RevocationEvent._meta.db_table)


def _refused(sql: str, params=()) -> str:
    with pytest.raises(IntegrityError) as caught, transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(sql, params)
    return str(caught.value)


@pytest.mark.postgres
def test_postgresql_refuses_update_and_delete_of_audit_rows_in_sql(event):
    """As the owner of the tables (what a bug, a migration or a console session would be), in plain SQL."""
    assert connection.vendor == "postgresql", "run with TOKENVERSION_TEST_DB=postgres (scripts/test.sh does)"
    message = _refused(f"UPDATE {_table()} SET note = 'tampered' WHERE id = %s", [event.pk])
    assert "append-only: UPDATE refused" in message
    _refused(f"UPDATE {_table()} SET admin_user_id = NULL")
    assert "append-only: DELETE refused" in _refused(f"DELETE FROM {_table()} WHERE id = %s", [event.pk])
    _refused(f"DELETE FROM {_table()}")
    event.refresh_from_db()
    assert (event.note, event.admin_user_id, RevocationEvent.objects.count()) == ("original", event.admin_user_id, 1)
    assert event.admin_user_id is not None

    # Appending still works, and a statement that touches no audit row is not refused.
    services.revoke_realm(actor=services.Actor.cli("ops"))
    with connection.cursor() as cursor:
        cursor.execute(f"DELETE FROM {_table()} WHERE id < 0")
    assert RevocationEvent.objects.count() == 2


@pytest.mark.postgres
def test_postgresql_trigger_is_installed_by_the_migration(db):
    assert connection.vendor == "postgresql", "run with TOKENVERSION_TEST_DB=postgres (scripts/test.sh does)"
    with connection.cursor() as cursor:
        cursor.execute("SELECT tgname FROM pg_trigger WHERE tgrelid = %s::regclass AND NOT tgisinternal",
                       [RevocationEvent._meta.db_table])
        assert [row[0] for row in cursor.fetchall()] == ["tokenversion_audit_append_only"]


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_postgresql_legitimate_maintenance_still_works():
    """purge_revocations deletes expired session rows, never audit rows; ``flush`` (and so the test suite's
    transactional tests) empties tables with TRUNCATE, which fires no row trigger."""
    assert connection.vendor == "postgresql", "run with TOKENVERSION_TEST_DB=postgres (scripts/test.sh does)"
    rev = services.revoke_session("sid-1", reason="logout", actor=services.Actor.cli("ops"))
    RevokedSession.objects.filter(session_id=rev.session_id).update(expires_at=timezone.now())
    out = io.StringIO()
    call_command("purge_revocations", stdout=out)
    assert "Purged 1 session revocation(s)" in out.getvalue()
    assert RevocationEvent.objects.count() == 1

    call_command("flush", "--no-input", stdout=io.StringIO())
    assert RevocationEvent.objects.count() == 0
