"""Metrics in process: what each front door counts, what ``/metrics`` lets through, and the provider's figures
read from the audit trail (tests/test_prometheus.py reads the same through a real Prometheus server)."""

from __future__ import annotations

import importlib.util
import threading
import time
import uuid

import pytest
from django.db import connections, transaction
from django.urls import path
from prometheus_client import REGISTRY

from tests.conftest import database_down
from tests.front_doors_urls import urlpatterns as door_urls
from tests.test_front_doors import DOORS as ALL_DOORS
from tests.test_front_doors import MIDDLEWARE, header_for
from tokenversion.metrics import current_observer, metrics_view
from tokenversion.runtime import get_runtime
from tokenversion_server import metrics as provider_metrics
from tokenversion_server import services

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.urls("tests.test_metrics")]
SECRET = "metrics-secret-test-gggggggggggggggggggggggggggg"
urlpatterns = [*door_urls, path("service-metrics", metrics_view), path("metrics", provider_metrics.metrics_view)]


def requests_total(outcome: str, code: str) -> float:
    observer = current_observer()
    if observer is not None:
        observer.sync()  # what a scrape does first
    return REGISTRY.get_sample_value("tokenversion_requests_total", {"outcome": outcome, "code": code}) or 0.0


@pytest.fixture
def metrics_on(tv_settings):
    tv_settings(METRICS=True, METRICS_SECRETS=[SECRET])


CASES = {  # case -> (outcome, code) the counter gets
    "valid": ("accepted", "accepted"),
    "two values": ("malformed", "invalid_request"),
    "expired": ("rejected", "token_expired"),
    "no version claim": ("rejected", "token_missing_claim"),
    "revoked user": ("rejected", "token_revoked"),
    "revoked session": ("rejected", "token_revoked"),
}


# TOKENVERSION["METRICS"] wires the Django runtime's doors; the doors without Django take an observer of their
# own (standalone.make_verifier(observer=...)).
DOORS = {door: url for door, url in ALL_DOORS.items() if door in ("drf", "decorator", "middleware", "ninja")}


@pytest.mark.parametrize("door", DOORS)
@pytest.mark.parametrize("case", CASES)
def test_every_front_door_counts_each_decision_once(client, settings, jwks_server, metrics_on, door, case):
    if door == "middleware":
        settings.MIDDLEWARE = [*settings.MIDDLEWARE, MIDDLEWARE]
    header = header_for(case, jwks_server)
    before = requests_total(*CASES[case])
    client.get(DOORS[door], HTTP_AUTHORIZATION=header)
    assert requests_total(*CASES[case]) == before + 1


@pytest.mark.parametrize("door", DOORS)
def test_a_503_is_counted_with_its_code(client, settings, jwks_server, metrics_on, tv_settings, door):
    tv_settings(CACHE_TTL=0)
    if door == "middleware":
        settings.MIDDLEWARE = [*settings.MIDDLEWARE, MIDDLEWARE]
    token = jwks_server.mint(sub=str(uuid.uuid4()))
    before = requests_total("unavailable", "revocation_store_unavailable")
    with database_down():
        assert client.get(DOORS[door], HTTP_AUTHORIZATION=f"Bearer {token}").status_code == 503
    assert requests_total("unavailable", "revocation_store_unavailable") == before + 1


def test_without_the_setting_nothing_is_observed(client, jwks_server):
    before = requests_total("accepted", "accepted")
    assert client.get(DOORS["drf"], HTTP_AUTHORIZATION=f"Bearer {jwks_server.mint(sub='x')}").status_code == 200
    assert get_runtime().verifier.observer is None
    assert requests_total("accepted", "accepted") == before


def test_cache_hits_are_counted(client, jwks_server, metrics_on):
    token = jwks_server.mint(sub=str(uuid.uuid4()))
    for _ in range(3):
        assert client.get(DOORS["drf"], HTTP_AUTHORIZATION=f"Bearer {token}").status_code == 200
    validator = get_runtime().validator
    assert (validator.cache_lookups, validator.cache_hits) == (3, 2)
    hits = REGISTRY.get_sample_value("tokenversion_token_cache_hits_total") or 0.0
    body = client.get("/service-metrics", HTTP_AUTHORIZATION=f"Bearer {SECRET}").content.decode()
    assert (REGISTRY.get_sample_value("tokenversion_token_cache_hits_total") or 0.0) == hits + 2  # copied at scrape
    assert "tokenversion_token_cache_lookups_total" in body


@pytest.mark.parametrize("authorization", [None, "", "Bearer", f"Basic {SECRET}", f"Bearer {SECRET}x",
                                           f"Bearer {SECRET[:-1]}", "Bearer wrong"])
def test_metrics_need_the_bearer_secret(client, metrics_on, authorization):
    extra = {"HTTP_AUTHORIZATION": authorization} if authorization is not None else {}
    for url in ("/service-metrics", "/metrics"):
        response = client.get(url, **extra)
        assert response.status_code == 401, url
        assert response["WWW-Authenticate"] == 'Bearer realm="metrics"'
        assert b"tokenversion_" not in response.content


def test_metrics_are_off_without_secrets(client, tv_settings):
    tv_settings(METRICS=True, METRICS_SECRETS=[])
    for url in ("/service-metrics", "/metrics"):
        assert client.get(url, HTTP_AUTHORIZATION="Bearer anything").status_code == 404


def test_metrics_answer_get_only(client, metrics_on):
    response = client.post("/metrics", HTTP_AUTHORIZATION=f"Bearer {SECRET}")
    assert response.status_code == 405


def test_provider_counts_revocations_from_the_audit_trail_and_labels_name_no_one(client, jwks_server, metrics_on):
    def scrape() -> str:
        response = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {SECRET}")
        assert response.status_code == 200
        assert response["Content-Type"].startswith("text/plain; version=")
        return response.content.decode()

    def value(body: str, line_start: str) -> float:
        lines = [line for line in body.splitlines() if line.startswith(line_start)]
        assert len(lines) == 1, (line_start, lines)
        return float(lines[0].rsplit(" ", 1)[1])

    user_compromise = 'tokenversion_revocations_total{reason="compromise",scope="user"}'
    before = value(scrape(), user_compromise)
    subject, sid = f"sub-{uuid.uuid4().hex}", f"sid-{uuid.uuid4().hex}"
    services.revoke_user(subject, reason="compromise", actor=services.Actor.system("metrics test"))
    services.revoke_user(subject, reason="compromise", actor=services.Actor.system("metrics test"))
    services.revoke_session(sid, subject=subject, actor=services.Actor.system("metrics test"))
    # A request with the revoked token, so the subject has been near the verifier too.
    client.get(DOORS["drf"], HTTP_AUTHORIZATION=f"Bearer {jwks_server.mint(sub=subject)}")
    body = scrape()
    assert value(body, user_compromise) == before + 2
    assert value(body, 'tokenversion_revocations_total{reason="logout",scope="session"}') >= 1
    assert value(body, "tokenversion_feed_lag_seconds ") == 0
    assert subject not in body and sid not in body


@pytest.mark.postgres
def test_feed_lag_is_the_age_of_the_oldest_uncommitted_audit_write(client, metrics_on):
    if connections["default"].vendor != "postgresql":
        pytest.fail("needs PostgreSQL (TOKENVERSION_TEST_DB=postgres)")
    inserted, release = threading.Event(), threading.Event()

    def writer() -> None:
        try:
            with transaction.atomic():
                services.revoke_user(f"sub-{uuid.uuid4().hex}", reason="admin",
                                     actor=services.Actor.system("metrics test"))
                inserted.set()
                release.wait(10)
        finally:
            connections.close_all()

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        assert inserted.wait(10)
        time.sleep(0.3)
        body = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {SECRET}").content.decode()
        lag = float(next(line for line in body.splitlines()
                         if line.startswith("tokenversion_feed_lag_seconds ")).rsplit(" ", 1)[1])
        assert lag >= 0.3
    finally:
        release.set()
        thread.join(10)
    body = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {SECRET}").content.decode()
    assert "tokenversion_feed_lag_seconds 0.0" in body


def test_metrics_without_prometheus_client_is_e030(tv_settings, monkeypatch):
    from django.core.checks import run_checks

    def ids() -> list[str]:
        return [m.id for m in run_checks(tags=["tokenversion"]) if m.id == "tokenversion.E031"]

    tv_settings(METRICS=True)
    assert ids() == []  # installed here (the dev extra)
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *args: None if name == "prometheus_client" else real(name, *args))
    assert ids() == ["tokenversion.E031"]
    tv_settings(METRICS=False)
    assert ids() == []


def test_gunicorn_hooks_empty_the_directory_and_drop_a_dead_workers_live_gauges(tmp_path, monkeypatch):
    from types import SimpleNamespace

    from tokenversion import gunicorn_hooks

    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    (tmp_path / "counter_99.db").write_bytes(b"old run")
    gunicorn_hooks.on_starting(None)
    assert list(tmp_path.iterdir()) == []
    for name in ("counter_1234.db", "gauge_livesum_1234.db", "gauge_livemax_1234.db", "gauge_livesum_5678.db"):
        (tmp_path / name).write_bytes(b"")
    gunicorn_hooks.child_exit(None, SimpleNamespace(pid=1234))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["counter_1234.db", "gauge_livesum_5678.db"]


def test_counts_copied_from_a_replaced_validator_keep_growing():
    from types import SimpleNamespace

    from tokenversion.metrics import ServiceMetrics

    def hits() -> float:
        return REGISTRY.get_sample_value("tokenversion_token_cache_hits_total") or 0.0

    runtime = SimpleNamespace(_validator=SimpleNamespace(cache_lookups=10, cache_hits=7), _store=None)
    observer = ServiceMetrics(runtime)
    start = hits()
    observer.sync()
    assert hits() == start + 7
    runtime._validator = SimpleNamespace(cache_lookups=3, cache_hits=2)  # a fresh validator starts from 0
    observer.sync()
    assert hits() == start + 9
    runtime._validator.cache_hits = 5
    observer.sync()
    assert hits() == start + 12
