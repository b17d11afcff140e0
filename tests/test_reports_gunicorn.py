"""The report endpoint's rate limit holds across gunicorn workers (it is database-backed): a real provider
under gunicorn with 2 workers and a limit of 5 reports a minute per process, configured from the environment
(``TOKENVERSION_REPORTS_PER_MINUTE_PER_INSTANCE``, as docs/configuration.md names it)."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request

import pytest
from django.db import connection

from tests.remote_helpers import django_env
from tests.test_prometheus import Gunicorn
from tokenversion_server.models import ServiceCredential, ServiceInstance

pytestmark = pytest.mark.django_db(transaction=True)
LIMIT = 5


def _post(url: str, key: str, body: dict) -> tuple[int, dict[str, str]]:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST", headers={
        "Content-Type": "application/json", "Authorization": f"Bearer {key}", "Connection": "close"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers)


def test_the_per_process_limit_is_shared_by_every_worker(jwks_server):
    key = ServiceCredential.issue("orders-api", created_by="tests")[1]
    env = django_env("tests.settings", connection.settings_dict["NAME"], jwks_server.issuer,
                     TOKENVERSION_REPORTS_PER_MINUTE_PER_INSTANCE=str(LIMIT))
    provider = Gunicorn("provider", "provider.wsgi:application", env, workers=2).start()
    try:
        for pid in (1, 2):  # a second try in a fresh window if the minute turns mid-way
            if 60 - time.time() % 60 < 5:
                time.sleep(60 - time.time() % 60)
            now = time.time()
            body = {"instance": {"host": "api-7f9c", "pid": pid, "started_at": now - 5, "store": "feed"},
                    "freshness": [{"as_of": now, "reached_at": now}]}
            answers = [_post(provider.url + "/tokenversion/reports", key, body) for _ in range(LIMIT + 3)]
            if int(time.time() // 60) == int(now // 60):
                break
        statuses = [status for status, _ in answers]
        assert statuses == [202] * LIMIT + [429] * 3, statuses
        assert all(1 <= int(headers["Retry-After"]) <= 60 for status, headers in answers if status == 429)
        # One row counts for every worker (a new connection each time; which worker took which is gunicorn's
        # choice, not asserted here: the count lives in the database, not in a worker).
        assert ServiceInstance.objects.get(pid=pid).reports == LIMIT
    finally:
        provider.stop()
