"""What the remote stores share: the in-process map, the HTTP feed client, and bounded staleness.

A remote store answers ``view`` from a ``RevocationMap`` kept current by a background thread. It knows at
every instant **how fresh** the map is: ``fresh_at`` is a reading of this process's monotonic clock such
that every revocation committed before that instant has been applied. It moves forward only on proof:

- a complete HTTP feed answer (``as_of`` says when, after the provider received the request, it read the
  trail; the request was sent at ``t``, so that instant is no earlier than ``t + as_of`` here. No clocks are
  compared);
- for ``RedisStore``, a heartbeat of the certifying publisher received with no numbered message missing
  (``stores.redis``).

``view`` answers from the map only while ``now - fresh_at <= max_staleness`` (default 1 s). Otherwise it
raises ``StoreUnavailable`` (HTTP 503), or, with ``fallback="catch_up"``, makes one synchronous feed round
trip first, or with ``fallback="<dotted.path.Store>"`` asks that store. It never answers from a map it
cannot prove fresh.
"""

from __future__ import annotations

import http.client
import importlib
import json
import logging
import math
import os
import threading
import time
import urllib.error
import urllib.request
import weakref
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode, urlparse

from ..core.errors import ConfigurationError, StoreUnavailable
from ..core.feed_protocol import Cursor, CursorError
from ..core.revocation import RevocationView
from ..core.revocation_map import DEFAULT_MARGIN, FeedEvent, RevocationMap, WireError, parse_event, window_for

logger = logging.getLogger("tokenversion")

MAX_RESPONSE_BYTES = 64 * 1024 * 1024
SECRET_HEADER = "X-TokenVersion-Secret"
PRUNE_EVERY = 10.0


def import_object(dotted: str) -> Any:
    """The object at ``package.module.Name`` (what Django's ``import_string`` does, without Django)."""
    module, _, name = dotted.rpartition(".")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError) as exc:
        raise ConfigurationError(f"cannot import {dotted!r}: {exc}") from None


class FeedError(Exception):
    """The feed could not be read, or answered something that is not the feed protocol."""


class CursorExpired(FeedError):
    """410: the cursor belongs to data the provider no longer has (restored database); take a snapshot."""


class StreamUnsupported(FeedError):
    """404 or 501 on ``/feed/stream``: a provider from before streams, or one that does not serve them
    (``FEED_MAX_STREAMS`` 0); long-poll instead."""


class StreamSilent(FeedError):
    """The stream was opened but no frame arrived in time, though the provider sends one at once: most likely
    a proxy that buffers responses. Long-poll instead."""


MAX_FRAME_BYTES = 16 * 1024 * 1024


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A redirect would carry the secret header to wherever it points: refuse it."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        raise urllib.error.HTTPError(req.full_url, code, f"redirect to {newurl} refused", headers, fp)


class FeedClient:
    """The HTTP feed's client (stdlib only: the validating side has no HTTP library dependency)."""

    def __init__(self, url: str, secret: str, timeout: float = 5.0) -> None:
        self.base = url.rstrip("/")
        self.secret = secret
        self.timeout = timeout
        self._opener = urllib.request.build_opener(_NoRedirects())

    def _get(self, path: str, params: dict[str, Any], wait: float = 0.0) -> dict[str, Any]:
        query = urlencode({k: v for k, v in params.items() if v is not None})
        # The scheme is http(s), checked when the store is built (check_common_options).
        request = urllib.request.Request(f"{self.base}/{path}?{query}",  # noqa: S310
                                         headers={SECRET_HEADER: self.secret, "Accept": "application/json"})
        try:
            with self._opener.open(request, timeout=self.timeout + wait) as response:
                body = response.read(MAX_RESPONSE_BYTES + 1)
        except urllib.error.HTTPError as exc:
            code = _error_code(exc)
            exc.close()
            if exc.code == 410:
                raise CursorExpired(f"feed answered 410 {code}") from None
            raise FeedError(f"feed answered {exc.code} {code}") from None
        except (OSError, http.client.HTTPException, ValueError) as exc:  # URLError, timeouts, resets
            raise FeedError(f"feed unreachable: {type(exc).__name__}: {exc}") from None
        if len(body) > MAX_RESPONSE_BYTES:
            raise FeedError("feed answer too large")
        try:
            data = json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError):
            raise FeedError("feed answer is not JSON") from None
        if not isinstance(data, dict):
            raise FeedError("feed answer is not an object")
        return data

    def snapshot(self, since: float | None = None, page: str | None = None) -> dict[str, Any]:
        data = self._get("snapshot", {"since": None if since is None else f"{since:.6f}", "page": page})
        entries = _parse_list(data.get("entries"), require_id=False)
        next_page = data.get("next_page")
        if next_page is not None and not isinstance(next_page, str):
            raise FeedError("bad next_page")
        return {"cursor": _parse_cursor(data.get("cursor")), "entries": entries, "next_page": next_page,
                "as_of": _parse_seconds(data.get("as_of")) if page is None else None}

    def events(self, after: Cursor, start: int | None, have: int, wait: float) -> dict[str, Any]:
        data = self._get("events", {"after": str(after), "from": start, "have": have,
                                    "wait": f"{wait:.3f}" if wait > 0 else None}, wait)
        events = _parse_list(data.get("events"), require_id=True)
        low = after.safe if start is None else start
        if any(e.id is None or e.id <= low for e in events):
            raise FeedError("feed sent an event at or below the requested position")
        last_id, more = data.get("last_id"), data.get("more")
        if type(last_id) is not int or last_id < low or type(more) is not bool:
            raise FeedError("bad last_id or more")
        cursor = _parse_cursor(data.get("cursor"))
        if cursor.safe < after.safe:
            raise FeedError("feed moved the cursor backwards")
        return {"cursor": cursor, "events": events, "last_id": last_id, "more": more,
                "as_of": _parse_seconds(data.get("as_of"))}


    def stream(self, after: Cursor, beat: float) -> Iterator[dict[str, Any]]:
        """``/feed/stream``: the frames of one open response (server-sent events), parsed and checked like
        events answers, until the provider ends the stream (normal: it does so every few minutes).
        ``as_of`` is None in a frame that proves nothing (a partial page). ``FeedError`` on anything else."""
        query = urlencode({"after": str(after), "beat": f"{beat:.3f}"})
        request = urllib.request.Request(f"{self.base}/stream?{query}",  # noqa: S310 (scheme checked)
                                         headers={SECRET_HEADER: self.secret, "Accept": "text/event-stream"})
        try:
            # The read timeout covers the silence between frames: the provider sends one at least every beat.
            response = self._opener.open(request, timeout=self.timeout + beat)
        except urllib.error.HTTPError as exc:
            code = _error_code(exc)
            exc.close()
            if exc.code == 410:
                raise CursorExpired(f"feed answered 410 {code}") from None
            if exc.code in (404, 501):  # a provider from before streams, or one that does not serve them
                raise StreamUnsupported(f"feed answered {exc.code} {code} on /stream") from None
            raise FeedError(f"feed stream answered {exc.code} {code}") from None
        except (OSError, http.client.HTTPException, ValueError) as exc:
            raise FeedError(f"feed unreachable: {type(exc).__name__}: {exc}") from None
        with response:
            if response.headers.get_content_type() != "text/event-stream":
                raise FeedError("feed stream answer is not text/event-stream")
            position = after
            data: bytes | None = None
            seen = 0
            while True:
                try:
                    line = response.readline(MAX_FRAME_BYTES + 1)
                except (OSError, http.client.HTTPException, ValueError) as exc:
                    if not seen:
                        raise StreamSilent(f"feed stream opened but sent no frame ({type(exc).__name__}): "
                                           "a proxy buffering it?") from None
                    raise FeedError(f"feed stream cut: {type(exc).__name__}: {exc}") from None
                if not line:
                    return  # the provider ended the stream
                if len(line) > MAX_FRAME_BYTES or not line.endswith(b"\n"):
                    raise FeedError("feed stream frame too large or cut")
                if line in (b"\n", b"\r\n"):
                    if data is not None:
                        frame = self._stream_frame(data, position)
                        position = frame["cursor"]
                        data = None
                        seen += 1
                        yield frame
                elif line.startswith(b":"):
                    continue  # a comment
                elif line.startswith(b"data: ") and data is None:
                    data = line[6:]
                else:
                    raise FeedError("feed stream is not one data line per event")

    @staticmethod
    def _stream_frame(raw: bytes, position: Cursor) -> dict[str, Any]:
        try:
            data = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError):
            raise FeedError("feed stream frame is not JSON") from None
        if not isinstance(data, dict):
            raise FeedError("feed stream frame is not an object")
        events = _parse_list(data.get("events"), require_id=True)
        if any(e.id is None or e.id <= position.safe for e in events):
            raise FeedError("feed stream sent an event at or below its position")
        last_id, more, as_of = data.get("last_id"), data.get("more"), data.get("as_of")
        if type(last_id) is not int or last_id < position.safe or type(more) is not bool:
            raise FeedError("bad last_id or more")
        cursor = _parse_cursor(data.get("cursor"))
        if cursor.safe < position.safe:
            raise FeedError("feed moved the cursor backwards")
        return {"cursor": cursor, "events": events, "last_id": last_id, "more": more,
                "as_of": None if as_of is None else _parse_seconds(as_of)}


def _error_code(exc: urllib.error.HTTPError) -> str:
    try:
        data = json.loads(exc.read(4096).decode("utf-8"))
        return str(data.get("error", ""))[:64] if isinstance(data, dict) else ""
    except Exception:
        return ""


def _parse_cursor(value: Any) -> Cursor:
    try:
        return Cursor.parse(value)
    except CursorError:
        raise FeedError("bad cursor in feed answer") from None


def _parse_seconds(value: Any) -> float:
    if type(value) not in (int, float) or not math.isfinite(value) or value < 0:
        raise FeedError("bad as_of in feed answer")
    return float(value)


def _parse_list(value: Any, require_id: bool) -> list[FeedEvent]:
    if not isinstance(value, list):
        raise FeedError("bad event list in feed answer")
    try:
        return [parse_event(item, require_id=require_id) for item in value]
    except WireError as exc:
        raise FeedError(f"bad event in feed answer: {exc}") from None


def _positive(value: Any, name: str) -> float:
    if type(value) not in (int, float) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a positive number of seconds")
    return float(value)


def check_common_options(options: dict[str, Any]) -> list[str]:
    """Problems with the options every remote store takes (for the system check)."""
    problems = []
    url = options.get("feed_url")
    parsed = urlparse(url) if isinstance(url, str) else None
    if parsed is None or parsed.scheme not in ("http", "https") or not parsed.hostname:
        problems.append("feed_url must be the provider's http(s) feed URL, e.g. https://provider/tokenversion/feed")
    secret = options.get("secret")
    if not isinstance(secret, str) or not secret:
        problems.append("secret (one of the provider's FEED_SECRETS) is required")
    for name in ("max_staleness", "timeout"):
        if name in options:
            try:
                _positive(options[name], name)
            except ValueError as exc:
                problems.append(str(exc))
    fallback = options.get("fallback")
    if fallback is not None and not isinstance(fallback, str):
        problems.append('fallback must be None, "catch_up" or the dotted path of a store class')
    return problems


class RemoteStore:
    """The base of ``HttpFeedStore`` and ``RedisStore``: a map, a feed client, a sync thread, freshness."""

    thread_name = "tokenversion-store"

    # The service settings a remote store takes, filled in from them by the runtime (``tokenversion.runtime``)
    # unless STORE_OPTIONS names them; built by hand (FastAPI, a script), pass them as values.
    settings_options: tuple[str, ...] = ("max_token_lifetime", "leeway")

    def __init__(self, feed_url: str, secret: str, max_staleness: float = 1.0, timeout: float = 5.0,
                 poll_wait: float | None = None, fallback: str | None = None,
                 fallback_options: dict[str, Any] | None = None, margin: float = DEFAULT_MARGIN,
                 max_entries: int | None = 1_000_000, startup_wait: float | None = None,
                 autostart: bool = True, max_token_lifetime: float = 3600.0, leeway: float = 5.0) -> None:
        problems = check_common_options({"feed_url": feed_url, "secret": secret, "max_staleness": max_staleness,
                                         "timeout": timeout, "fallback": fallback})
        if problems:
            raise ConfigurationError("; ".join(problems))
        self.max_token_lifetime = float(max_token_lifetime)
        self.leeway = float(leeway)
        self.max_staleness = float(max_staleness)
        self.timeout = float(timeout)
        self.poll_wait = self.max_staleness / 2 if poll_wait is None else float(poll_wait)
        self.startup_wait = self.timeout if startup_wait is None else float(startup_wait)
        self.map = RevocationMap(window_for(self.max_token_lifetime, self.leeway, margin), max_entries)
        self.client = FeedClient(feed_url, secret, self.timeout)
        self.secret = secret
        self.cursor: Cursor | None = None
        self.have = 0
        self.fresh_at: float | None = None
        self.fresh_reached_at: float | None = None  # when fresh_at last moved (monotonic): service reports
        self.stats: dict[str, int] = {"snapshots": 0, "rounds": 0, "feed_errors": 0, "cursor_expired": 0,
                                      "stale_refusals": 0, "catch_ups": 0}
        self._sync_lock = threading.Lock()
        self._fresh_lock = threading.Lock()
        self._ready = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._created = self._last_prune = time.monotonic()
        self._last_error_log = 0.0
        self.fallback = fallback
        self._fallback_store = None
        if fallback not in (None, "catch_up"):
            self._fallback_store = import_object(fallback)(**(fallback_options or {}))
        if autostart:
            self.start()

    # The store interface.

    def view(self, issuer: str, subject: str, session_id: str | None) -> RevocationView:
        if self._thread is None:
            self.start()  # first use, or in a forked child (threads do not survive fork)
        if self.staleness() <= self.max_staleness and not self.map.overflowed:
            return self.map.view(issuer, subject, session_id)
        return self._stale_view(issuer, subject, session_id)

    def invalidate(self, issuer: str, subject: str | None = None, session_id: str | None = None) -> None:
        """Revocations committed in this process reach the map through the feed like any other."""

    # Freshness.

    def staleness(self) -> float:
        fresh_at = self.fresh_at
        return math.inf if fresh_at is None else time.monotonic() - fresh_at

    def mark_fresh(self, instant: float) -> None:
        """Every revocation committed before ``instant`` (this process's monotonic clock) is applied."""
        with self._fresh_lock:
            if self.fresh_at is None or instant > self.fresh_at:
                self.fresh_at = instant
                self.fresh_reached_at = time.monotonic()
        self._ready.set()

    def freshness(self) -> tuple[float, float] | None:
        """For service reports (``tokenversion.reporting``): ``(as_of, reached_at)`` in wall-clock seconds:
        since ``reached_at`` this process has applied every revocation committed before ``as_of``. Both are
        monotonic readings carried to the wall clock through one pair of clock readings, so a wall-clock step
        moves them together. ``None`` before the first proof."""
        with self._fresh_lock:
            fresh_at, reached = self.fresh_at, self.fresh_reached_at
        if fresh_at is None or reached is None:
            return None
        wall, monotonic = time.time(), time.monotonic()
        return wall - (monotonic - fresh_at), wall - (monotonic - reached)

    def _stale_view(self, issuer: str, subject: str, session_id: str | None) -> RevocationView:
        if self.fresh_at is None:
            # The first requests after start wait for the snapshot, up to startup_wait after construction.
            self._ready.wait(max(0.0, self._created + self.startup_wait - time.monotonic()))
        elif self.fallback == "catch_up":
            try:
                self.catch_up(0.0, only_if_stale=True)
            except FeedError as exc:
                logger.warning("synchronous catch-up failed: %s", exc)
        elif self._fallback_store is not None:
            return self._fallback_store.view(issuer, subject, session_id)
        age = self.staleness()
        if age <= self.max_staleness and not self.map.overflowed:
            return self.map.view(issuer, subject, session_id)
        self.stats["stale_refusals"] += 1
        if self.map.overflowed:
            raise StoreUnavailable(f"revocation map over its bound of {self.map.max_entries} entries")
        what = "never synchronised" if math.isinf(age) else f"{age:.2f} s stale"
        raise StoreUnavailable(f"revocation map {what} (bound {self.max_staleness:g} s)")

    # Feed rounds (serialised: the sync thread and a synchronous catch-up never interleave).

    def catch_up(self, wait: float, only_if_stale: bool = False) -> None:
        """Read the feed until its answer is complete, then mark the map fresh as of that read.
        The first time, or after a 410, a snapshot. ``FeedError`` when the feed cannot be read.
        ``only_if_stale``: skip when a round finished while this thread waited for the lock."""
        with self._sync_lock:
            if only_if_stale:
                if self.staleness() <= self.max_staleness:
                    return
                self.stats["catch_ups"] += 1
            try:
                if self.cursor is None:
                    self._load_snapshot()
                else:
                    self._read_events(wait)
            except CursorExpired:
                self.stats["cursor_expired"] += 1
                logger.warning("feed cursor expired (the provider's data changed): taking a new snapshot")
                self.cursor = None
                self._load_snapshot()
            finally:
                if time.monotonic() - self._last_prune > PRUNE_EVERY:
                    self._last_prune = time.monotonic()
                    self.map.prune()

    def _load_snapshot(self) -> None:
        sent = time.monotonic()
        page = self.client.snapshot(since=time.time() - self.map.window)
        fresh = sent + min(page["as_of"], time.monotonic() - sent)
        cursor = page["cursor"]
        self.map.apply_many(page["entries"])
        while page["next_page"]:
            page = self.client.snapshot(page=page["next_page"])
            if page["cursor"] != cursor:
                raise FeedError("snapshot pages disagree on the cursor")
            self.map.apply_many(page["entries"])
        self.cursor, self.have = cursor, cursor.safe
        self.stats["snapshots"] += 1
        self.mark_fresh(fresh)

    def _read_events(self, wait: float) -> None:
        start: int | None = None
        fresh: float | None = None
        while True:
            sent = time.monotonic()
            answer = self.client.events(self.cursor, start, self.have, wait if start is None else 0.0)
            if fresh is None:  # the first page's read is the instant the whole round vouches for
                fresh = sent + min(answer["as_of"], time.monotonic() - sent)
            self.map.apply_many(answer["events"])
            self.cursor = answer["cursor"]
            self.have = max(self.have, answer["last_id"], self.cursor.safe)
            if not answer["more"]:
                break
            start = answer["last_id"]
        self.stats["rounds"] += 1
        self.mark_fresh(fresh)

    def adopt_cursor(self, cursor: Cursor) -> None:
        """A cursor proven by another path (a certified heartbeat): move forward to it, never back."""
        if self.cursor is None or cursor.safe > self.cursor.safe:
            self.cursor = cursor
            self.have = max(self.have, cursor.safe)

    # The thread.

    def start(self) -> None:
        with self._start_lock:
            if self._thread is not None:
                return
            self._stop.clear()
            self._thread = threading.Thread(target=self._run_safely, name=self.thread_name, daemon=True)
            self._thread.start()
            _live_stores.add(self)

    def _after_fork(self) -> None:
        """In a forked child: no thread runs, and locks held by the parent's threads would never be released."""
        self._thread = None
        self._sync_lock, self._fresh_lock, self._start_lock = threading.Lock(), threading.Lock(), threading.Lock()
        self.map._lock = threading.Lock()

    def close(self) -> None:
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(self.timeout + self.poll_wait + 1)
        self._thread = None
        if self._fallback_store is not None and hasattr(self._fallback_store, "close"):
            self._fallback_store.close()

    def _run_safely(self) -> None:
        while not self._stop.is_set():
            try:
                self.run()
            except Exception:
                logger.exception("revocation store thread failed; restarting it")
                self._stop.wait(0.5)

    def run(self) -> None:
        raise NotImplementedError

    def log_error(self, message: str, *args: Any) -> None:
        """At most one warning per second: an outage must not flood the logs."""
        now = time.monotonic()
        if now - self._last_error_log >= 1.0:
            self._last_error_log = now
            logger.warning(message, *args)

    def iter_backoff(self, first: float = 0.05, cap: float = 0.5) -> Iterator[float]:
        delay = first
        while True:
            yield delay
            delay = min(delay * 2, cap)


_live_stores: weakref.WeakSet[RemoteStore] = weakref.WeakSet()


def _reset_after_fork() -> None:
    for store in list(_live_stores):
        store._after_fork()


os.register_at_fork(after_in_child=_reset_after_fork)
