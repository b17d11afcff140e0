"""``POST /tokenversion/reports`` (issue 14, docs/contract.md "Service reports"): service keys, what a report
writes, enforcement ("enforced by N of M live service processes, the slowest after X ms"), the rate limits,
and a hostile-input matrix in the style of test_endpoint_inputs.py: each bad report gets a precise 4xx and
writes nothing (row counts of every model, before and after)."""

from __future__ import annotations

import datetime as dt
import io
import json
import logging
import time
from typing import Any

import pytest
from django.apps import apps
from django.contrib.auth.models import Permission, User
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from tokenversion_server import services
from tokenversion_server.enforcement import enforcement, instance_states
from tokenversion_server.models import (
    ApiKey,
    FreshnessPoint,
    RevocationEvent,
    RevokedTokenUse,
    ServiceCredential,
    ServiceInstance,
)
from tokenversion_server.reports import MAX_REPORT_BYTES

pytestmark = pytest.mark.django_db

SUB = "5b7f0b36-8d0e-4a35-9f49-7a5ad1b0c001"
URL = "/tokenversion/reports"
STARTED = time.time() - 60


def counts() -> dict[str, int]:
    models = [*apps.get_app_config("tokenversion_server").get_models(), *apps.get_app_config("accounts").get_models()]
    return {model._meta.label: model.objects.count() for model in models}


def _key(name: str = "orders-api") -> str:
    out = io.StringIO()
    call_command("create_service_key", name, stdout=out, stderr=io.StringIO())
    return out.getvalue().strip()


@pytest.fixture
def key() -> str:
    return _key()


def report(issuer: str, *, pid: int = 4242, host: str = "api-7f9c", now: float | None = None,
           uses: list | None = None, **changes: Any) -> dict[str, Any]:
    now = time.time() if now is None else now
    body: dict[str, Any] = {
        "instance": {"host": host, "pid": pid, "started_at": STARTED, "store": "feed"},
        "freshness": [{"as_of": now - 0.02, "reached_at": now}],
        "uses": uses if uses is not None else [],
        "dropped": {"uses": 0, "freshness": 0},
    }
    body.update(changes)
    return body


def a_use(issuer: str, **changes: Any) -> dict[str, Any]:
    use = {"at": time.time(), "iss": issuer, "sub": SUB, "sid": "0c6e-sid", "jti": "onrtac:1", "token_version": 2,
           "hit": "version", "client_address": "203.0.113.9", "user_agent": "curl/8.0", "method": "GET",
           "path": "/api/orders"}
    use.update(changes)
    return use


def post(client, key: str | None, body: Any, content_type: str = "application/json", **meta: str):
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    if key is not None:
        meta.setdefault("HTTP_AUTHORIZATION", f"Bearer {key}")
    return client.generic("POST", URL, raw, content_type=content_type, CONTENT_TYPE=content_type, **meta)


def _revoke_user() -> RevocationEvent:
    rev = services.revoke_user(SUB, reason="logout", actor=services.Actor.system("tests"))
    return RevocationEvent.objects.get(pk=rev.audit_id)


# --- keys ----------------------------------------------------------------------------------------------------


def test_create_service_key_prints_a_key_once_and_stores_its_hash_only(key):
    assert key.startswith("tvs_") and len(key) == 47
    credential = ServiceCredential.objects.get(name="orders-api")
    assert credential.prefix == key[:12] and key not in credential.key_hash
    assert ServiceCredential.objects.authenticate(key) == credential


def test_one_active_key_per_service_replace_revokes_the_old(key):
    with pytest.raises(CommandError, match="already has an active key"):
        call_command("create_service_key", "orders-api", stdout=io.StringIO(), stderr=io.StringIO())
    out = io.StringIO()
    call_command("create_service_key", "orders-api", "--replace", stdout=out, stderr=io.StringIO())
    assert ServiceCredential.objects.authenticate(key) is None
    assert ServiceCredential.objects.authenticate(out.getvalue().strip()).name == "orders-api"


@pytest.mark.parametrize("name", ["", ".x", "a b", "x" * 101, "orders\x00api", "ordérs"])
def test_create_service_key_refuses_bad_names_in_one_line(name):
    with pytest.raises(CommandError, match="service name must be"):
        call_command("create_service_key", name, stdout=io.StringIO(), stderr=io.StringIO())
    assert not ServiceCredential.objects.exists()


def test_revoked_key_is_refused(client, issuer, key):
    call_command("revoke_service_key", "orders-api", stdout=io.StringIO())
    response = post(client, key, report(issuer.issuer))
    assert response.status_code == 401 and response.json()["error"] == "invalid_key"
    with pytest.raises(CommandError, match="no active key"):
        call_command("revoke_service_key", "orders-api", stdout=io.StringIO())


# --- what a report writes ----------------------------------------------------------------------------------


def test_a_report_records_the_instance_and_answers_202(client, issuer, key):
    response = post(client, key, report(issuer.issuer))
    assert response.status_code == 202, response.content
    assert response.json() == {"accepted": {"freshness": 1, "uses": 0}}
    instance = ServiceInstance.objects.get()
    assert (instance.service, instance.host, instance.pid, instance.store) == ("orders-api", "api-7f9c", 4242,
                                                                               "feed")
    assert instance.last_as_of is not None and instance.reports == 1
    assert not FreshnessPoint.objects.exists()  # no revocation yet: a heartbeat stores no point


def test_the_service_name_comes_from_the_key_not_the_body(client, issuer, key):
    body = report(issuer.issuer, service="billing-api")
    body["instance"]["service"] = "billing-api"
    assert post(client, key, body).status_code == 202
    assert ServiceInstance.objects.get().service == "orders-api"


def test_enforcement_by_n_of_m_live_processes_with_the_slowest_lag(client, issuer, key):
    event = _revoke_user()
    t = event.created_at.timestamp()
    # Process 1 enforces it 38 ms after; process 2 reports but is behind; process 3 is silent.
    assert post(client, key, report(issuer.issuer, pid=1, freshness=[
        {"as_of": t - 0.5, "reached_at": t - 0.4}, {"as_of": t + 0.030, "reached_at": t + 0.038}])).status_code == 202
    assert post(client, key, report(issuer.issuer, pid=2, freshness=[
        {"as_of": t - 0.5, "reached_at": t + 0.001}])).status_code == 202
    assert post(client, key, report(issuer.issuer, pid=3, freshness=[
        {"as_of": t - 0.5, "reached_at": t + 0.001}])).status_code == 202
    ServiceInstance.objects.filter(pid=3).update(last_report_at=timezone.now() - dt.timedelta(seconds=60))

    found = enforcement(event)
    assert found.summary() == "enforced by 1 of 2 live service processes, the slowest after 38 ms"
    assert [i.instance.pid for i in found.behind] == [2]
    assert [i.instance.pid for i in found.silent] == [3]
    # Process 2 catches up: 2 of 2, and its lag (500 ms) is now the slowest.
    assert post(client, key, report(issuer.issuer, pid=2, freshness=[
        {"as_of": t + 0.4, "reached_at": t + 0.5}])).status_code == 202
    assert enforcement(event).summary() == "enforced by 2 of 2 live service processes, the slowest after 500 ms"
    states = {i.pid: s for i, s in instance_states()}
    assert states == {1: "enforcing", 2: "enforcing", 3: "silent"}


def test_heartbeats_store_no_points_and_points_stay_bounded(client, issuer, key):
    _revoke_user()
    time.sleep(0.05)  # the reports' as_of (20 ms before now) is after the revocation
    for _ in range(5):
        now = time.time()
        assert post(client, key, report(issuer.issuer, now=now)).status_code == 202
    assert FreshnessPoint.objects.count() == 1  # the one point that passed the revocation


def test_a_clock_ahead_cannot_claim_the_future(client, issuer, key):
    ahead = time.time() + 3600
    assert post(client, key, report(issuer.issuer, freshness=[{"as_of": ahead, "reached_at": ahead}])
                ).status_code == 202
    event = _revoke_user()  # made after the report arrived
    assert enforcement(event).summary() == "enforced by 0 of 1 live service process"


def test_a_use_is_recorded_with_the_revocation_it_hit(client, issuer, key):
    event = _revoke_user()
    use = a_use(issuer.issuer)
    response = post(client, key, report(issuer.issuer, uses=[use]))
    assert response.status_code == 202 and response.json()["accepted"]["uses"] == 1
    row = RevokedTokenUse.objects.get()
    assert (row.service, row.subject, row.session_id, row.jti, row.token_version, row.hit) == (
        "orders-api", SUB, "0c6e-sid", "onrtac:1", 2, "version")
    assert (row.client_address, row.user_agent, row.method, row.path) == ("203.0.113.9", "curl/8.0", "GET",
                                                                          "/api/orders")
    assert row.revocation_id == event.pk and row.instance.pid == 4242
    with pytest.raises(TypeError):
        RevokedTokenUse.objects.all().delete()
    with pytest.raises(TypeError):
        RevokedTokenUse.objects.update(subject="x")


def test_a_use_is_logged_as_one_json_line_on_tokenversion_security(client, issuer, key, caplog,
                                                                   django_capture_on_commit_callbacks):
    event = _revoke_user()
    with (caplog.at_level(logging.WARNING, logger="tokenversion.security"),
          django_capture_on_commit_callbacks(execute=True)):
        assert post(client, key, report(issuer.issuer, uses=[a_use(issuer.issuer)])).status_code == 202
    lines = [r.getMessage() for r in caplog.records if r.name == "tokenversion.security"]
    assert len(lines) == 1 and "\n" not in lines[0]
    logged = json.loads(lines[0])
    assert logged["type"] == "revoked_token_use" and logged["service"] == "orders-api"
    assert logged["subject"] == SUB and logged["client_address"] == "203.0.113.9"
    assert logged["revocation"]["id"] == event.pk and logged["instance"]["pid"] == 4242


def test_a_session_hit_finds_the_session_revocation(client, issuer, key):
    services.revoke_session("0c6e-sid", actor=services.Actor.system("tests"), subject=SUB)
    _revoke_user()  # a later user revocation is not what a session hit names
    assert post(client, key, report(issuer.issuer, uses=[a_use(issuer.issuer, hit="session")])).status_code == 202
    assert RevokedTokenUse.objects.get().revocation.scope == "session"


def test_a_use_before_any_revocation_has_none(client, issuer, key):
    assert post(client, key, report(issuer.issuer, uses=[a_use(issuer.issuer, hit="unknown")])).status_code == 202
    assert RevokedTokenUse.objects.get().revocation is None


# --- the REST API ----------------------------------------------------------------------------------------


def test_the_rest_api_returns_enforcement(client, issuer, key):
    event = _revoke_user()
    t = event.created_at.timestamp()
    post(client, key, report(issuer.issuer, freshness=[{"as_of": t + 0.01, "reached_at": t + 0.02}]))
    holder = User.objects.create_user("siem")
    holder.user_permissions.add(Permission.objects.get(codename="revoke_tokens"))
    api_key = ApiKey.issue(holder, "tests", created_by="tests")[1]
    response = client.get(f"/tokenversion/revocations/{event.pk}/enforcement", HTTP_AUTHORIZATION=f"Token {api_key}")
    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["live"], body["enforced"], body["behind"], body["silent"]) == (1, 1, [], [])
    assert body["summary"] == "enforced by 1 of 1 live service process, the slowest after 20 ms"
    assert body["instances"][0]["service"] == "orders-api"
    assert client.get(f"/tokenversion/revocations/{event.pk + 1000}/enforcement",
                      HTTP_AUTHORIZATION=f"Token {api_key}").status_code == 404
    assert client.get(f"/tokenversion/revocations/{event.pk}/enforcement").status_code == 401


# --- rate limits -------------------------------------------------------------------------------------------


def test_rate_limit_per_instance_answers_429_with_retry_after(client, issuer, key, settings):
    settings.TOKENVERSION_SERVER = {**settings.TOKENVERSION_SERVER, "REPORTS_PER_MINUTE_PER_INSTANCE": 3}
    statuses = [post(client, key, report(issuer.issuer)).status_code for _ in range(4)]
    if statuses[-1] != 429:  # the minute turned in the middle: once more, in a fresh window
        statuses = [post(client, key, report(issuer.issuer, pid=7)).status_code for _ in range(4)]
    assert statuses == [202, 202, 202, 429]
    response = post(client, key, report(issuer.issuer, pid=7 if ServiceInstance.objects.filter(pid=7) else 4242))
    assert response.status_code == 429 and response.json()["error"] == "rate_limited"
    assert 1 <= int(response["Retry-After"]) <= 60
    # Another process of the same service is not limited by the first one's count.
    assert post(client, key, report(issuer.issuer, pid=99)).status_code == 202


def test_rate_limit_per_service_counts_refused_reports_too(client, issuer, key, settings):
    settings.TOKENVERSION_SERVER = {**settings.TOKENVERSION_SERVER, "REPORTS_PER_MINUTE_PER_SERVICE": 3}
    for _ in range(2):
        statuses = [post(client, key, b"{").status_code for _ in range(3)]
        statuses.append(post(client, key, report(issuer.issuer)).status_code)
        if statuses[-1] == 429:
            break
    assert statuses == [400, 400, 400, 429]
    assert not ServiceInstance.objects.exists()


# --- hostile input: a precise 4xx, nothing written ---------------------------------------------------------

INJECTIONS: dict[str, Any] = {
    "SQL": "x' OR '1'='1'; DROP TABLE tokenversion_server_serviceinstance; --",
    "NUL": "alice\x00admin",
    "control characters": "alice\x1b[2J\r\nX-Injected: 1",
    "unpaired surrogate": "alice\ud800",
    "300 astral characters": "\U0001d54f" * 300,
    "a number": 42,
    "a list": ["alice"],
    "an object": {"$ne": None},
    "true": True,
}
TEXT_REFUSED = ["NUL", "control characters", "unpaired surrogate", "a number", "a list", "an object", "true"]


def _set(path: str, value: Any):
    """A change to the valid report: ``instance.host``, ``uses.0.sub``, ``freshness.0.as_of``, or a top key."""

    def change(body: dict[str, Any]) -> None:
        target: Any = body
        *parents, last = path.split(".")
        for part in parents:
            target = target[int(part)] if part.isdigit() else target[part]
        if last.isdigit():
            target[int(last)] = value
        else:
            target[last] = value

    return change


def _cases() -> list[tuple[str, Any, int, str]]:
    cases: list[tuple[str, Any, int, str]] = [
        # (name, change or raw body or (headers, body), status, code)
        ("no credentials", ("none", None), 401, "invalid_key"),
        ("an API key instead of a service key", ("Bearer tvk_" + "a" * 40, None), 401, "invalid_key"),
        ("a service key with a NUL", ("Bearer tvs_\x00" + "a" * 42, None), 401, "invalid_key"),
        ("Basic auth", ("Basic b3JkZXJzOmFwaQ==", None), 401, "invalid_key"),
        ("no credentials, oversized body", ("none", b"x" * 2_000_000), 401, "invalid_key"),
        ("empty body", b"", 400, "invalid_request"),
        ("truncated", b'{"instance": {"host": "a', 400, "invalid_request"),
        ("body over 64 KiB", b"x" * (MAX_REPORT_BYTES + 1), 413, "body_too_large"),
        ("valid JSON over 64 KiB", json.dumps({"pad": "x" * MAX_REPORT_BYTES}).encode(), 413, "body_too_large"),
        ("deeply nested", b"[" * 5000 + b"]" * 5000, 400, "invalid_request"),
        ("a list", b"[1, 2]", 400, "invalid_request"),
        ("null", b"null", 400, "invalid_request"),
        ("a key repeated", b'{"uses": [], "uses": []}', 400, "invalid_request"),
        ("not UTF-8", b'{"instance": "\xff\xfe"}', 400, "invalid_request"),
        ("NaN", b'{"instance": NaN}', 400, "invalid_request"),
        ("no instance", _set("instance", None), 400, "invalid_request"),
        ("instance a string", _set("instance", "api-7f9c"), 400, "invalid_request"),
        ("host too long", _set("instance.host", "h" * 256), 400, "invalid_request"),
        ("host empty", _set("instance.host", ""), 400, "invalid_request"),
        ("pid a string", _set("instance.pid", "4242"), 400, "invalid_request"),
        ("pid a float", _set("instance.pid", 4242.5), 400, "invalid_request"),
        ("pid true", _set("instance.pid", True), 400, "invalid_request"),
        ("pid zero", _set("instance.pid", 0), 400, "invalid_request"),
        ("pid huge", _set("instance.pid", 2**80), 400, "invalid_request"),
        ("started_at a string", _set("instance.started_at", "yesterday"), 400, "invalid_request"),
        ("started_at before 2000", _set("instance.started_at", 0), 400, "invalid_request"),
        ("started_at 10**400", _set("instance.started_at", 10**400), 400, "invalid_request"),
        ("store with capitals", _set("instance.store", "Feed"), 400, "invalid_request"),
        ("store too long", _set("instance.store", "f" * 33), 400, "invalid_request"),
        ("freshness an object", _set("freshness", {"as_of": 1}), 400, "invalid_request"),
        ("65 freshness points", _set("freshness", [{"as_of": STARTED, "reached_at": STARTED}] * 65), 400,
         "invalid_request"),
        ("a point without as_of", _set("freshness.0", {"reached_at": STARTED}), 400, "invalid_request"),
        ("as_of after reached_at", _set("freshness.0", {"as_of": STARTED + 5, "reached_at": STARTED}), 400,
         "invalid_request"),
        ("points not ascending", _set("freshness", [{"as_of": STARTED, "reached_at": STARTED + 2},
                                                     {"as_of": STARTED, "reached_at": STARTED + 1}]), 400,
         "invalid_request"),
        ("as_of a day ahead", _set("freshness.0", {"as_of": time.time() + 90000, "reached_at": time.time() + 90000}),
         400, "invalid_request"),
        ("101 uses", lambda b: b.__setitem__("uses", [a_use("http://x")] * 101), 400, "invalid_request"),
        ("a use a string", _set("uses", ["x"]), 400, "invalid_request"),
        ("hit unknown value", lambda b: b.__setitem__("uses", [a_use("http://x", hit="expired")]), 400,
         "invalid_request"),
        ("use without iss", lambda b: b.__setitem__("uses", [a_use("", iss=None)]), 400, "invalid_request"),
        ("token_version negative", lambda b: b.__setitem__("uses", [a_use("http://x", token_version=-1)]), 400,
         "invalid_request"),
        ("client_address not an IP", lambda b: b.__setitem__("uses", [a_use("http://x", client_address="evil")]),
         400, "invalid_request"),
        ("user_agent 257 characters", lambda b: b.__setitem__("uses", [a_use("http://x", user_agent="u" * 257)]),
         400, "invalid_request"),
        ("path 513 characters", lambda b: b.__setitem__("uses", [a_use("http://x", path="/" * 513)]), 400,
         "invalid_request"),
        ("method with a space", lambda b: b.__setitem__("uses", [a_use("http://x", method="GET /")]), 400,
         "invalid_request"),
        ("dropped negative", _set("dropped", {"uses": -1}), 400, "invalid_request"),
        ("dropped a list", _set("dropped", [0]), 400, "invalid_request"),
    ]
    for label, value in INJECTIONS.items():
        for field in ("sub", "sid", "jti", "user_agent", "path"):
            if label in TEXT_REFUSED:
                cases.append((f"uses.0.{field}: {label}",
                              (lambda f, v: lambda b: b.__setitem__("uses", [a_use("http://x", **{f: v})]))(field,
                                                                                                          value),
                              400, "invalid_request"))
        if label in TEXT_REFUSED:
            cases.append((f"instance.host: {label}", _set("instance.host", value), 400, "invalid_request"))
    # One good use after a bad one: the whole report is refused, the good one not written either.
    cases.append(("a good use then a bad one", lambda b: b.__setitem__("uses", [
        a_use("http://x"), a_use("http://x", hit="nope")]), 400, "invalid_request"))
    return cases


CASES = _cases()


@pytest.mark.parametrize(("name", "change", "status", "code"), CASES, ids=[c[0] for c in CASES])
def test_bad_report_gets_a_precise_4xx_and_writes_nothing(client, issuer, key, name, change, status, code):
    headers: dict[str, str] = {}
    if isinstance(change, tuple):
        auth, body = change
        headers = {} if auth == "none" else {"HTTP_AUTHORIZATION": auth}
        raw = body if body is not None else json.dumps(report(issuer.issuer)).encode()
        before = counts()
        response = client.generic("POST", URL, raw, content_type="application/json",
                                  CONTENT_TYPE="application/json", **headers)
    else:
        if isinstance(change, bytes):
            raw = change
        else:
            body = report(issuer.issuer, uses=[a_use(issuer.issuer)])
            change(body)
            raw = json.dumps(body).encode()
        before = counts()
        response = post(client, key, raw)
    assert response.status_code == status, response.content
    assert response.json()["error"] == code
    assert response.json()["error_description"]
    assert response["Cache-Control"] == "no-store"
    assert counts() == before


@pytest.mark.parametrize("method", ["GET", "PUT", "PATCH", "DELETE"])
def test_other_methods_are_405(client, key, method):
    response = client.generic(method, URL, b"", HTTP_AUTHORIZATION=f"Bearer {key}")
    assert response.status_code == 405 and response["Allow"] == "POST"


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", ""])
def test_not_json_is_415(client, issuer, key, content_type):
    before = counts()
    response = post(client, key, report(issuer.issuer), content_type=content_type)
    assert response.status_code == 415 and response.json()["error"] == "unsupported_media_type"
    assert counts() == before


def test_unknown_members_are_ignored(client, issuer, key):
    body = report(issuer.issuer, future_field={"x": 1})
    body["instance"]["region"] = "eu"
    body["uses"] = [a_use(issuer.issuer, country="FR")]
    assert post(client, key, body).status_code == 202


def test_the_valid_report_the_matrix_starts_from_succeeds(client, issuer, key):
    assert post(client, key, report(issuer.issuer, uses=[a_use(issuer.issuer)])).status_code == 202


@pytest.mark.parametrize("label", ["SQL", "300 astral characters"])
def test_free_text_is_stored_as_data(client, issuer, key, label):
    value = INJECTIONS[label][:256]
    assert post(client, key, report(issuer.issuer, uses=[a_use(issuer.issuer, user_agent=value)])).status_code == 202
    assert RevokedTokenUse.objects.get().user_agent == value
    assert set(counts())


def test_purge_drops_old_points_and_gone_processes_but_keeps_those_security_events_name(client, issuer, key,
                                                                                       settings):
    event = _revoke_user()
    t = event.created_at.timestamp()
    for pid in (1, 2):
        uses = [a_use(issuer.issuer)] if pid == 2 else []
        assert post(client, key, report(issuer.issuer, pid=pid, uses=uses,
                                        freshness=[{"as_of": t + 0.01, "reached_at": t + 0.02}])).status_code == 202
    assert FreshnessPoint.objects.count() == 2
    later = timezone.now() + dt.timedelta(days=8)  # past ENFORCEMENT_RETENTION (7 days)
    from tokenversion_server.enforcement import purge

    assert purge(later) == {"points": 2, "instances": 1}
    assert list(ServiceInstance.objects.values_list("pid", flat=True)) == [2]  # named by a revoked-token use
    assert RevokedTokenUse.objects.count() == 1
    out = io.StringIO()
    call_command("purge_revocations", stdout=out)
    assert out.getvalue().startswith("Purged 0 session revocation(s)")


@pytest.mark.postgres
def test_revoked_token_uses_are_append_only_in_sql_too(client, issuer, key):
    from django.db import connection, transaction
    from django.db.utils import IntegrityError, InternalError

    if connection.vendor != "postgresql":
        pytest.fail("run with TOKENVERSION_TEST_DB=postgres")
    assert post(client, key, report(issuer.issuer, uses=[a_use(issuer.issuer)])).status_code == 202
    table = RevokedTokenUse._meta.db_table
    for sql in (f"UPDATE {table} SET subject = 'x'", f"DELETE FROM {table}"):
        with pytest.raises((IntegrityError, InternalError)), transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(sql)
    assert RevokedTokenUse.objects.get().subject == SUB


def test_a_database_outage_is_503_never_500(client, issuer, key):
    from tests.conftest import database_down

    with database_down():
        response = post(client, key, report(issuer.issuer))
    assert response.status_code == 503 and response["Retry-After"] == "1"


def test_the_key_commands_of_docs_operations_md_work_verbatim(client, issuer):
    """The three ``manage.py`` lines of docs/operations.md ("Enforcement"), in their order, as written."""
    import re
    import shlex
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "docs" / "operations.md").read_text()
    lines = [re.sub(r"\s+#.*$", "", line).strip() for line in text.splitlines()
             if re.match(r"python3 manage\.py (create|revoke)_service_key ", line)]
    assert len(lines) == 3
    keys = []
    for line in lines:
        out = io.StringIO()
        call_command(*shlex.split(line)[2:], stdout=out, stderr=io.StringIO())
        keys.append(out.getvalue().strip())
    first, second, revoked = keys
    assert first.startswith("tvs_") and second.startswith("tvs_") and first != second
    assert revoked.startswith("Revoked service key ")
    for key in (first, second):  # replaced, then revoked: neither reports
        assert post(client, key, report(issuer.issuer)).status_code == 401


# --- fuzzing: any JSON in any member is a 202 or a precise 400, never a 500 ----------------------------------

from hypothesis import given  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
_PATHS = ["instance", "instance.host", "instance.pid", "instance.started_at", "instance.store", "freshness",
          "freshness.0", "freshness.0.as_of", "freshness.0.reached_at", "uses", "uses.0", "uses.0.at",
          "uses.0.iss", "uses.0.sub", "uses.0.sid", "uses.0.jti", "uses.0.token_version", "uses.0.hit",
          "uses.0.client_address", "uses.0.user_agent", "uses.0.method", "uses.0.path", "dropped",
          "dropped.uses"]


@pytest.fixture
def generous_limits(settings):
    """Once per test, not per example: the thorough profile sends 2000 reports from one process."""
    settings.TOKENVERSION_SERVER = {**settings.TOKENVERSION_SERVER, "REPORTS_PER_MINUTE_PER_INSTANCE": 10**6,
                                    "REPORTS_PER_MINUTE_PER_SERVICE": 10**6}


@given(path=st.sampled_from(_PATHS), value=_JSON)
def test_any_json_in_any_member_is_202_or_400(client, issuer, key, generous_limits, path, value):
    body = report(issuer.issuer, uses=[a_use(issuer.issuer)])
    _set(path, value)(body)
    raw = json.dumps(body).encode("utf-8", "surrogatepass")
    response = post(client, key, raw)
    assert response.status_code in (202, 400), response.content
    if response.status_code == 400:
        assert response.json()["error"] == "invalid_request"


def test_a_heartbeat_costs_the_provider_six_statements(client, issuer, key):
    """Each service process sends one a second: its cost on the provider's database, counted (not timed).
    The key, its rate window (read under lock, written), the process's row (read under lock), whether any
    revocation was passed, the process's row written; savepoints aside."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    assert post(client, key, report(issuer.issuer)).status_code == 202  # the process's first report makes its row
    with CaptureQueriesContext(connection) as captured:
        assert post(client, key, report(issuer.issuer)).status_code == 202
    statements = [q["sql"] for q in captured.captured_queries if "SAVEPOINT" not in q["sql"]]
    assert len(statements) == 6, statements
