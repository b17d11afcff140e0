"""Every front door reports a refused revoked token, with the request's client address and user agent, to a real
loopback recording server (``tests/report_recorder.py``); the accepted path sends nothing per request.

The harness is the front doors' (``tests/test_front_doors.py``): real RSA keys over loopback HTTP, real
revocations in the database, the Django doors through Django's test client (``REMOTE_ADDR`` set per request),
the ASGI doors through Starlette's test client (its ``client`` address set per test).
"""

from __future__ import annotations

import time
import uuid

import pytest
from starlette.testclient import TestClient

from tests.report_recorder import ReportRecorder
from tests.test_front_doors import ASGI, DOORS, MIDDLEWARE, SID, actor
from tokenversion.conf import get_settings
from tokenversion.runtime import get_runtime
from tokenversion.standalone import make_verifier
from tokenversion_server import services

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.urls("tests.front_doors_urls")]

KEY = "tvs_door-test-key"
CLIENT = "203.0.113.9"
AGENT = "attacker-tool/1.0"


@pytest.fixture
def recorder():
    server = ReportRecorder(KEY)
    yield server
    server.stop()


@pytest.fixture
def reporting(tv_settings, recorder):
    tv_settings(REPORT_URL=recorder.url, REPORT_KEY=KEY, REPORT_INTERVAL=0.2)
    return recorder


def asgi_verifier(recorder: ReportRecorder, **options):
    """The ASGI doors' verifier, from the Django doors' values and store, reporting to ``recorder``."""
    conf = get_settings()
    return make_verifier(issuer=conf.issuer, audience=conf.audience, jwks_url=conf.jwks_url,
                         max_token_lifetime=conf.max_token_lifetime, store=get_runtime().store,
                         report_url=recorder.url, report_key=KEY, report_interval=0.2, **options)


def revoked_token(jwks, hit: str = "version") -> tuple[str, str]:
    sub = str(uuid.uuid4())
    if hit == "version":
        token = jwks.mint(sub=sub, sid=SID, jti="jti-1", token_version=0)
        services.revoke_user(sub, reason="logout", actor=actor())
    elif hit == "session":
        token = jwks.mint(sub=sub, sid=SID)
        services.revoke_session(SID, reason="logout", actor=actor())
    else:
        token = jwks.mint(sub=sub, iat=jwks.claims()["iat"] - 10)
        services.revoke_realm(reason="admin", actor=actor())
    return sub, token


def one_use(recorder: ReportRecorder, sub: str) -> dict:
    assert recorder.wait_for(lambda r: any(u["sub"] == sub for u in r.uses()), timeout=10), "no use reported"
    [use] = [u for u in recorder.uses() if u["sub"] == sub]
    return use


def ask(client, door: str, token: str, recorder: ReportRecorder, peer: str = CLIENT, **headers):
    headers = {"Authorization": f"Bearer {token}", "User-Agent": AGENT, **headers}
    if door in ASGI:
        verifier = asgi_verifier(recorder, trusted_proxies=["127.0.0.1"])
        try:
            with TestClient(ASGI[door](verifier), client=(peer, 50000)) as asgi:
                return asgi.get(DOORS[door], headers=headers)
        finally:
            verifier.reporter.close()
    meta = {f"HTTP_{name.upper().replace('-', '_')}": value for name, value in headers.items()}
    return client.get(DOORS[door], REMOTE_ADDR=peer, **meta)


@pytest.mark.parametrize("door", DOORS)
def test_every_front_door_reports_a_refused_revoked_token(client, settings, jwks_server, reporting, door):
    if door == "middleware":
        settings.MIDDLEWARE = [*settings.MIDDLEWARE, MIDDLEWARE]
    sub, token = revoked_token(jwks_server)
    before = time.time()
    peer = "127.0.0.1" if door == "forwardauth" else CLIENT  # the gateway, which names the client
    extra = ({"X-Forwarded-For": CLIENT, "X-Forwarded-Method": "GET", "X-Forwarded-Uri": "/api/orders/7"}
             if door == "forwardauth" else {})
    response = ask(client, door, token, reporting, peer=peer, **extra)
    assert response.status_code == 401 and response.json()["code"] == "token_revoked"
    use = one_use(reporting, sub)
    path = "/api/orders/7" if door == "forwardauth" else DOORS[door]
    assert use == {"at": use["at"], "iss": jwks_server.issuer, "sub": sub, "sid": SID, "jti": "jti-1",
                   "token_version": 0, "hit": "version", "client_address": CLIENT, "user_agent": AGENT,
                   "method": "GET", "path": path}
    assert before <= use["at"] <= time.time()


@pytest.mark.parametrize("hit", ["session", "realm"])
def test_the_report_names_the_revocation_that_refused_the_token(client, jwks_server, reporting, hit):
    sub, token = revoked_token(jwks_server, hit)
    assert ask(client, "drf", token, reporting).status_code == 401
    assert one_use(reporting, sub)["hit"] == hit


def test_other_refusals_are_not_reported(client, jwks_server, reporting):
    sub = str(uuid.uuid4())
    expired = jwks_server.mint(sub=sub, iat=1_000_000_000, exp=1_000_000_300)
    assert ask(client, "drf", expired, reporting).json()["code"] == "token_expired"
    assert reporting.wait_for(lambda r: len(r.reports) >= 2)
    assert reporting.uses() == []


def test_x_forwarded_for_counts_only_from_trusted_proxies(client, jwks_server, reporting, tv_settings):
    forged = {"X-Forwarded-For": f"6.6.6.6, {CLIENT}"}
    sub, token = revoked_token(jwks_server)
    ask(client, "drf", token, reporting, peer="127.0.0.1", **forged)
    assert one_use(reporting, sub)["client_address"] == "127.0.0.1", "no TRUSTED_PROXIES: REMOTE_ADDR"
    tv_settings(REPORT_URL=reporting.url, REPORT_KEY=KEY, REPORT_INTERVAL=0.2, TRUSTED_PROXIES=["127.0.0.0/8"])
    sub, token = revoked_token(jwks_server)
    ask(client, "drf", token, reporting, peer="127.0.0.1", **forged)
    assert one_use(reporting, sub)["client_address"] == CLIENT, "the right-most entry not a trusted proxy"


def test_forwardauth_ignores_forwarded_headers_from_an_untrusted_peer(client, jwks_server, reporting):
    sub, token = revoked_token(jwks_server)
    ask(client, "forwardauth", token, reporting, peer="198.51.100.7",
        **{"X-Forwarded-For": "6.6.6.6", "X-Forwarded-Method": "DELETE", "X-Forwarded-Uri": "/forged"})
    use = one_use(reporting, sub)
    assert (use["client_address"], use["method"], use["path"]) == ("198.51.100.7", "GET", DOORS["forwardauth"])


def test_the_accepted_path_sends_nothing_per_request(client, jwks_server, reporting):
    token = jwks_server.mint(sub=str(uuid.uuid4()))
    started = time.monotonic()
    for _ in range(200):
        assert client.get(DOORS["drf"], HTTP_AUTHORIZATION=f"Bearer {token}").status_code == 200
    assert reporting.wait_for(lambda r: len(r.reports) >= 1)
    elapsed = time.monotonic() - started
    time.sleep(0.3)
    # Reports come by the clock (one per REPORT_INTERVAL, heartbeats), not by the request.
    assert len(reporting.received) <= elapsed / 0.2 + 3
    assert reporting.uses() == []
    assert all(report["instance"]["store"] == "database" and report["freshness"] for report in reporting.reports)


def test_the_reporter_s_figures_reach_the_service_metrics(client, jwks_server, recorder, tv_settings):
    """METRICS on: reports sent and failed, uses sent and dropped, and the queue, as a scrape reads them."""
    from prometheus_client import REGISTRY

    from tokenversion.metrics import current_observer

    def value(name: str) -> float:
        current_observer().sync()  # what a scrape does first
        return REGISTRY.get_sample_value(name) or 0.0

    tv_settings(REPORT_URL=recorder.url, REPORT_KEY=KEY, REPORT_INTERVAL=0.2, REPORT_QUEUE_SIZE=1, METRICS=True)
    token = jwks_server.mint(sub=str(uuid.uuid4()))
    assert client.get(DOORS["drf"], HTTP_AUTHORIZATION=f"Bearer {token}").status_code == 200
    names = ["tokenversion_reports_sent_total", "tokenversion_reports_failed_total",
             "tokenversion_report_uses_sent_total", "tokenversion_report_uses_dropped_total"]
    before = {name: value(name) for name in names}
    recorder.stop()  # the provider unreachable: the queue (one use) fills, the rest is dropped
    subs = []
    for _ in range(3):
        sub, revoked = revoked_token(jwks_server)
        subs.append(sub)
        assert ask(client, "drf", revoked, recorder).status_code == 401
    reporter = get_runtime().reporter
    assert reporter.queue_length == 1
    assert value("tokenversion_report_uses_dropped_total") - before["tokenversion_report_uses_dropped_total"] == 2
    assert value("tokenversion_report_queue_length") == 1
    deadline = time.monotonic() + 5
    while value("tokenversion_reports_failed_total") == before["tokenversion_reports_failed_total"]:
        assert time.monotonic() < deadline, "no failed report counted"
        time.sleep(0.05)
    recorder.start()
    assert one_use(recorder, subs[0])["client_address"] == CLIENT
    deadline = time.monotonic() + 5
    while value("tokenversion_report_uses_sent_total") - before["tokenversion_report_uses_sent_total"] != 1:
        assert time.monotonic() < deadline, "the delivered use is not counted"
        time.sleep(0.05)
    assert value("tokenversion_reports_sent_total") > before["tokenversion_reports_sent_total"]
    assert value("tokenversion_report_queue_length") == 0
