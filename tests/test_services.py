"""The revocation service: atomic bumps, the audit trail, sessions, the realm epoch, purging."""

from __future__ import annotations

import datetime as dt
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import connection, connections
from django.utils import timezone
from hypothesis import given, settings
from hypothesis import strategies as st

from tokenversion.core.revocation import is_identifier
from tokenversion_server import services
from tokenversion_server.models import (
    RealmRevocation,
    RevocationEvent,
    RevokedSession,
    SeenIdentifier,
    SubjectVersion,
)

SUB = "9a1e0f4e-1111-4c2b-9d3e-000000000001"


def actor():
    return services.Actor.system("test")


@pytest.mark.django_db
def test_bump_of_an_unknown_subject_starts_from_the_initial_version():
    rev = services.revoke_user(SUB, reason="compromise", actor=actor(), note="phished")
    assert (rev.old_version, rev.new_version) == (0, 1)
    row = SubjectVersion.objects.get(subject=SUB)
    assert row.token_version == 1 and row.last_logout_time == rev.at
    audit = RevocationEvent.objects.get()
    assert (audit.scope, audit.subject, audit.reason, audit.actor_type, audit.actor) == (
        "user", SUB, "compromise", "system", "test")
    assert (audit.old_version, audit.new_version, audit.note) == (0, 1, "phished")


@pytest.mark.django_db
def test_versions_never_decrease_and_claims_read_the_bumped_value():
    assert services.current_version(SUB) == 0
    for expected in range(1, 4):
        assert services.revoke_user(SUB, reason="logout", actor=actor()).new_version == expected
    assert services.current_version(SUB) == 3


@pytest.mark.django_db
@pytest.mark.parametrize("subject", ["", "a b", "x" * 256, "<script>", None, 5])
def test_bad_subjects_are_refused_before_any_write(subject):
    with pytest.raises(services.InvalidRequest):
        services.revoke_user(subject, reason="logout", actor=actor())
    assert not SubjectVersion.objects.exists() and not RevocationEvent.objects.exists()


@pytest.mark.django_db
def test_bad_reason_is_refused():
    with pytest.raises(services.InvalidRequest):
        services.revoke_user(SUB, reason="because", actor=actor())
    assert not RevocationEvent.objects.exists()


@pytest.mark.django_db
def test_session_revocation_is_kept_for_the_longest_token_lifetime(tv_settings):
    tv_settings(MAX_TOKEN_LIFETIME=600)
    rev = services.revoke_session("sid-1", subject=SUB, actor=actor())
    row = RevokedSession.objects.get(session_id="sid-1")
    assert row.expires_at - row.revoked_at == dt.timedelta(seconds=600)
    assert rev.scope == "session" and RevocationEvent.objects.get().session_id == "sid-1"
    again = services.revoke_session("sid-1", actor=actor())  # Keycloak reports logouts twice
    assert not again.changed and again.audit_id is None
    assert RevokedSession.objects.count() == 1 and RevocationEvent.objects.count() == 1


@pytest.mark.django_db
def test_an_expired_session_revocation_is_renewed_and_audited(tv_settings):
    tv_settings(MAX_TOKEN_LIFETIME=600)
    services.revoke_session("sid-1", subject=SUB, actor=actor())
    RevokedSession.objects.update(expires_at=timezone.now() - dt.timedelta(seconds=1))
    renewed = services.revoke_session("sid-1", actor=actor())
    assert renewed.changed and renewed.audit_id is not None
    row = RevokedSession.objects.get()
    assert row.expires_at > timezone.now() and RevocationEvent.objects.count() == 2


@pytest.mark.django_db
def test_realm_revocation_is_one_row_whatever_the_number_of_users():
    SubjectVersion.objects.bulk_create(
        [SubjectVersion(issuer="x", subject=f"user-{i}") for i in range(50)]
    )
    first = services.revoke_realm(actor=actor())
    second = services.revoke_realm(actor=actor())
    assert RealmRevocation.objects.count() == 1
    assert RealmRevocation.objects.get().not_before == second.at >= first.at
    assert RevocationEvent.objects.filter(scope="realm").count() == 2


@pytest.mark.django_db
def test_failed_audit_write_rolls_the_bump_back(monkeypatch):
    def broken_audit(*args, **kwargs):
        raise RuntimeError("audit storage failed")

    monkeypatch.setattr(services, "_audit", broken_audit)
    with pytest.raises(RuntimeError):
        services.revoke_user(SUB, reason="logout", actor=actor())
    assert not SubjectVersion.objects.exists()


@pytest.mark.django_db
def test_purge_keeps_what_can_still_matter():
    now = timezone.now()
    RevokedSession.objects.create(issuer="i", session_id="old", revoked_at=now, expires_at=now - dt.timedelta(1))
    RevokedSession.objects.create(issuer="i", session_id="new", revoked_at=now, expires_at=now + dt.timedelta(1))
    SeenIdentifier.objects.create(kind="event", issuer="i", value="old", expires_at=now - dt.timedelta(1))
    assert services.purge_expired() == {"sessions": 1, "seen_identifiers": 1}
    assert list(RevokedSession.objects.values_list("session_id", flat=True)) == ["new"]


@pytest.mark.django_db
def test_remember_once_refuses_a_second_use():
    later = timezone.now() + dt.timedelta(minutes=5)
    assert services.remember_once("event", "e-1", later) is True
    assert services.remember_once("event", "e-1", later) is False
    assert services.remember_once("event", "e-2", later) is True


@pytest.mark.django_db(transaction=True)
def test_concurrent_bumps_never_lose_an_increment():
    """8 threads, each with its own database connection, bump the same and different users at once."""
    threads, bumps = 8, 25
    start = threading.Barrier(threads)

    def worker(n: int) -> list[int]:
        start.wait()
        seen = []
        try:
            for i in range(bumps):
                subject = SUB if i % 2 == 0 else f"other-{n}"
                seen.append(services.revoke_user(subject, reason="logout", actor=actor()).new_version)
        finally:
            connections.close_all()
        return seen

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(worker, range(threads)))

    shared_bumps = threads * ((bumps + 1) // 2)
    assert SubjectVersion.objects.get(subject=SUB).token_version == shared_bumps
    for n in range(threads):
        assert SubjectVersion.objects.get(subject=f"other-{n}").token_version == bumps // 2
    audit = RevocationEvent.objects.filter(subject=SUB).order_by("new_version")
    assert audit.count() == shared_bumps
    # every increment is recorded exactly once, each from the version just before it
    assert [(a.old_version, a.new_version) for a in audit] == [(v - 1, v) for v in range(1, shared_bumps + 1)]
    assert RevocationEvent.objects.count() == threads * bumps
    assert connection.vendor in ("sqlite", "postgresql")


@pytest.mark.django_db
def test_audit_rows_cannot_be_overwritten_by_reusing_an_id():
    from django.db import IntegrityError, transaction

    services.revoke_user(SUB, reason="logout", actor=actor())
    original = RevocationEvent.objects.get()
    forged = RevocationEvent(id=original.id, created_at=original.created_at, scope="user", issuer="x",
                             actor_type="system", reason="admin")
    with pytest.raises(IntegrityError), transaction.atomic():
        forged.save()
    assert RevocationEvent.objects.get().reason == "logout"


@given(st.text(alphabet=st.characters(codec="utf-8"), max_size=300)
       | st.from_regex(r"[A-Za-z0-9_-][A-Za-z0-9._:@-]{0,254}", fullmatch=True))
@settings(max_examples=300, deadline=None)
def test_every_identifier_the_provider_accepts_a_service_can_store(value):
    """One rule where the provider writes (``services.is_valid_identifier``), a wider one where a service reads
    (``core.revocation.is_identifier``): the first must stay inside the second, or the provider would record
    revocations that no service could match against a token."""
    if services.is_valid_identifier(value):
        assert is_identifier(value)


@pytest.mark.parametrize("value", ["abc\n", "abc\r\n", "\nabc", "a" * 255 + "\n"])
def test_line_breaks_are_not_identifiers(value):
    assert not services.is_valid_identifier(value)
    with pytest.raises(services.InvalidRequest):
        services.check_identifier(value, "subject")


@pytest.mark.django_db
def test_one_request_type_dispatches_every_scope():
    """``services.revoke`` is the one scope dispatch the REST API, Keycloak's events and the CLI share."""
    user = services.revoke(services.RevocationRequest("user", actor(), "logout", subject=SUB, note="n"))
    assert (user.scope, user.subject, user.new_version) == ("user", SUB, 1)
    # A Keycloak event: the session is already over in Keycloak, so Keycloak is not asked to end it.
    event = services.revoke(services.RevocationRequest("session", actor(), "logout", subject=SUB, session_id="s-1",
                                                       end_keycloak_session=False))
    assert (event.scope, event.subject, event.session_id, event.keycloak_session) == ("session", SUB, "s-1", "")
    # A manual one asks Keycloak (not configured here: "not_ended", and the row is kept longer).
    manual = services.revoke(services.RevocationRequest("session", actor(), "admin", session_id="s-2"))
    assert (manual.session_id, manual.keycloak_session) == ("s-2", "not_ended")
    realm = services.revoke(services.RevocationRequest("realm", actor(), "admin"))
    assert realm.scope == "realm" and RealmRevocation.objects.count() == 1
    assert list(RevocationEvent.objects.order_by("pk").values_list("scope", "note")) == [
        ("user", "n"), ("session", ""), ("session", manual.keycloak_detail), ("realm", "")]


@pytest.mark.django_db
@pytest.mark.parametrize("scope", ["", "users", "everything", None])
def test_a_request_of_no_known_scope_is_refused_before_any_write(scope):
    with pytest.raises(services.InvalidRequest, match="scope must be one of"):
        services.revoke(services.RevocationRequest(scope, actor(), "admin", subject=SUB, session_id="s-1"))
    assert not RevocationEvent.objects.exists()
