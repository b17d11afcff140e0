"""The revocation feed over HTTP, for services that do not share the provider's database.

Three ``GET`` endpoints, authenticated with ``X-TokenVersion-Secret`` (one of ``FEED_SECRETS``):

- ``/tokenversion/feed/snapshot?since=<unix seconds>[&limit=n]``: every key revoked since ``since``, folded,
  and the cursor to continue from; more pages with ``?page=<next_page>``;
- ``/tokenversion/feed/events?after=<cursor>[&from=<id>][&have=<id>][&wait=<s>][&limit=n]``: the audit rows
  after the cursor, in id order, with long-poll (``wait``); the polls woken by one change share one read;
- ``/tokenversion/feed/stream?after=<cursor>[&beat=<s>]``: the same answers as server-sent events on one
  open response, one frame per change and at least one per ``beat`` (``fanout``);
- ``/tokenversion/feed/versions[?page=<next_page>][&limit=n]``: every subject whose ``token_version`` is above 0
  (whenever it was bumped), and the cursor to follow ``/feed/events`` from: the full map that Keycloak's
  mapper keeps in its cached mode (``snapshot`` only holds the keys revoked in its window).

Protocol and proofs: ``feedlog`` (the settled horizon), ``core.feed_protocol`` (the cursor) and
docs/scaling.md. In short, an events answer holds **every visible row with id > from** (up to ``limit``;
``more`` says the page is full), and a cursor that only moves up to a *settled* id. Rows above the cursor
are sent again on the next call: applying them is idempotent, and it is what makes a row that commits late
(a lower id committing after a higher one) impossible to miss.

``as_of`` is the time, in seconds after the provider received the request, at which the rows were read:
every revocation committed before that instant is in this answer or was delivered earlier (when the answer
is the last page, ``more`` false). A service measures its freshness from it without comparing clocks.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import functools
import json
import logging
import re
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from django.db import DatabaseError, router, transaction
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse

from tokenversion.conf import get_settings
from tokenversion.core.feed_protocol import Cursor, CursorError
from tokenversion.core.revocation_map import parse_time

from . import fanout, feedlog
from .conf import get_server_settings
from .http import HttpError, json_response, machine_endpoint, require_secret
from .models import RevocationEvent

logger = logging.getLogger("tokenversion.server")

# A first page or an events answer waits at least this long for in-flight revocations to finish.
SETTLE_MIN = 0.25
SNAPSHOT_SETTLE = 2.0
MAX_QUERY_STRING = 2048
MAX_SINCE_AGE = 7 * 86400
_INT = re.compile(r"[0-9]{1,19}")  # ASCII only: \d and int() accept any script's digits
_SECONDS = re.compile(r"[0-9]{1,12}(\.[0-9]{1,9})?")


def feed_using() -> str:
    """The primary: the settled horizon needs the writer's sequence and locks (see ``feedlog``)."""
    return router.db_for_write(RevocationEvent)


def feed_endpoint(view: Callable[[HttpRequest], HttpResponse]) -> Callable[[HttpRequest], HttpResponse]:
    """``GET`` only, the feed secret first, then precise 4xx answers; database outages are 503."""

    @functools.wraps(view)
    def checked(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        require_secret(request, get_server_settings().feed_secrets)
        if len(request.META.get("QUERY_STRING", "")) > MAX_QUERY_STRING:
            raise HttpError(400, "invalid_request", "query string too long")
        return view(request, *args, **kwargs)

    # Never inside ATOMIC_REQUESTS (feedlog).
    return transaction.non_atomic_requests(machine_endpoint(checked, method="GET"))


def _params(request: HttpRequest, allowed: set[str]) -> dict[str, str]:
    params: dict[str, str] = {}
    for key in request.GET:
        values = request.GET.getlist(key)
        if key not in allowed:
            raise HttpError(400, "invalid_request", f"unknown parameter {key!r}; allowed: {', '.join(sorted(allowed))}")
        if len(values) != 1:
            raise HttpError(400, "invalid_request", f"{key} must be given once")
        params[key] = values[0]
    return params


def _int(params: dict[str, str], key: str, default: int | None = None, low: int = 0,
         high: int = 2**63 - 1) -> int | None:
    value = params.get(key)
    if value is None:
        return default
    if not _INT.fullmatch(value) or not low <= int(value) <= high:
        raise HttpError(400, "invalid_request", f"{key} must be an integer from {low} to {high}")
    return int(value)


def _seconds(params: dict[str, str], key: str, default: float, high: float) -> float:
    value = params.get(key)
    if value is None:
        return default
    if not _SECONDS.fullmatch(value) or float(value) > high:
        raise HttpError(400, "invalid_request", f"{key} must be a number of seconds from 0 to {high:g}")
    return float(value)


def _page_size(params: dict[str, str]) -> int:
    size = get_server_settings().feed_page_size
    return _int(params, "limit", size, 1, size)


@feed_endpoint
def snapshot_view(request: HttpRequest) -> HttpResponse:
    started = time.monotonic()
    params = _params(request, {"since", "page", "limit"})
    limit = _page_size(params)
    using = feed_using()
    if "page" in params:
        if "since" in params:
            raise HttpError(400, "invalid_request", "give either since or page, not both")
        cursor, since, scope, after = _read_page_token(params["page"])
        as_of = None
    else:
        if "since" not in params:
            raise HttpError(400, "invalid_request", "since (unix seconds) is required")
        since = _seconds(params, "since", 0.0, 1e11)
        now = time.time()
        if since < now - max(MAX_SINCE_AGE, 2 * get_settings().max_token_lifetime) or since > now + 86400:
            raise HttpError(400, "invalid_request", "since must be within the last 7 days")
        as_of = time.monotonic() - started
        horizon = feedlog.settle(using, started + SNAPSHOT_SETTLE)
        if horizon is None:
            raise HttpError(503, "busy", "revocations in flight did not finish; retry", {"Retry-After": "1"})
        cursor, scope, after = feedlog.cursor_at(using, horizon), "user", None
    entries, next_key = feedlog.snapshot_page(using, feedlog.EPOCH + dt.timedelta(seconds=since), scope, after,
                                                  limit)
    next_page = None if next_key is None else _page_token(cursor, since, *next_key)
    body: dict[str, Any] = {"cursor": str(cursor), "entries": [e.to_wire() for e in entries],
                            "next_page": next_page, "server_time": time.time()}
    if as_of is not None:
        body["as_of"] = round(as_of, 6)
    return json_response(body)


@feed_endpoint
def feed_events_view(request: HttpRequest) -> HttpResponse:
    started = time.monotonic()
    conf = get_server_settings()
    params = _params(request, {"after", "from", "have", "wait", "limit"})
    if "after" not in params:
        raise HttpError(400, "invalid_request", "after (a cursor from the snapshot or a previous answer) is required")
    try:
        cursor = Cursor.parse(params["after"])
    except CursorError as exc:
        raise HttpError(400, "invalid_cursor", str(exc)) from None
    start = _int(params, "from", cursor.safe, cursor.safe)
    have = _int(params, "have", start, cursor.safe)
    wait = _seconds(params, "wait", 0.0, conf.feed_max_wait)
    limit = _page_size(params)
    if wait > 0:
        with long_poll_slot(conf.feed_max_long_polls):
            return _events(started, cursor, start, have, wait, limit)
    return _events(started, cursor, start, have, wait, limit)


class LongPollSlots:
    """At most ``FEED_MAX_LONG_POLLS`` long-polls wait at once in this process.

    Each waiting long-poll holds a worker thread; without a bound, enough feed clients hold every thread
    and the claims endpoint (Keycloak's mappers, at every token issue) starves. Past the bound a long-poll
    is answered 503 ``feed_busy`` with ``Retry-After`` at once, before any query: the service's store
    counts it as a feed error and backs off. A poll without ``wait`` is never refused.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.busy = 0

    def try_acquire(self, limit: int) -> bool:
        with self._lock:
            if self.busy >= limit:
                return False
            self.busy += 1
            return True

    def release(self) -> None:
        with self._lock:
            self.busy -= 1


_long_polls = LongPollSlots()
LONG_POLL_RETRY_AFTER = 1


@contextlib.contextmanager
def long_poll_slot(limit: int) -> Iterator[None]:
    if not _long_polls.try_acquire(limit):
        raise HttpError(503, "feed_busy", f"{limit} long-polls already wait in this provider process; retry, "
                                          "or poll without wait", {"Retry-After": str(LONG_POLL_RETRY_AFTER)})
    try:
        yield
    finally:
        _long_polls.release()


def _events(started: float, cursor: Cursor, start: int, have: int, wait: float, limit: int) -> HttpResponse:
    using = feed_using()
    if not feedlog.cursor_is_valid(using, cursor, feedlog.allocated(using)):
        raise HttpError(410, "cursor_expired", "this cursor does not belong to the provider's current data; "
                                               "take a new snapshot")
    deadline = started + wait
    if wait > 0:
        watcher_for(using).wait(lambda stamp: stamp[1] > have or stamp[0] > cursor.safe, deadline)
    # One read per position for every poll woken by the same change (fanout.SharedPages).
    page = fanout.shared_pages.get(using, cursor, start, limit, started,
                                   max(deadline, time.monotonic() + SETTLE_MIN))
    return fanout.page_response(page, started)


@feed_endpoint
def stream_view(request: HttpRequest) -> HttpResponse:
    """``/feed/stream?after=<cursor>[&beat=<s>]``: server-sent events, one frame per change and at least one
    every ``beat`` seconds (default 0.5), each frame an events answer with its own ``as_of`` (``fanout``)."""
    started = time.monotonic()
    conf = get_server_settings()
    if conf.feed_max_streams <= 0 or not request.META.get("wsgi.multithread"):
        # An open stream holds a worker thread for minutes: only where threads were sized for it. The
        # service long-polls /feed/events instead (a 501 tells it the stream is not offered here).
        raise HttpError(501, "streams_disabled", "this provider does not serve feed streams (FEED_MAX_STREAMS "
                                                 "is 0, or the server has no threads); long-poll /feed/events")
    params = _params(request, {"after", "beat"})
    if "after" not in params:
        raise HttpError(400, "invalid_request", "after (a cursor from the snapshot or a previous answer) is required")
    try:
        cursor = Cursor.parse(params["after"])
    except CursorError as exc:
        raise HttpError(400, "invalid_cursor", str(exc)) from None
    beat = _seconds(params, "beat", 0.5, conf.feed_max_wait)
    if beat < 0.05:
        raise HttpError(400, "invalid_request", "beat must be at least 0.05 seconds")
    using = feed_using()
    if not feedlog.cursor_is_valid(using, cursor, feedlog.allocated(using)):
        raise HttpError(410, "cursor_expired", "this cursor does not belong to the provider's current data; "
                                               "take a new snapshot")
    if not fanout.stream_slots.acquire(conf.feed_max_streams):
        raise HttpError(503, "busy", "too many open feed streams on this provider process; retry or long-poll",
                        {"Retry-After": "1"})
    response = StreamingHttpResponse(fanout.Stream(using, cursor, started, beat, conf.feed_stream_max_age),
                                     content_type="text/event-stream")
    response["Cache-Control"] = "no-store"
    response["X-Accel-Buffering"] = "no"  # nginx: pass each frame on at once
    return response


@feed_endpoint
def versions_view(request: HttpRequest) -> HttpResponse:
    """``/feed/versions``: every ``SubjectVersion`` with ``token_version > 0``, by (issuer, subject), paged.

    The first page settles the horizon exactly as the snapshot does, then reads: every bump with an audit id at
    or below the cursor has committed, so its row is in these pages (its subject-version row is written in the
    same transaction as its audit row); every later bump has an audit id above the cursor, so it is in the
    events that follow it. A row read on a later page may already hold a later bump: versions only grow and the
    reader keeps the larger value, so that is harmless. ``as_of`` (first page) is taken before the horizon
    is read, as in the snapshot.
    """
    started = time.monotonic()
    params = _params(request, {"page", "limit"})
    limit = _page_size(params)
    using = feed_using()
    as_of: float | None = None
    if "page" in params:
        cursor, after = _read_versions_token(params["page"])
    else:
        as_of = time.monotonic() - started
        horizon = feedlog.settle(using, started + SNAPSHOT_SETTLE)
        if horizon is None:
            raise HttpError(503, "busy", "revocations in flight did not finish; retry", {"Retry-After": "1"})
        cursor, after = feedlog.cursor_at(using, horizon), None
    rows, next_key = feedlog.versions_page(using, after, limit)
    body: dict[str, Any] = {
        "cursor": str(cursor),
        "versions": [{"issuer": issuer, "sub": subject, "token_version": version}
                     for issuer, subject, version in rows],
        "next_page": None if next_key is None else _versions_token(cursor, next_key),
        "server_time": time.time(),
    }
    if as_of is not None:
        body["as_of"] = round(as_of, 6)
    return json_response(body)


def _versions_token(cursor: Cursor, key: tuple[str, str]) -> str:
    raw = json.dumps({"c": str(cursor), "k": list(key)}, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode("utf-8")).decode("ascii").rstrip("=")


def _read_versions_token(token: str) -> tuple[Cursor, tuple[str, str]]:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        data = json.loads(raw.decode("utf-8"))
        cursor = Cursor.parse(data["c"])
        issuer, subject = data["k"]
        if len(data) != 2 or not isinstance(issuer, str) or not isinstance(subject, str) \
                or len(issuer) > 255 or len(subject) > 255:
            raise ValueError("bad page token")
    except (ValueError, TypeError, KeyError, RecursionError, CursorError, AttributeError):
        raise HttpError(400, "invalid_request", "page is not a page token from this endpoint") from None
    return cursor, (issuer, subject)


def _page_token(cursor: Cursor, since: float, scope: str, key: tuple[str, str]) -> str:
    raw = json.dumps({"c": str(cursor), "s": since, "p": scope, "k": list(key)}, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode("utf-8")).decode("ascii").rstrip("=")


def _read_page_token(token: str) -> tuple[Cursor, float, str, tuple[str, str]]:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        data = json.loads(raw.decode("utf-8"))
        cursor = Cursor.parse(data["c"])
        since = parse_time(data["s"], "since")
        scope = data["p"]
        issuer, key = data["k"]
        if scope not in feedlog.SNAPSHOT_SCOPES or not isinstance(issuer, str) or not isinstance(key, str):
            raise ValueError("bad page token")
        if len(data) != 4 or len(issuer) > 255 or len(key) > 255:
            raise ValueError("bad page token")
    except (ValueError, TypeError, KeyError, RecursionError, CursorError):
        raise HttpError(400, "invalid_request", "page is not a page token from this endpoint") from None
    return cursor, since, scope, (issuer, key)


class Watcher:
    """One thread per process and database that polls the audit log's high-water marks while requests are
    long-polling, and wakes them when something changes. Waiting requests cost no queries of their own, so
    the database load of idle services does not grow with their number. It stops after a second without
    waiters, closing its database connection."""

    IDLE_STOP = 1.0

    def __init__(self, using: str) -> None:
        self.using = using
        self.cond = threading.Condition()
        self.stamp: tuple[int, int] | None = None  # (highest id handed out, highest id visible)
        self.waiters = 0
        self.poked = False
        self.stopping = False
        self.thread: threading.Thread | None = None

    def wait(self, predicate: Callable[[tuple[int, int]], bool], deadline: float) -> bool:
        with self.cond:
            self.waiters += 1
            if self.thread is None:
                self.stamp, self.stopping = None, False
                self.thread = threading.Thread(target=self._run, name=f"tokenversion-feed-{self.using}",
                                               daemon=True)
                self.thread.start()
            try:
                while True:
                    if self.stamp is not None and predicate(self.stamp):
                        return True
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        return False
                    self.cond.wait(remaining)
            finally:
                self.waiters -= 1

    def poke(self) -> None:
        with self.cond:
            self.poked = True
            self.cond.notify_all()

    def stop(self) -> None:
        with self.cond:
            thread, self.stopping = self.thread, True
            self.cond.notify_all()
        if thread is not None:
            thread.join(5)

    def _run(self) -> None:
        from django.db import connections

        idle_since: float | None = None
        failed = False
        try:
            while True:
                try:
                    stamp = (feedlog.allocated(self.using), feedlog.max_visible(self.using))
                    failed = False
                except DatabaseError:
                    if not failed:
                        logger.warning("feed watcher: database unavailable")
                    failed, stamp = True, None
                    connections[self.using].close()
                with self.cond:
                    if stamp is not None and stamp != self.stamp:
                        self.stamp = stamp
                        self.cond.notify_all()
                    if self.waiters:
                        idle_since = None
                    elif idle_since is None:
                        idle_since = time.monotonic()
                    if self.stopping or (idle_since is not None and time.monotonic() - idle_since > self.IDLE_STOP):
                        self.thread = None
                        return
                    if not self.poked:
                        self.cond.wait(get_server_settings().feed_poll_interval)
                    self.poked = False
        finally:
            connections[self.using].close()


_watchers: dict[str, Watcher] = {}
_watchers_lock = threading.Lock()


def watcher_for(using: str) -> Watcher:
    with _watchers_lock:
        if using not in _watchers:
            _watchers[using] = Watcher(using)
        return _watchers[using]


def stop_watchers() -> None:
    """Stop every watcher thread (tests; they also stop by themselves when idle)."""
    for watcher in list(_watchers.values()):
        watcher.stop()


def wake_long_polls(**_: Any) -> None:
    """``revocation_committed`` receiver (connected in ``apps.ready``): a revocation committed in this process
    wakes the long-polls now rather than at the next tick. Nothing to do while no long-poll is waiting."""
    for watcher in list(_watchers.values()):
        watcher.poke()

