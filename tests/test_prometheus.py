"""The metrics as an operator reads them: a real Prometheus server (Debian's package) scrapes a real provider
(gunicorn, 2 workers, multi-process mode), the certifying publisher's status in Redis, and a real service
(gunicorn, 2 workers, remote store); the values are read back through Prometheus's HTTP query API.

Revocations are made in this test process (they commit to the test database the provider reads). The
Prometheus server binds to loopback on a free port, keeps its data in a temporary directory, and is stopped
by the test.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from pathlib import Path

import pytest
from django.db import connection

from tests.feed_settings import FEED_SECRET
from tests.metrics_settings import METRICS_SECRET
from tests.remote_helpers import Process, django_env, free_port, http_get, wait_until
from tests.test_claims import MAPPER_SECRET
from tokenversion_server import services
from tokenversion_server.models import ServiceCredential

pytestmark = pytest.mark.django_db(transaction=True)
DOCS = Path(__file__).resolve().parents[1] / "docs"
OPERATIONS = DOCS / "operations.md"
SERVICE_SECRET = "service-metrics-secret-ffffffffffffffffffffffff"


def actor():
    return services.Actor.system("prometheus-test")


class Gunicorn:
    """A gunicorn-served project with several workers and Prometheus's multi-process directory."""

    def __init__(self, name: str, app: str, env: dict[str, str], workers: int = 2) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.dir = tempfile.mkdtemp(prefix=f"tv-{name}-prom-")
        self.process = Process(name, [sys.executable, "-m", "gunicorn", app, "-c", "python:tokenversion.gunicorn_hooks",
                                      "--bind", f"127.0.0.1:{self.port}", "--workers", str(workers),
                                      "--worker-class", "gthread", "--threads", "8", "--timeout", "60",
                                      "--graceful-timeout", "1", "--log-level", "warning"],
                               {**env, "PROMETHEUS_MULTIPROC_DIR": self.dir})

    def start(self) -> Gunicorn:
        self.process.start()

        def ready() -> bool:
            assert self.process.running, self.process.output()
            try:
                return http_get(self.url + "/health", timeout=1)[0] == 200
            except OSError:
                return False

        wait_until(ready, 30, interval=0.05, what=f"{self.process.name} to serve")
        return self

    def stop(self) -> None:
        self.process.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


class Prometheus:
    """``prometheus`` on a free loopback port, scraping every second with the bearer secrets from files."""

    def __init__(self, targets: dict[str, tuple[str, str]]) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="tv-prometheus-"))
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        jobs = []
        for job, (address, secret) in targets.items():
            (self.dir / f"{job}.secret").write_text(secret)
            jobs.append({"job_name": job, "metrics_path": "/metrics", "scrape_interval": "1s",
                         "scrape_timeout": "1s", "authorization": {"credentials_file": str(self.dir / f"{job}.secret")},
                         "static_configs": [{"targets": [address]}]})
        # JSON is YAML: no YAML writer needed.
        (self.dir / "prometheus.yml").write_text(json.dumps({"global": {"scrape_interval": "1s"},
                                                             "scrape_configs": jobs}))
        self.process = Process("prometheus", [
            shutil.which("prometheus") or "prometheus", f"--config.file={self.dir / 'prometheus.yml'}",
            f"--storage.tsdb.path={self.dir / 'data'}", f"--web.listen-address=127.0.0.1:{self.port}",
            "--log.level=warn"])

    def start(self) -> Prometheus:
        self.process.start()

        def ready() -> bool:
            assert self.process.running, self.process.output()
            try:
                with urllib.request.urlopen(self.url + "/-/ready", timeout=1) as response:
                    return response.status == 200
            except OSError:
                return False

        wait_until(ready, 30, interval=0.1, what="prometheus to be ready")
        return self

    def query(self, expr: str) -> list[dict]:
        status, body = http_get(f"{self.url}/api/v1/query?" + urllib.parse.urlencode({"query": expr}))
        assert status == 200 and body["status"] == "success", body
        return body["data"]["result"]

    def value(self, expr: str) -> float | None:
        result = self.query(expr)
        return float(result[0]["value"][1]) if result else None

    def wait_for(self, expr: str, expected: float, timeout: float = 20) -> None:
        def reached() -> bool:
            return self.value(expr) == expected

        try:
            wait_until(reached, timeout, interval=0.25, what=f"{expr} == {expected}")
        except AssertionError as exc:
            raise AssertionError(f"{exc}; last value {self.value(expr)}") from None

    def stop(self) -> None:
        self.process.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="module")
def db_name(django_db_setup, django_db_blocker) -> str:
    with django_db_blocker.unblock():
        return connection.settings_dict["NAME"]


@pytest.fixture(scope="module")
def redis_url() -> str:
    url = os.environ.get("TOKENVERSION_TEST_REDIS_URL")
    if not url:
        pytest.fail("TOKENVERSION_TEST_REDIS_URL is not set: run `bash scripts/services.sh start` and "
                    "`eval \"$(bash scripts/services.sh env)\"` (Redis is required, not optional)")
    return url


def test_prometheus_scrapes_provider_and_service_and_reads_the_values_back(db_name, jwks_server, redis_url):
    if shutil.which("prometheus") is None:
        pytest.fail("prometheus is not installed: apt-get install prometheus (scripts/test.sh installs it)")
    channel = f"tokenversion:test:{uuid.uuid4().hex}"
    env = django_env("tests.metrics_settings", db_name, jwks_server.issuer,
                     TOKENVERSION_TEST_FEED_REDIS_URL=redis_url, TOKENVERSION_TEST_FEED_CHANNEL=channel)
    provider = Gunicorn("provider", "provider.wsgi:application", env)
    publisher = Process("publisher", [sys.executable, "manage.py", "tokenversion_publisher", "--interval", "0.05"],
                        env)
    service = Gunicorn("service", "tests.remote_service.wsgi:application", {
        "DJANGO_SETTINGS_MODULE": "tests.remote_service.settings",
        "TOKENVERSION_TEST_ISSUER": jwks_server.issuer,
        "REMOTE_SERVICE_STORE": "tokenversion.stores.feed.HttpFeedStore",
        "REMOTE_SERVICE_STORE_OPTIONS": "{}",  # filled in below, once the provider's port is known
        "REMOTE_SERVICE_METRICS_SECRET": SERVICE_SECRET,
        "REMOTE_SERVICE_REPORT_INTERVAL": "0.5",  # and REPORT_URL / REPORT_KEY below: the service reports
    })
    prometheus = None
    try:
        provider.start()
        service.process.env["REMOTE_SERVICE_STORE_OPTIONS"] = json.dumps(
            {"feed_url": f"{provider.url}/tokenversion/feed", "secret": FEED_SECRET})
        service.process.env.update(REMOTE_SERVICE_REPORT_URL=f"{provider.url}/tokenversion/reports",
                                   REMOTE_SERVICE_REPORT_KEY=ServiceCredential.issue("prom-service", "test")[1])
        service.start()
        publisher.start()

        # /metrics is closed without the secret, on both.
        assert http_get(provider.url + "/metrics")[0] == 401
        assert http_get(service.url + "/metrics", {"Authorization": "Bearer " + METRICS_SECRET})[0] == 401

        prometheus = Prometheus({"provider": (f"127.0.0.1:{provider.port}", METRICS_SECRET),
                                 "service": (f"127.0.0.1:{service.port}", SERVICE_SECRET)}).start()
        prometheus.wait_for('sum(up{job=~"provider|service"})', 2)

        # Provider: revocations by scope and reason, read from the audit trail whichever process made them.
        subjects = [f"prom-{uuid.uuid4().hex[:8]}" for _ in range(3)]
        for subject, reason in zip(subjects, ["compromise", "logout", "compromise"], strict=True):
            services.revoke_user(subject, reason=reason, actor=actor())
        services.revoke_session(f"sid-{uuid.uuid4().hex[:8]}", subject=subjects[0], actor=actor())
        prometheus.wait_for('sum(tokenversion_revocations_total{scope="user"})', 3)
        prometheus.wait_for('tokenversion_revocations_total{scope="user",reason="compromise"}', 2)
        prometheus.wait_for('sum(tokenversion_revocations_total{scope="session"})', 1)

        # The claims endpoint's latency histogram, summed over both workers' files.
        for subject in subjects:
            status, body = http_post_json(provider.url + "/tokenversion/claims", {"sub": subject},
                                          {"X-TokenVersion-Secret": MAPPER_SECRET})
            assert status == 200 and body["token_version"] == 1, body
        prometheus.wait_for('sum(tokenversion_claims_request_duration_seconds_count{status="200"})', 3)

        # The publisher's heartbeats certify the whole trail: lag under a second, nothing left behind.
        prometheus.wait_for("tokenversion_publisher_backlog_rows", 0)
        wait_until(lambda: (prometheus.value("tokenversion_publisher_lag_seconds") or 99) < 1, 10,
                   what="the publisher's lag under a second")
        assert prometheus.value("tokenversion_feed_lag_seconds") == 0

        # Provider, service reports (issue 14): one process reports, past the 4 revocations above (lags
        # observed), with one revoked-token use and one use it dropped.
        report_key = ServiceCredential.issue("prom-svc", created_by="prometheus-test")[1]
        now = time.time()
        report = {"instance": {"host": "prom-host", "pid": 4242, "started_at": now - 60, "store": "feed"},
                  "freshness": [{"as_of": now, "reached_at": now}],
                  "uses": [{"at": now, "iss": jwks_server.issuer, "sub": subjects[1], "hit": "version",
                            "client_address": "203.0.113.9"}],
                  "dropped": {"uses": 1, "freshness": 0}}
        status, body = http_post_json(provider.url + "/tokenversion/reports", report,
                                      {"Authorization": f"Bearer {report_key}"})
        assert status == 202 and body == {"accepted": {"freshness": 1, "uses": 1}}, body
        prometheus.wait_for('sum(tokenversion_service_reports_total{status="202"})', 1)
        prometheus.wait_for('sum(tokenversion_revoked_token_uses_total{service="prom-svc",hit="version"})', 1)
        prometheus.wait_for("sum(tokenversion_enforcement_lag_seconds_count)", 4)
        prometheus.wait_for('tokenversion_service_instances{state="enforcing"}', 1)
        prometheus.wait_for('sum(tokenversion_service_report_dropped_total{service="prom-svc",kind="uses"})', 1)

        # Service: decisions by outcome and code, cache hits, store freshness and map size.
        wait_until(lambda: http_get(service.url + "/health")[1]["staleness"] <= 1.0, 10, what="a fresh store")
        fresh_subject = f"prom-{uuid.uuid4().hex[:8]}"
        good = {"Authorization": f"Bearer {jwks_server.mint(sub=fresh_subject, token_version=0)}"}
        for _ in range(4):
            assert http_get(service.url + "/api/whoami", good)[0] == 200
        revoked = {"Authorization": f"Bearer {jwks_server.mint(sub=subjects[1], token_version=0)}"}
        status, body = http_get(service.url + "/api/whoami", revoked)
        assert (status, body["code"]) == (401, "token_revoked")
        assert http_get(service.url + "/api/whoami", {"Authorization": "Bearer a b"})[0] == 400
        prometheus.wait_for('sum(tokenversion_requests_total{job="service",outcome="accepted"})', 4)
        prometheus.wait_for('sum(tokenversion_requests_total{job="service",code="token_revoked"})', 1)
        prometheus.wait_for('sum(tokenversion_requests_total{job="service",outcome="malformed"})', 1)
        # 5 validations (4 of one token, 1 of another): 2 signature checks at least, and hits for the repeats
        # that land on a worker which has already seen the token (2 workers: 2 to 3 hits).
        prometheus.wait_for('sum(tokenversion_token_cache_lookups_total{job="service"})', 5)
        hits = prometheus.value('sum(tokenversion_token_cache_hits_total{job="service"})')
        assert hits is not None and 2 <= hits <= 3, hits
        assert prometheus.value('tokenversion_store_staleness_seconds{job="service",store="HttpFeedStore"}') <= 1.0
        assert prometheus.query('tokenversion_store_staleness_seconds{job="provider"}') == []  # no remote store
        assert prometheus.value('tokenversion_store_max_staleness_seconds{job="service"}') == 1.0
        prometheus.wait_for('tokenversion_store_map_entries{job="service",kind="subjects"}', 3)
        # Service reports from the service itself (its reporter): the refused revoked token reached the provider.
        prometheus.wait_for('sum(tokenversion_report_uses_sent_total{job="service"})', 1)
        prometheus.wait_for('sum(tokenversion_revoked_token_uses_total{service="prom-service",hit="version"})', 1)
        assert prometheus.value('sum(tokenversion_report_uses_dropped_total{job="service"})') == 0
        assert prometheus.value('sum(tokenversion_report_queue_length{job="service"})') == 0
        wait_until(lambda: (prometheus.value('sum(tokenversion_reports_sent_total{job="service"})') or 0) >= 2, 20,
                   what="the service's reports counted")
        assert prometheus.value('tokenversion_store_map_overflowed{job="service"}') == 0

        # Every metric Prometheus now holds is documented, and every dashboard query runs and finds data.
        names = {series["metric"]["__name__"] for series in prometheus.query('{__name__=~"tokenversion_.+"}')}
        documented = OPERATIONS.read_text()
        base = {name.removesuffix("_bucket").removesuffix("_count").removesuffix("_sum") for name in names}
        assert base and not {name for name in base if f"`{name}`" not in documented}
        # Each parses (query asserts success); all but the 503 panel find data (a rate needs two scrapes).
        for expr in dashboard_queries():
            if 'outcome="unavailable"' in expr:
                prometheus.query(expr)
            else:
                wait_until(lambda expr=expr: prometheus.query(expr), 10, interval=0.25,
                           what=f"dashboard query to find data: {expr}")
    finally:
        if prometheus is not None:
            prometheus.stop()
        publisher.stop()
        service.stop()
        provider.stop()


def http_post_json(url: str, data: dict, headers: dict[str, str]) -> tuple[int, dict]:
    request = urllib.request.Request(url, data=json.dumps(data).encode(), method="POST",
                                     headers={"Content-Type": "application/json", **headers})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


def dashboard_queries() -> list[str]:
    """The dashboard's queries with Grafana's variables filled in as Grafana would."""
    dashboard = json.loads((DOCS / "grafana-dashboard.json").read_text())
    queries = [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])]
    return [q.replace("$__rate_interval", "1m").replace("$job", ".*") for q in queries]


def test_the_documented_alerts_are_valid_prometheus_rules(tmp_path):
    """The alerting rules of docs/operations.md, checked by Prometheus's own promtool."""
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool is not installed: apt-get install prometheus (scripts/test.sh installs it)")
    blocks = OPERATIONS.read_text().split("```yaml\n")
    rules = next(block.split("```", 1)[0] for block in blocks[1:] if block.startswith("groups:"))
    (tmp_path / "rules.yml").write_text(rules)
    result = subprocess.run([promtool, "check", "rules", str(tmp_path / "rules.yml")], capture_output=True,
                            text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 24 rules found" in result.stdout  # 23, and TokenversionAttributeBacklog (issue 12)
