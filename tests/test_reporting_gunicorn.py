"""Service reports under gunicorn with ``--preload`` and two workers (real processes): the master never
reports, each worker reports as its own instance from its own thread, and a worker that stops sends its
last report (``worker_exit`` / ``atexit``), so a use queued just before a shutdown is not lost.

The service is ``tests/remote_service`` (DRF, ``HttpFeedStore`` from a real provider process); it reports to a
loopback recording server (``tests/report_recorder.py``), whose pids say which process sent what.
"""

from __future__ import annotations

import json
import sys
import threading
import uuid

import pytest
from django.db import connection

from tests.feed_settings import FEED_SECRET
from tests.remote_helpers import Process, WebProcess, django_env, free_port, http_get, wait_until
from tests.report_recorder import ReportRecorder
from tokenversion_server import services

pytestmark = pytest.mark.django_db(transaction=True)
KEY = "tvs_gunicorn-test-key"


def test_preloaded_workers_report_as_themselves_and_flush_when_they_stop(jwks_server):
    recorder = ReportRecorder(KEY)
    provider = WebProcess("provider", "provider.wsgi:application",
                          django_env("tests.feed_settings", connection.settings_dict["NAME"], jwks_server.issuer))
    port = free_port()
    service = Process("service", [
        sys.executable, "-m", "gunicorn", "tests.remote_service.wsgi:application", "-c",
        "python:tokenversion.gunicorn_hooks", "--preload", "--workers", "2", "--worker-class", "gthread",
        "--threads", "4", "--bind", f"127.0.0.1:{port}", "--graceful-timeout", "5", "--log-level", "warning"], {
        "DJANGO_SETTINGS_MODULE": "tests.remote_service.settings", "TOKENVERSION_TEST_ISSUER": jwks_server.issuer,
        "REMOTE_SERVICE_STORE": "tokenversion.stores.feed.HttpFeedStore",
        "REMOTE_SERVICE_REPORT_URL": recorder.url, "REMOTE_SERVICE_REPORT_KEY": KEY,
        # Long enough that only the shutdown flush can deliver the last use (the first report is due then too).
        "REMOTE_SERVICE_REPORT_INTERVAL": "30"})
    try:
        provider.start()
        service.env["REMOTE_SERVICE_STORE_OPTIONS"] = json.dumps(
            {"feed_url": f"{provider.url}/tokenversion/feed", "secret": FEED_SECRET})
        service.start()
        url = f"http://127.0.0.1:{port}/api/whoami"
        subject = str(uuid.uuid4())
        token = {"Authorization": f"Bearer {jwks_server.mint(sub=subject)}", "User-Agent": "gunicorn-test"}
        wait_until(lambda: _status(url, token) == 200, 30, what="the service to serve")
        served: set[int] = set()

        def hammer() -> None:  # concurrent requests, so both workers serve some
            for _ in range(20):
                status, body = http_get(url, token)
                if status == 200:
                    served.add(body["pid"])

        threads = [threading.Thread(target=hammer) for _ in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        services.revoke_user(subject, reason="logout", actor=services.Actor.system("gunicorn report test"))
        wait_until(lambda: _status(url, token) == 401, 10, what="the revocation to reach the service")
        assert recorder.reports == [], "REPORT_INTERVAL 30: nothing is due yet"
        master = service.proc.pid
    finally:
        service.stop()  # SIGTERM: each worker stops and sends its last report
        provider.kill()
        recorder.stop()
    pids = {report["instance"]["pid"] for report in recorder.reports}
    assert master not in pids, "the preloaded master never reports"
    assert served <= pids, f"every worker that served reported as itself: served {served}, reported {pids}"
    assert len({(r["instance"]["pid"], r["instance"]["started_at"]) for r in recorder.reports}) == len(pids)
    uses = [use for report in recorder.reports for use in report["uses"]]
    assert [(u["sub"], u["user_agent"], u["client_address"]) for u in uses] == [
        (subject, "gunicorn-test", "127.0.0.1")], "the use queued just before the shutdown was flushed"
    assert all(r["instance"]["store"] == "feed" and r["freshness"] for r in recorder.reports)


def _status(url: str, headers: dict[str, str]) -> int:
    try:
        return http_get(url, headers)[0]
    except OSError:
        return 0
