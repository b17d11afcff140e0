"""Attribute mode's outbox and worker (``tokenversion_server.attribute_sync``), on SQLite and PostgreSQL.

Keycloak here is ``FakeKeycloak``, an in-memory stand-in for the three python-keycloak calls the worker makes
(``get_user``, ``update_user``, ``get_users``), so that supersede, never-lower, user-gone and failure orders can be
forced exactly. The same paths against the real server: ``tests/e2e/test_attribute_mode.py``.
"""

from __future__ import annotations

import datetime as dt
import io

import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command
from django.db import transaction
from django.test import override_settings
from django.urls import reverse
from django.utils import timezone
from keycloak.exceptions import KeycloakGetError, KeycloakPutError

from tests.remote_helpers import free_port
from tokenversion.conf import get_settings
from tokenversion_server import attribute_sync, services
from tokenversion_server.metrics import ProviderCollector
from tokenversion_server.models import AttributeWrite, SubjectVersion

pytestmark = pytest.mark.django_db

ALICE = "7c1a9e52-0b3d-4f6e-9a8b-1c2d3e4f5a01"
BOB = "7c1a9e52-0b3d-4f6e-9a8b-1c2d3e4f5a02"
CLI = services.Actor.cli("test")


def attribute_mode(**extra):
    return override_settings(TOKENVERSION_SERVER={**settings.TOKENVERSION_SERVER, "ATTRIBUTE_SYNC": True, **extra})


@pytest.fixture
def on():
    with attribute_mode():
        yield


@pytest.fixture
def iss():
    return get_settings().issuer


class FakeKeycloak:
    """Users as Keycloak's admin API represents them; ``fail`` makes every call raise as an outage would."""

    def __init__(self, **users: list[str] | None) -> None:
        self.users = {sub: {"id": sub, "username": sub[-2:], "email": f"{sub[-2:]}@example.com",
                            "attributes": ({"token_version": v} if v is not None else {})}
                      for sub, v in users.items()}
        self.fail: Exception | None = None
        self.writes: list[tuple[str, list[str]]] = []
        self.on_update = None  # called before a write lands: a bump racing the worker

    def get_user(self, user_id: str, user_profile_metadata: bool = False) -> dict:
        if self.fail:
            raise self.fail
        if user_id not in self.users:
            raise KeycloakGetError(error_message=b'{"error":"User not found"}', response_code=404)
        return {**self.users[user_id], "attributes": dict(self.users[user_id]["attributes"])}

    def update_user(self, user_id: str, payload: dict) -> dict:
        if self.fail:
            raise self.fail
        if self.on_update:
            self.on_update()
        assert payload["username"] == self.users[user_id]["username"]  # the whole representation goes back
        self.users[user_id] = payload
        self.writes.append((user_id, payload["attributes"]["token_version"]))
        return {}

    def get_users(self, query: dict) -> list[dict]:
        rows = list(self.users.values())
        return rows[query["first"]:query["first"] + query["max"]]


def pending() -> dict[str, int]:
    return dict(AttributeWrite.objects.values_list("subject", "version"))


# Queuing, with the bump -----------------------------------------------------------------------------------


def test_a_bump_queues_its_write_and_a_newer_bump_supersedes_it(on, iss):
    services.revoke_user(ALICE, reason="admin", actor=CLI)
    assert pending() == {ALICE: 1}
    services.revoke_user(ALICE, reason="admin", actor=CLI)
    services.revoke_user(BOB, reason="admin", actor=CLI)
    assert pending() == {ALICE: 2, BOB: 1}
    assert AttributeWrite.objects.get(subject=ALICE).issuer == iss


def test_without_attribute_sync_nothing_is_queued():
    services.revoke_user(ALICE, reason="admin", actor=CLI)
    assert not AttributeWrite.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_the_write_commits_with_the_bump_or_not_at_all(on):
    with pytest.raises(RuntimeError), transaction.atomic():
        services.revoke_user(ALICE, reason="admin", actor=CLI)
        raise RuntimeError("the caller's transaction fails after the bump")
    assert not SubjectVersion.objects.exists() and not AttributeWrite.objects.exists()
    services.revoke_user(ALICE, reason="admin", actor=CLI)
    assert pending() == {ALICE: 1}


def test_a_queued_version_never_goes_down(iss):
    attribute_sync.enqueue(iss, ALICE, 5)
    attribute_sync.enqueue(iss, ALICE, 3)
    assert pending() == {ALICE: 5}


@pytest.mark.parametrize("bad", [-1, "3", 2.0, True, None])
def test_a_version_that_is_no_count_is_refused(iss, bad):
    with pytest.raises(ValueError, match="non-negative integer"):
        attribute_sync.enqueue(iss, ALICE, bad)
    assert not AttributeWrite.objects.exists()


@pytest.mark.parametrize(("values", "expected"), [
    (None, None), ([], None), (["3"], 3), (["3", "7"], 7), (["-1"], None), (["abc"], None), (["1e3"], None),
    (["9" * 20], None),
])
def test_what_keycloak_holds_is_read_strictly(values, expected):
    user = {"attributes": {"token_version": values}} if values is not None else {}
    assert attribute_sync.attribute_value(user, "token_version") == expected


# The worker's pass --------------------------------------------------------------------------------------


def test_a_pass_writes_each_version_and_empties_the_outbox(on, iss):
    keycloak = FakeKeycloak(**{ALICE: None, BOB: ["0"]})
    attribute_sync.enqueue(iss, ALICE, 1)
    attribute_sync.enqueue(iss, BOB, 4)
    result = attribute_sync.run_pass(keycloak)
    assert (result.written, result.failed) == (2, 0)
    assert keycloak.users[ALICE]["attributes"]["token_version"] == ["1"]
    assert keycloak.users[BOB]["attributes"]["token_version"] == ["4"]
    assert keycloak.users[BOB]["email"] == "02@example.com"  # the rest of the user is kept
    assert pending() == {}


def test_a_version_lower_than_keycloaks_is_never_written(on, iss):
    keycloak = FakeKeycloak(**{ALICE: ["9"]})
    attribute_sync.enqueue(iss, ALICE, 4)
    result = attribute_sync.run_pass(keycloak)
    assert (result.written, result.already) == (0, 1)
    assert keycloak.writes == [] and keycloak.users[ALICE]["attributes"]["token_version"] == ["9"]
    assert pending() == {}


def test_a_bump_during_the_write_keeps_its_row_for_the_next_pass(on, iss):
    keycloak = FakeKeycloak(**{ALICE: ["0"]})
    attribute_sync.enqueue(iss, ALICE, 1)
    keycloak.on_update = lambda: attribute_sync.enqueue(iss, ALICE, 2)
    result = attribute_sync.run_pass(keycloak)
    assert (result.written, result.superseded) == (1, 1)
    assert pending() == {ALICE: 2}
    keycloak.on_update = None
    attribute_sync.run_pass(keycloak)
    assert keycloak.writes == [(ALICE, ["1"]), (ALICE, ["2"])]
    assert pending() == {}


def test_a_user_keycloak_no_longer_has_is_dropped(on, iss):
    attribute_sync.enqueue(iss, ALICE, 3)
    result = attribute_sync.run_pass(FakeKeycloak())
    assert result.gone == 1 and pending() == {}


def test_a_failed_write_stays_backs_off_and_lands_once_keycloak_answers(on, iss):
    keycloak = FakeKeycloak(**{ALICE: ["0"], BOB: ["0"]})
    attribute_sync.enqueue(iss, ALICE, 1)
    attribute_sync.enqueue(iss, BOB, 1)
    keycloak.fail = ConnectionError("[Errno 111] Connection refused")
    result = attribute_sync.run_pass(keycloak)
    assert (result.failed, result.done) == (1, 0)  # stops at the first outage: the next row would fail too
    failed = AttributeWrite.objects.get(attempts=1)
    assert "Connection refused" in failed.last_error
    assert failed.next_attempt_at > timezone.now()
    assert len(attribute_sync.due_rows(10)) == 1  # the other one, untried, is still due

    keycloak.fail = None
    AttributeWrite.objects.update(next_attempt_at=timezone.now())  # as after the backoff
    assert attribute_sync.run_pass(keycloak).written == 2
    assert pending() == {}


def test_keycloak_refusing_the_write_is_a_failure_with_its_answer(on, iss):
    keycloak = FakeKeycloak(**{ALICE: ["0"]})
    keycloak.update_user = lambda *a: (_ for _ in ()).throw(
        KeycloakPutError(error_message=b'{"errorMessage":"error-user-attribute-read-only"}', response_code=400))
    attribute_sync.enqueue(iss, ALICE, 1)
    assert attribute_sync.run_pass(keycloak).failed == 1
    assert AttributeWrite.objects.get().last_error.startswith(f"writing user {ALICE} failed: HTTP 400")


def test_backoff_doubles_up_to_the_ceiling(on):
    assert 0.4 <= attribute_sync.backoff(0) <= 0.5
    assert 3.2 <= attribute_sync.backoff(3) <= 4.0
    assert 24 <= attribute_sync.backoff(40) <= 30


def test_the_scan_queues_users_without_the_attribute_or_behind(on, iss):
    SubjectVersion.objects.create(issuer=iss, subject=BOB, token_version=6)
    keycloak = FakeKeycloak(**{ALICE: None, BOB: ["2"], "7c1a9e52-0b3d-4f6e-9a8b-1c2d3e4f5a03": ["0"]})
    assert attribute_sync.scan_users(keycloak, iss, page_size=2) == (3, 2)
    assert pending() == {ALICE: 0, BOB: 6}
    # the unseen users got their version row (at INITIAL_VERSION), so a revocation by subject finds them
    assert SubjectVersion.objects.get(subject=ALICE).token_version == 0
    assert SubjectVersion.objects.get(subject=BOB).token_version == 6


# What the operator sees ---------------------------------------------------------------------------------


def status() -> str:
    out = io.StringIO()
    call_command("tokenversion_attribute_sync", "--status", stdout=out)
    return out.getvalue().strip()


def test_status_prints_the_backlog(on, iss):
    assert status() == "attribute outbox: 0 pending"
    attribute_sync.enqueue(iss, ALICE, 1)
    attribute_sync.enqueue(iss, BOB, 1)
    AttributeWrite.objects.filter(subject=ALICE).update(
        attempts=3, last_error="reading user x failed: [Errno 111] Connection refused",
        created_at=timezone.now() - dt.timedelta(seconds=90))
    line = status()
    assert line.startswith("attribute outbox: 2 pending, 1 failing, oldest 9")
    assert line.endswith("s; last error: reading user x failed: [Errno 111] Connection refused")


def test_the_worker_refuses_to_run_without_attribute_sync():
    with pytest.raises(CommandError, match=r"^TOKENVERSION_SERVER ATTRIBUTE_SYNC is off"):
        call_command("tokenversion_attribute_sync", "--once")


def test_keycloak_unreachable_is_a_one_line_error_and_marks_the_backlog(iss):
    port = free_port()
    keycloak = {"SERVER_URL": f"http://127.0.0.1:{port}", "REALM": "test", "USERNAME": "admin",
                "PASSWORD": "admin", "TIMEOUT": 2}
    with attribute_mode(), override_settings(TOKENVERSION_KEYCLOAK=keycloak):
        attribute_sync.enqueue(iss, ALICE, 1)
        with pytest.raises(CommandError) as failed:
            call_command("tokenversion_attribute_sync", "--once")
        assert str(failed.value).startswith(f"Keycloak admin login at http://127.0.0.1:{port}/ failed")
        assert "\n" not in str(failed.value)

        worker = attribute_sync.Worker(iss)
        assert worker.step() is None  # paused, and the backlog says why
        row = AttributeWrite.objects.get()
        assert row.attempts == 1 and "Keycloak admin login" in row.last_error
        assert worker.step() is None and AttributeWrite.objects.get().attempts == 1  # paused: not tried again


def test_the_admin_lists_the_backlog_with_a_failing_filter(on, iss, client):
    admin = User.objects.create_superuser("root", "root@example.com", "pw-not-checked")
    client.force_login(admin)
    attribute_sync.enqueue(iss, ALICE, 1)
    attribute_sync.enqueue(iss, BOB, 2)
    AttributeWrite.objects.filter(subject=BOB).update(attempts=2, last_error="writing user failed: HTTP 503")
    url = reverse("admin:tokenversion_server_attributewrite_changelist")
    page = client.get(url).content.decode()
    assert "Pending attribute writes: 2 pending, 1 failing, oldest" in page
    assert ALICE in page and BOB in page and "HTTP 503" in page
    failing = client.get(url, {"state": "failing"}).content.decode()
    assert BOB in failing and ALICE not in failing
    assert client.get(reverse("admin:tokenversion_server_attributewrite_add")).status_code == 403


def test_the_metrics_report_the_backlog(on, iss):
    attribute_sync.enqueue(iss, ALICE, 1)
    AttributeWrite.objects.update(attempts=1, created_at=timezone.now() - dt.timedelta(seconds=30))
    attribute_sync.enqueue(iss, BOB, 1)
    families = {f.name: f for f in ProviderCollector()._attribute_outbox()}
    rows = {s.labels["state"]: s.value for s in families["tokenversion_attribute_outbox_rows"].samples}
    assert rows == {"waiting": 1, "failing": 1}
    (oldest,) = families["tokenversion_attribute_outbox_oldest_seconds"].samples
    assert 30 <= oldest.value < 60


def test_keycloak_setup_refuses_attribute_mode_without_attribute_sync():
    with pytest.raises(CommandError) as refused:
        call_command("keycloak_setup", "--attribute-mode")
    assert str(refused.value) == ("--attribute-mode needs TOKENVERSION_SERVER ATTRIBUTE_SYNC on: otherwise bumps "
                                  "would never reach the attribute, and tokens would keep the old version")


def test_the_scan_with_keycloak_unreachable_is_a_one_line_error(on):
    keycloak = {"SERVER_URL": f"http://127.0.0.1:{free_port()}", "REALM": "test", "USERNAME": "admin",
                "PASSWORD": "admin", "TIMEOUT": 2}
    with override_settings(TOKENVERSION_KEYCLOAK=keycloak), pytest.raises(CommandError) as failed:
        call_command("tokenversion_attribute_sync", "--scan")
    assert "Keycloak admin login at" in str(failed.value) and "\n" not in str(failed.value)
    assert not AttributeWrite.objects.exists()


def test_check_w045_attribute_mode_without_keycloak_credentials():
    from django.core.checks import run_checks

    def ids() -> list[str]:
        return [m.id for m in run_checks() if m.id == "tokenversion.W045"]

    assert ids() == []
    with attribute_mode():
        assert ids() == ["tokenversion.W045"]
        with override_settings(TOKENVERSION_KEYCLOAK={"USERNAME": "svc", "PASSWORD": "pw"}):
            assert ids() == []


def test_a_disabled_user_is_not_written(on, iss):
    """Writing would loop through Keycloak's admin event and the listener's "user.disabled" (a new bump each time);
    a disabled user gets no token anyway, and the scan writes the version once they are enabled again."""
    keycloak = FakeKeycloak(**{ALICE: ["0"]})
    keycloak.users[ALICE]["enabled"] = False
    attribute_sync.enqueue(iss, ALICE, 1)
    assert attribute_sync.run_pass(keycloak).gone == 1
    assert keycloak.writes == [] and pending() == {}
    keycloak.users[ALICE]["enabled"] = True
    attribute_sync.scan_users(keycloak, iss)  # the provider's version row says 0 here; give it the bump's 1
    SubjectVersion.objects.filter(subject=ALICE).update(token_version=1)
    attribute_sync.scan_users(keycloak, iss)
    attribute_sync.run_pass(keycloak)
    assert keycloak.writes == [(ALICE, ["1"])]


@pytest.mark.postgres
def test_a_second_worker_does_not_write_while_one_holds_the_lock(on, iss):
    """Each write reads then writes: two workers at once could put a lower version back. On PostgreSQL they share
    an advisory lock; ``--once`` refuses while a running worker (here: another connection) holds it."""
    import psycopg
    from django.db import connection

    from tokenversion_server.management.commands.tokenversion_attribute_sync import LOCK_KEY

    assert connection.vendor == "postgresql", "run with TOKENVERSION_TEST_DB=postgres (scripts/test.sh does)"
    params = connection.get_connection_params()
    params.pop("cursor_factory", None)
    params.pop("context", None)
    attribute_sync.enqueue(iss, ALICE, 1)
    with psycopg.connect(**params, autocommit=True) as other:
        assert other.execute("SELECT pg_try_advisory_lock(%s)", [LOCK_KEY]).fetchone()[0]
        with pytest.raises(CommandError, match="another tokenversion_attribute_sync holds the lock"):
            call_command("tokenversion_attribute_sync", "--once")
    assert pending() == {ALICE: 1}


def test_the_realm_spec_swaps_the_version_mapper_and_retires_the_other_mode():
    from tokenversion_server.keycloak_admin import (
        ATTRIBUTE_MAPPER_NAME,
        DIRECT_MAPPER_NAME,
        USER_ATTRIBUTE_MAPPER_TYPE,
        RealmSpec,
    )

    base = {"realm": "r", "login_clients": ("app",), "audience": "api", "provider_url": "http://p", "mapper_secret": ""}
    attribute = RealmSpec(**base, attribute_mode=True)
    names = [m["name"] for m in attribute.wanted_mappers()]
    assert ATTRIBUTE_MAPPER_NAME in names and DIRECT_MAPPER_NAME not in names
    (mapper,) = [m for m in attribute.wanted_mappers() if m["name"] == ATTRIBUTE_MAPPER_NAME]
    assert mapper["protocolMapper"] == USER_ATTRIBUTE_MAPPER_TYPE
    assert {k: mapper["config"][k] for k in ("user.attribute", "claim.name", "jsonType.label", "lightweight.claim",
                                             "access.token.claim", "id.token.claim")} == {
        "user.attribute": "token_version", "claim.name": "token_version", "jsonType.label": "long",
        "lightweight.claim": "true", "access.token.claim": "true", "id.token.claim": "false"}
    assert attribute.retired_mappers() == (DIRECT_MAPPER_NAME,)
    assert attribute.profile_attribute()["permissions"] == {"view": ["admin"], "edit": ["admin"]}
    extension = RealmSpec(**base)
    assert DIRECT_MAPPER_NAME in [m["name"] for m in extension.wanted_mappers()]
    assert extension.retired_mappers() == (ATTRIBUTE_MAPPER_NAME,)
