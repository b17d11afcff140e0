"""The provider's Prometheus metrics: claims latency, feed requests, and what the audit trail says at scrape time.

Two kinds (docs/operations.md lists each metric with its meaning and an alert):

- **Per process**, counted as requests pass: the claims endpoint's latency (a histogram wrapped around the
  view in ``urls``, the view itself untouched) and the feed requests in progress (long-polls held open).
  Under gunicorn with several workers set ``PROMETHEUS_MULTIPROC_DIR``: each worker writes to that
  directory and any worker's ``/metrics`` reads every worker's values (``tokenversion.gunicorn`` has the
  hooks that empty the directory at start and drop a dead worker's gauges).
- **Computed at scrape time** from the database and Redis (``ProviderCollector``), so they count every
  process's work (admin, command line, Keycloak events, other hosts) and are the same whichever worker
  answers: revocations by scope and reason (the append-only audit trail *is* the log of revocations, so
  this counter never goes back, even across restarts), the feed's lag (how long an uncommitted audit write
  has held the settled cursor back), and the certifying publisher's lag and backlog (from the status it
  writes to Redis with each heartbeat, ``publish.Publisher``).

``/metrics`` answers only ``Authorization: Bearer <one of METRICS_SECRETS>``; with none set it is 404.
"""

from __future__ import annotations

import functools
import json
import logging
import threading
import time
from collections import Counter as Tally
from collections.abc import Callable, Iterator
from typing import Any

from django.db import DatabaseError, connections, transaction
from django.db.models import Count
from django.http import HttpRequest, HttpResponse
from prometheus_client import Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from tokenversion.metrics import metrics_response

from . import feedlog
from .conf import get_server_settings
from .models import RevocationEvent

logger = logging.getLogger("tokenversion.server")

SETTLE_WAIT = 0.2  # seconds a scrape waits for audit writers before counting only what is already settled

CLAIMS_SECONDS = Histogram(
    "tokenversion_claims_request_duration_seconds",
    "Time the claims endpoint took to answer (the view, without the network), by HTTP status.",
    ["status"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
FEED_IN_PROGRESS = Gauge(
    "tokenversion_feed_requests_in_progress",
    "Feed requests being answered, by endpoint (events: mostly long-polls waiting for a revocation).",
    ["endpoint"],
    multiprocess_mode="livesum",
)

# Service reports (issue 14): counted by the process that answered the report (every worker's, in
# multi-process mode); the instances' states are computed at scrape time (ProviderCollector._instances).
REPORTS = Counter(
    "tokenversion_service_reports",
    "Service reports answered by POST /tokenversion/reports, by HTTP status (202 accepted; 4xx refused).",
    ["status"],
)
ENFORCEMENT_LAG = Histogram(
    "tokenversion_enforcement_lag_seconds",
    "Per revocation event and service process: seconds from the event's commit time to the process's first "
    "report enforcing it (the service's clock).",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0),
)
REVOKED_TOKEN_USES = Counter(
    "tokenversion_revoked_token_uses",
    "Revoked tokens presented to a service and refused there (security events), by service and by what "
    "refused them.",
    ["service", "hit"],
)
SERVICE_DROPPED = Counter(
    "tokenversion_service_report_dropped",
    "What services say they lost before it reached the provider (their bounded queue was full or the "
    "provider unreachable), by service and kind (uses, freshness).",
    ["service", "kind"],
)
WEBHOOK_DELIVERED = Counter(
    "tokenversion_security_webhook_delivered",
    "Security events the webhook receiver accepted (2xx).",
)
WEBHOOK_DROPPED = Counter(
    "tokenversion_security_webhook_dropped",
    "Security events not delivered to the webhook, by reason: queue_full (the process's queue was full), "
    "delivery_failed (the receiver failed four times).",
    ["reason"],
)
ESCALATIONS = Counter(
    "tokenversion_escalations",
    "Revoked-token uses the escalation policy evaluated, by outcome: escalated (the user revoked for "
    "compromise), ignored, duplicate (its logout already escalated), failed, dropped (queue full).",
    ["outcome"],
)
for _reason in ("queue_full", "delivery_failed"):
    WEBHOOK_DROPPED.labels(_reason)


def timed_claims(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """The claims view, timed into ``CLAIMS_SECONDS`` (a wrapper, so the view's code is not touched)."""
    children: dict[int, Any] = {}

    @functools.wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        start = time.perf_counter()
        status = 500  # an exception escaping the view becomes Django's 500
        try:
            response = view(request, *args, **kwargs)
            status = response.status_code
            return response
        finally:
            child = children.get(status)
            if child is None:
                child = children.setdefault(status, CLAIMS_SECONDS.labels(str(status)))
            child.observe(time.perf_counter() - start)

    return wrapper


def feed_in_progress(endpoint: str, view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """The feed view, counted in ``FEED_IN_PROGRESS`` while it answers."""
    gauge = FEED_IN_PROGRESS.labels(endpoint)

    @functools.wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        gauge.inc()
        try:
            return view(request, *args, **kwargs)
        finally:
            gauge.dec()

    return wrapper


_FEED_LAG_SQL = """
SELECT EXTRACT(EPOCH FROM (clock_timestamp() - MIN(a.xact_start))) FROM pg_locks l
JOIN pg_stat_activity a ON a.pid = l.pid
WHERE l.locktype = 'relation' AND l.mode = 'RowExclusiveLock' AND l.granted
  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND l.relation = to_regclass(%s) AND l.pid <> pg_backend_pid()
"""


class ProviderCollector:
    """Figures read from the database and Redis when Prometheus scrapes (see the module docstring)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counted_to = 0  # audit ids <= this are in _counts (each worker counts the trail once, then deltas)
        self._counts: Tally[tuple[str, str]] = Tally()

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        from .feed import feed_using

        using = feed_using()
        yield from self._revocations(using)
        yield from self._feed_lag(using)
        yield from self._instances()
        server = get_server_settings()
        if server.redis_url:
            yield from self._publisher(using, server.redis_url, server.redis_channel)
        if server.attribute_sync:
            yield from self._attribute_outbox()

    def _attribute_outbox(self) -> Iterator[Metric]:
        from .attribute_sync import backlog

        pending = backlog()
        rows = GaugeMetricFamily("tokenversion_attribute_outbox_rows", "Users whose new version is not yet "
                                 "written into their Keycloak attribute (attribute mode), by state (failing: "
                                 "tried at least once and failed).", labels=["state"])
        rows.add_metric(["waiting"], pending.pending - pending.failing)
        rows.add_metric(["failing"], pending.failing)
        yield rows
        yield GaugeMetricFamily("tokenversion_attribute_outbox_oldest_seconds", "Age of the oldest pending "
                                "attribute write: how long some user's new tokens may have carried an old "
                                "version (0: none pending).", value=pending.oldest_age)

    def _revocations(self, using: str) -> Iterator[Metric]:
        # Counted up to the settled horizon only: an id above it may still commit, and counting by id
        # ranges must never step over a row that appears later (feedlog).
        horizon = feedlog.settle(using, time.monotonic() + SETTLE_WAIT)
        with self._lock:
            if horizon is not None and horizon > self._counted_to:
                rows = (RevocationEvent.objects.using(using).filter(id__gt=self._counted_to, id__lte=horizon)
                        .order_by().values("scope", "reason").annotate(n=Count("id"))
                        .values_list("scope", "reason", "n"))
                for scope, reason, n in rows:
                    self._counts[(scope, reason)] += n
                self._counted_to = horizon
            counts = dict(self._counts)
        family = CounterMetricFamily("tokenversion_revocations", "Revocations committed (rows of the audit "
                                     "trail), by scope and reason, since the provider's database began.",
                                     labels=["scope", "reason"])
        for scope in RevocationEvent.Scope.values:
            for reason in RevocationEvent.Reason.values:
                family.add_metric([scope, reason], counts.pop((scope, reason), 0))
        for (scope, reason), n in sorted(counts.items()):  # values added to the choices later
            family.add_metric([scope, reason], n)
        yield family

    def _feed_lag(self, using: str) -> Iterator[Metric]:
        lag = 0.0
        if connections[using].vendor == "postgresql":  # SQLite commits audit rows in id order: never held back
            with connections[using].cursor() as cur:
                cur.execute(_FEED_LAG_SQL, [RevocationEvent._meta.db_table])
                (value,) = cur.fetchone()
            lag = float(value or 0.0)
        yield GaugeMetricFamily("tokenversion_feed_lag_seconds", "How long the feed's settled cursor has been "
                                "held back: age of the oldest open transaction that wrote an audit row (0: "
                                "none).", value=lag)

    def _instances(self) -> Iterator[Metric]:
        from .enforcement import instance_states

        family = GaugeMetricFamily("tokenversion_service_instances", "Service processes by state: enforcing (reported "
                                   "within SERVICE_LIVE_WINDOW and enforcing the latest revocation), behind (live, "
                                   "not yet enforcing it), silent (stopped reporting, within SERVICE_FORGET_AFTER).",
                                   labels=["state"])
        counts = Tally(state for _, state in instance_states())
        for state in ("enforcing", "behind", "silent"):
            family.add_metric([state], counts.get(state, 0))
        yield family

    def _publisher(self, using: str, redis_url: str, channel: str) -> Iterator[Metric]:
        from .publish import redis_client, status_key

        client = redis_client(redis_url)
        try:
            raw = client.get(status_key(channel))
        except Exception as exc:
            logger.warning("metrics: cannot read the publisher's status from Redis (%s)", type(exc).__name__)
            return
        finally:
            client.close()
        lag = float("inf")
        backlog = None
        if raw is not None:
            try:
                status = json.loads(raw)
                lag = max(0.0, time.time() - float(status["as_of"]))
                safe = int(status["safe"])
            except (ValueError, KeyError, TypeError):
                logger.warning("metrics: the publisher's status in Redis is not readable")
                return
            backlog = RevocationEvent.objects.using(using).filter(id__gt=safe).count()
        yield GaugeMetricFamily("tokenversion_publisher_lag_seconds", "Seconds since the certifying "
                                "publisher's last heartbeat read the audit trail (+Inf: never heard of).",
                                value=lag)
        if backlog is not None:
            yield GaugeMetricFamily("tokenversion_publisher_backlog_rows", "Audit rows committed beyond the "
                                    "publisher's last certified cursor (not yet covered by a heartbeat).",
                                    value=backlog)


_collector = ProviderCollector()


@transaction.non_atomic_requests  # the settled horizon must not be read inside a long snapshot (feedlog)
def metrics_view(request: HttpRequest) -> HttpResponse:
    """``/metrics`` on the provider: the service metrics of this process (every worker's in multi-process
    mode), then the figures computed now from the database and Redis."""
    try:
        return metrics_response(request, extra=[_collector])
    except DatabaseError as exc:
        logger.warning("metrics: database unavailable (%s)", type(exc).__name__)
        return HttpResponse(b"database unavailable\n", status=503, content_type="text/plain",
                            headers={"Retry-After": "1"})
