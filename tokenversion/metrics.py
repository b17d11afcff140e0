"""Prometheus metrics for a service: decisions by outcome, store freshness, verified-token cache use.

Needs the ``metrics`` extra (``pip install 'django-tokenversion[metrics]'``, which brings ``prometheus-client``)
and ``TOKENVERSION["METRICS"] = True``. The runtime then gives the verifier a ``ServiceMetrics`` observer
(``core.verifier`` stays framework-free: it only calls a callable with an outcome code). Exposed by
``metrics_view``, which a service adds to its URLs; it answers only a bearer token listed in
``METRICS_SECRETS`` (none listed: 404, nothing is exposed). ``docs/operations.md`` lists every metric.

The hot path pays one tally per request (a dict lookup and ``next`` on an ``itertools.count``, atomic under
the GIL); the tallies and everything else (store staleness, map size, cache counts) are copied into the
Prometheus metrics by a thread of each process every ``SYNC_INTERVAL``, and at each scrape by the process
that answers. That copy is what makes gunicorn's
multi-process mode right: with ``PROMETHEUS_MULTIPROC_DIR`` set, each worker writes its values to that
directory, and a scrape answered by any worker reads all of them (counters summed, store gauges the worst
live worker's).

Labels are small and bounded: an outcome and an error code, never a subject, session, token or client.
"""

from __future__ import annotations

import hmac
import itertools
import logging
import os
import threading
import weakref
from collections.abc import Iterable
from typing import Any

from django.http import Http404, HttpRequest, HttpResponse, HttpResponseNotAllowed

try:
    from prometheus_client import (
        CONTENT_TYPE_LATEST,
        REGISTRY,
        CollectorRegistry,
        Counter,
        Gauge,
        generate_latest,
        multiprocess,
    )
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError("tokenversion.metrics needs prometheus-client: pip install 'django-tokenversion[metrics]'") \
        from exc

from . import runtime as _runtime_module
from .conf import get_settings
from .core.verifier import ACCEPTED

logger = logging.getLogger("tokenversion")

SYNC_INTERVAL = 1.0  # seconds between copies of store and cache figures into the metrics (per process)

# Outcome per code; a code not listed (a custom refusal) is counted as "other".
OUTCOMES = {
    ACCEPTED: "accepted",
    "invalid_request": "malformed",  # 400: Bearer with no token or several values
    "token_invalid": "rejected",
    "token_expired": "rejected",
    "token_revoked": "rejected",
    "token_missing_claim": "rejected",
    "revocation_store_unavailable": "unavailable",  # 503s
    "keys_unavailable": "unavailable",
    "internal_error": "unavailable",
    "unavailable": "unavailable",
}

REQUESTS = Counter("tokenversion_requests", "Bearer-token decisions by outcome (accepted, rejected, malformed, "
                   "unavailable) and code (the error code of the answer's body).", ["outcome", "code"])
CACHE_LOOKUPS = Counter("tokenversion_token_cache_lookups", "Lookups in the verified-token cache.")
CACHE_HITS = Counter("tokenversion_token_cache_hits", "Verified-token cache hits (no signature check needed).")
# The store's metrics are labelled with its class, so a process without a remote store (the provider's
# database store) exposes none of them rather than a misleading 0.
STORE_STALENESS = Gauge("tokenversion_store_staleness_seconds", "Seconds since the remote store was last "
                        "proven fresh (the worst live worker's).", ["store"], multiprocess_mode="livemax")
STORE_MAX_STALENESS = Gauge("tokenversion_store_max_staleness_seconds", "The remote store's staleness bound: "
                            "beyond it, requests are refused with 503.", ["store"], multiprocess_mode="livemax")
MAP_ENTRIES = Gauge("tokenversion_store_map_entries", "Entries in the remote store's revocation map, by kind "
                    "(the largest live worker's).", ["store", "kind"], multiprocess_mode="livemax")
MAP_OVERFLOWED = Gauge("tokenversion_store_map_overflowed", "1 when the revocation map outgrew its bound (the "
                       "store then refuses to answer from it).", ["store"], multiprocess_mode="livemax")
STORE_FEED_ERRORS = Counter("tokenversion_store_feed_errors", "Failed rounds of the remote store's feed client.",
                            ["store"])
STORE_SNAPSHOTS = Counter("tokenversion_store_snapshots", "Snapshots the remote store loaded (start, cursor "
                          "expired, map overflow).", ["store"])
# Service reports (REPORT_URL; tokenversion.reporting): present only in a process whose reporter exists.
REPORTS_SENT = Counter("tokenversion_reports_sent", "Service reports the provider accepted (202).")
REPORTS_FAILED = Counter("tokenversion_reports_failed", "Service reports not accepted: provider unreachable, "
                         "5xx, 429 (rate limited), 401 (key refused) or 400/413/415 (refused for good).")
REPORT_USES_SENT = Counter("tokenversion_report_uses_sent", "Revoked-token uses delivered to the provider.")
REPORT_USES_DROPPED = Counter("tokenversion_report_uses_dropped", "Revoked-token uses lost before delivery: the "
                              "queue was full (REPORT_QUEUE_SIZE) or the provider refused their report.")
REPORT_QUEUE = Gauge("tokenversion_report_queue_length", "Revoked-token uses waiting to be reported (summed over "
                     "live workers).", multiprocess_mode="livesum")


def outcome_of(code: str) -> str:
    return OUTCOMES.get(code, "other")


class ServiceMetrics:
    """The verifier's observer: counts each decision; a thread copies the runtime's figures every second."""

    def __init__(self, runtime: Any) -> None:
        self.runtime = runtime
        self._tallies: dict[str, itertools.count] = {}  # outcome -> requests so far, counted in the request
        self._copied: dict[str, int] = {}  # outcome -> what REQUESTS has been given already
        self._sync_lock = threading.Lock()
        self._seen = {"lookups": 0, "hits": 0, "feed_errors": 0, "snapshots": 0, "reports_sent": 0,
                      "reports_failed": 0, "uses_sent": 0, "uses_dropped": 0}
        self._started = False
        self._closed = threading.Event()
        ref = weakref.WeakMethod(self._forked)
        os.register_at_fork(after_in_child=lambda: (m := ref()) is not None and m())

    def __call__(self, outcome: str) -> None:
        # ``next`` on an ``itertools.count`` is one C call under the GIL: atomic, no lock, about a tenth of
        # a prometheus-client increment (bench/metrics_overhead.py). The sum reaches REQUESTS in ``sync``.
        tally = self._tallies.get(outcome)
        if tally is None:
            tally = self._tallies.setdefault(outcome, itertools.count())
        next(tally)
        if not self._started:
            self._start()

    def _start(self) -> None:
        """The copying thread, started by the first request of each process (threads do not survive fork)."""
        with self._sync_lock:
            if self._started:
                return
            self._started = True
        ref = weakref.ref(self)
        closed = self._closed

        def run() -> None:
            while not closed.wait(SYNC_INTERVAL):
                observer = ref()
                if observer is None:
                    return
                observer.sync()
                del observer

        threading.Thread(target=run, name="tokenversion-metrics", daemon=True).start()

    def _forked(self) -> None:
        self._started = False
        self._sync_lock = threading.Lock()

    def close(self) -> None:
        """The runtime is being replaced: hand over the last tallies, stop the thread."""
        self.sync()
        self._closed.set()

    def sync(self) -> None:
        """Copy the cache counts and the store's state into the metrics; never raises."""
        with self._sync_lock:
            try:
                self._copy()
            except Exception:
                logger.debug("metrics: copying store and cache figures failed", exc_info=True)

    def _copy(self) -> None:
        for outcome, tally in list(self._tallies.items()):
            total = _count_value(tally)
            delta = total - self._copied.get(outcome, 0)
            if delta > 0:
                REQUESTS.labels(outcome_of(outcome), outcome).inc(delta)
                self._copied[outcome] = total
        runtime = self.runtime
        validator = runtime._validator  # never built here: a scrape must not start a store or fetch keys
        if validator is not None:
            self._add(CACHE_LOOKUPS, "lookups", getattr(validator, "cache_lookups", 0))
            self._add(CACHE_HITS, "hits", getattr(validator, "cache_hits", 0))
        reporter = getattr(runtime, "_reporter", None)
        if reporter is not None:
            self._add(REPORTS_SENT, "reports_sent", reporter.stats["reports_sent"])
            self._add(REPORTS_FAILED, "reports_failed", reporter.stats["reports_failed"])
            self._add(REPORT_USES_SENT, "uses_sent", reporter.stats["uses_sent"])
            self._add(REPORT_USES_DROPPED, "uses_dropped", reporter.uses_dropped)
            REPORT_QUEUE.set(reporter.queue_length)
        store = runtime._store
        staleness = getattr(store, "staleness", None)
        if staleness is None:
            return  # a store without freshness (the provider's database store)
        name = type(store).__name__
        STORE_STALENESS.labels(name).set(staleness())
        STORE_MAX_STALENESS.labels(name).set(getattr(store, "max_staleness", float("nan")))
        revocation_map = getattr(store, "map", None)
        if revocation_map is not None:
            for kind, n in revocation_map.counts().items():
                MAP_ENTRIES.labels(name, kind).set(n)
            MAP_OVERFLOWED.labels(name).set(1 if revocation_map.overflowed else 0)
        stats = getattr(store, "stats", {})
        self._add(STORE_FEED_ERRORS.labels(name), "feed_errors", stats.get("feed_errors", 0))
        self._add(STORE_SNAPSHOTS.labels(name), "snapshots", stats.get("snapshots", 0))

    def _add(self, counter: Any, key: str, value: int) -> None:
        """Add what ``value`` (a running count) grew by since the last copy; a count that went back belongs to
        a replaced validator or store, which started from 0."""
        seen = self._seen[key]
        delta = value - seen if value >= seen else value
        if delta > 0:
            counter.inc(delta)
        self._seen[key] = value


def _count_value(tally: itertools.count) -> int:
    """How many times ``next`` was called on an ``itertools.count()`` (it has no reader; its repr is
    ``count(N)``)."""
    return int(repr(tally)[6:-1])


def current_observer() -> ServiceMetrics | None:
    """The observer of this process's runtime, if it has been built with one."""
    runtime = _runtime_module._runtime
    verifier = runtime._verifier if runtime is not None else None
    observer = getattr(verifier, "observer", None)
    return observer if isinstance(observer, ServiceMetrics) else None


def multiprocess_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or os.environ.get("prometheus_multiproc_dir") or None


def exposition(extra: Iterable[Any] = ()) -> bytes:
    """The text exposition: this process's metrics (every worker's in multi-process mode), then ``extra``
    collectors (figures computed at scrape time, the same whichever worker answers)."""
    observer = current_observer()
    if observer is not None:
        observer.sync()
    if multiprocess_dir():
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    else:
        registry = REGISTRY
    body = generate_latest(registry)
    extra = list(extra)
    if extra:
        scrape_time = CollectorRegistry(auto_describe=False)
        for collector in extra:
            scrape_time.register(collector)
        body += generate_latest(scrape_time)
    return body


def authorized(request: HttpRequest) -> bool:
    """``Authorization: Bearer <one of METRICS_SECRETS>``, compared in constant time."""
    scheme, _, token = request.META.get("HTTP_AUTHORIZATION", "").partition(" ")
    token = token.strip().encode()
    ok = False
    for secret in get_settings().metrics_secrets:
        ok |= hmac.compare_digest(token, secret.encode())
    return scheme.lower() == "bearer" and ok


def metrics_response(request: HttpRequest, extra: Iterable[Any] = ()) -> HttpResponse:
    if not get_settings().metrics_secrets:
        raise Http404("metrics are not enabled (METRICS_SECRETS is empty)")
    if request.method not in ("GET", "HEAD"):
        return HttpResponseNotAllowed(["GET", "HEAD"])
    if not authorized(request):
        return HttpResponse(b"bearer token required\n", status=401, content_type="text/plain",
                            headers={"WWW-Authenticate": 'Bearer realm="metrics"'})
    response = HttpResponse(exposition(extra), content_type=CONTENT_TYPE_LATEST)
    response["Cache-Control"] = "no-store"
    return response


def metrics_view(request: HttpRequest) -> HttpResponse:
    """``/metrics`` for a service: ``path("metrics", tokenversion.metrics.metrics_view)``."""
    return metrics_response(request)
