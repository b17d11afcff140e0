"""Fan-out of the HTTP feed: one read of the audit trail per position, shared by every service waiting on it.

Without this, each revocation cost one full feed answer per service (settle, read, cursor: about 6 SQL
statements and 3 ms of provider CPU each), answered one after another. Two things remove the per-service part:

- **Shared pages** (long-poll, ``/feed/events``). The long-polls that the watcher wakes for one change all ask
  for the same page (same cursor, same position, same size). The first builds it; the others use it, and
  each answer is the shared, already serialized page with the request's own ``as_of`` spliced in. A request
  uses a page only if the build *began after the request arrived*: the rows were then read after the
  request was received, so ``as_of`` (read instant minus arrival) is never negative and the freshness proof
  of ``feed.py`` holds unchanged.

- **Streams** (``/feed/stream``, server-sent events). One response stays open per service. One thread per
  provider process (``Broadcaster``) reads the trail at every change and at least every heartbeat, and every
  stream forwards that one read, serialized once, as a frame. A frame says, like an events answer: these
  are every visible row above the stream's position, this is the new cursor (moved only over settled ids),
  and ``as_of`` is when the rows were read, in seconds after the provider received the stream request. So
  the service proves freshness per frame exactly as it does per long-poll answer (``stores.remote``).

A revocation committed in the provider process that serves the streams is also forwarded at once, before
the broadcaster's read, in a frame with ``as_of: null`` and an unchanged cursor: like Redis's fast path it
proves nothing and only makes the revocation bite sooner; the read that follows certifies it.

Why a forwarded frame is a proof: the broadcaster's read covers every visible row with id above its own
cursor ``B``; a stream forwards it only when its own position is at or above ``B`` (everything at or below
the position was delivered already, since the position only ever moves to settled ids). A stream that is
behind (it just opened, or missed frames) first reads its own pages from its position, as a long-poll
would, until it has caught up.

A stream holds a worker thread for its whole life (gthread: size ``--threads`` to the streams plus the
other requests; docs/scaling.md), not a database connection: it closes its connection after its own reads.
``FEED_MAX_STREAMS`` caps the streams per process (503 with ``Retry-After`` beyond it), and the provider
ends each stream after ``FEED_STREAM_MAX_AGE`` seconds, which bounds how far two machines' clock *rates*
can drift apart within one stream (as_of is a duration measured on the provider's clock).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from django.db import DatabaseError, connections
from django.http import HttpResponse

from tokenversion.core.feed_protocol import Cursor
from tokenversion.core.revocation_map import FeedEvent

from . import feedlog
from .conf import get_server_settings

logger = logging.getLogger("tokenversion.server")

SETTLE_MIN = 0.25  # as feed.SETTLE_MIN: how long a read waits for audit writers in flight to finish
SHARED_PAGES = 64  # positions remembered (each is one small page)


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


@dataclass
class Page:
    """Every visible audit row with id > ``start`` (up to a page), read once, and the cursor after it."""

    start: int
    cursor: Cursor
    events: list[FeedEvent]
    more: bool
    settled: bool
    read_at: float  # this process's monotonic clock, after the horizon was settled, before the rows were read
    events_json: str = ""

    def __post_init__(self) -> None:
        self.events_json = _dumps([e.to_wire() for e in self.events])

    @property
    def last_id(self) -> int:
        return self.events[-1].id if self.events else self.start


def build_page(using: str, cursor: Cursor, start: int, limit: int, settle_by: float) -> Page:
    """One feed page: what ``feed_events_view`` answered before pages were shared, computed the same way."""
    horizon = feedlog.settle(using, settle_by)
    read_at = time.monotonic()
    events = feedlog.read_events(using, start, limit + 1)
    more = len(events) > limit
    events = events[:limit]
    new = cursor
    if start == cursor.safe and horizon is not None:
        bound = min(horizon, events[-1].id) if more else horizon
        if bound > cursor.safe:
            new = feedlog.cursor_at(using, bound)
    return Page(start, new, events, more, horizon is not None, read_at)


# Shared pages (long-poll).


@dataclass
class _Build:
    began: float
    done: threading.Event = field(default_factory=threading.Event)
    page: Page | None = None
    failed: bool = False


class SharedPages:
    """Pages by (database, cursor, position, size), built by the first request that needs one."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._builds: OrderedDict[tuple[str, str, int, int], _Build] = OrderedDict()
        self.built = 0  # pages read from the database (tests and the benchmark count them)
        self.shared = 0  # answers that used a page another request built

    def get(self, using: str, cursor: Cursor, start: int, limit: int, arrived: float, settle_by: float) -> Page:
        key = (using, str(cursor), start, limit)
        with self._lock:
            build = self._builds.get(key)
            if build is not None and build.began >= arrived and not build.failed:
                self._builds.move_to_end(key)
                self.shared += 1
                mine = False
            else:
                build = self._builds[key] = _Build(time.monotonic())
                self._builds.move_to_end(key)
                while len(self._builds) > SHARED_PAGES:
                    self._builds.popitem(last=False)
                self.built += 1
                mine = True
        if mine:
            try:
                build.page = build_page(using, cursor, start, limit, settle_by)
            except BaseException:
                build.failed = True
                raise
            finally:
                build.done.set()
        else:
            build.done.wait()
            if build.page is None:
                raise DatabaseError("the shared feed page could not be read")
        return build.page


shared_pages = SharedPages()


def page_response(page: Page, arrived: float) -> HttpResponse:
    """The events answer (same fields as before), the shared serialized rows with this request's ``as_of``."""
    body = (f'{{"cursor":"{page.cursor}","events":{page.events_json},"last_id":{page.last_id},'
            f'"more":{_dumps(page.more)},"settled":{_dumps(page.settled)},'
            f'"as_of":{round(page.read_at - arrived, 6)},"server_time":{time.time()}}}')
    response = HttpResponse(body, content_type="application/json")
    response["Cache-Control"] = "no-store"
    return response


# Streams.


@dataclass
class Frame:
    seq: int
    base: Cursor  # the page holds every visible row with id > base.safe
    page: Page | None  # None: the broadcaster lost the database; streams end (unless ``fast``)
    fast: FeedEvent | None = None  # a revocation just committed in this process, forwarded before any read




class Broadcaster:
    """One thread per process and database while streams are open: reads the trail when it changes (poked
    by commits in this process, and every ``FEED_POLL_INTERVAL`` for the others) and at least every
    heartbeat, and publishes each read as a numbered frame for every stream. It stops a second after the
    last stream has gone, closing its database connection."""

    IDLE_STOP = 1.0
    HISTORY = 256

    def __init__(self, using: str) -> None:
        self.using = using
        self.cond = threading.Condition()
        self.frames: deque[Frame] = deque(maxlen=self.HISTORY)
        self.seq = 0
        self.beats: dict[int, float] = {}  # subscriber id -> heartbeat it asked for
        self.poked = False
        self.stopping = False
        self.thread: threading.Thread | None = None
        self.reads = 0

    def subscribe(self, beat: float) -> tuple[int, int]:
        """Register a stream; (subscriber id, the last frame number published so far)."""
        with self.cond:
            token = id(object()) ^ time.monotonic_ns()
            self.beats[token] = beat
            if self.thread is None:
                self.stopping = False
                self.thread = threading.Thread(target=self._run, name=f"tokenversion-stream-{self.using}",
                                               daemon=True)
                self.thread.start()
            self.poked = True  # a first read now, so a new stream does not wait a heartbeat
            self.cond.notify_all()
            return token, self.seq

    def unsubscribe(self, token: int) -> None:
        with self.cond:
            self.beats.pop(token, None)

    def next_frame(self, after: int, timeout: float) -> Frame | None:
        """The oldest frame published after number ``after`` (the oldest kept, if older ones are gone), or
        None after ``timeout``."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while self.seq <= after:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self.stopping:
                    return None
                self.cond.wait(remaining)
            for frame in self.frames:
                if frame.seq > after:
                    return frame
            return self.frames[-1]

    def poke(self, event: FeedEvent | None = None) -> None:
        """A revocation committed in this process: read now. With its ``event``, also forward it to every
        stream at once, before the read: as Redis's fast path, it proves nothing (no cursor, no as_of),
        it only makes the revocation bite without waiting for the read; the read then certifies it."""
        with self.cond:
            if event is not None and self.beats:
                self.seq += 1
                self.frames.append(Frame(self.seq, Cursor(0, 0, 0), None, fast=event))
            self.poked = True
            self.cond.notify_all()

    def stop(self) -> None:
        with self.cond:
            thread, self.stopping = self.thread, True
            self.cond.notify_all()
        if thread is not None:
            thread.join(5)

    def _publish(self, base: Cursor, page: Page | None) -> None:
        with self.cond:
            self.seq += 1
            self.frames.append(Frame(self.seq, base, page))
            self.cond.notify_all()

    def _run(self) -> None:
        conf = get_server_settings()
        base: Cursor | None = None
        stamp: tuple[int, int] | None = None
        last_published = 0.0
        idle_since: float | None = None
        failed = False
        try:
            while True:
                with self.cond:
                    if self.beats:
                        idle_since = None
                    elif idle_since is None:
                        idle_since = time.monotonic()
                    if self.stopping or (idle_since is not None and time.monotonic() - idle_since > self.IDLE_STOP):
                        self.thread = None
                        return
                    if not self.poked:
                        self.cond.wait(conf.feed_poll_interval)
                    poked, self.poked = self.poked, False
                    beat = min(self.beats.values(), default=1.0)
                    if not self.beats:
                        continue
                try:
                    # Two cheap statements per tick; the read itself only on a change or a heartbeat due. A
                    # commit in this process pokes: straight to the read.
                    due = time.monotonic() - last_published >= beat * 0.9
                    went_back = False
                    if not (poked or due or base is None):
                        now_stamp = (feedlog.allocated(self.using), feedlog.max_visible(self.using))
                        if now_stamp == stamp:
                            continue
                        went_back = now_stamp[0] < base.safe  # ids handed out again: restored data
                    # Whether the data is still the data the cursor came from, once per heartbeat (or when the
                    # ids went back): a restore is noticed within a beat, as a long-poll notices it within its
                    # wait.
                    if base is not None and (due or went_back) and not feedlog.cursor_is_valid(
                            self.using, base, feedlog.allocated(self.using)):
                        # The database was restored or replaced: every stream ends, and reconnecting
                        # with its cursor gets the 410 that makes the service take a new snapshot.
                        logger.warning("feed broadcaster: the audit trail no longer holds its cursor")
                        self._publish(base, None)
                        base = None
                    if base is None:
                        horizon = feedlog.settle(self.using, time.monotonic() + SETTLE_MIN)
                        if horizon is None:
                            continue
                        base = feedlog.cursor_at(self.using, horizon)
                    page = build_page(self.using, base, base.safe, conf.feed_page_size,
                                      time.monotonic() + SETTLE_MIN)
                    self.reads += 1
                    failed = False
                except DatabaseError:
                    if not failed:
                        logger.warning("feed broadcaster: database unavailable")
                    failed = True
                    connections[self.using].close()
                    self._publish(base or Cursor(0, 0, 0), None)
                    base = None
                    continue
                # Publish what changed at once; an unchanged read only when a heartbeat is due.
                if page.events or page.cursor != base or due:
                    self._publish(base, page)
                    last_published = page.read_at
                # What the next tick compares with: settled up to everything read, or read again.
                settled = page.settled and not page.more and page.last_id <= page.cursor.safe
                stamp = (page.cursor.safe, page.cursor.safe) if settled else None
                base = page.cursor
                if page.more:
                    self.poked = True  # a full page: read the next one at once
        finally:
            connections[self.using].close()


_broadcasters: dict[str, Broadcaster] = {}
_broadcasters_lock = threading.Lock()


def broadcaster_for(using: str) -> Broadcaster:
    with _broadcasters_lock:
        if using not in _broadcasters:
            _broadcasters[using] = Broadcaster(using)
        return _broadcasters[using]


def stop_broadcasters() -> None:
    """Stop every broadcaster thread (tests; they also stop by themselves when no stream is open)."""
    for broadcaster in list(_broadcasters.values()):
        broadcaster.stop()


def wake_streams(record: Any = None, **_: Any) -> None:
    """``revocation_committed`` receiver (connected in ``apps.ready``). Never raises: the revocation is committed
    whatever happens here."""
    if not _broadcasters:
        return
    try:
        from .publish import event_of  # the same event as the audit row (and as Redis's fast path)

        event = None if record is None or getattr(record, "audit_id", None) is None else event_of(record)
    except Exception:
        logger.exception("feed stream fast path: could not build the event; the broadcaster's read will carry it")
        event = None
    for broadcaster in list(_broadcasters.values()):
        broadcaster.poke(event)



class StreamSlots:
    """At most ``FEED_MAX_STREAMS`` open streams per process: each holds a worker thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.open = 0

    def acquire(self, limit: int) -> bool:
        with self._lock:
            if self.open >= limit:
                return False
            self.open += 1
            return True

    def release(self) -> None:
        with self._lock:
            self.open -= 1


stream_slots = StreamSlots()


def _frame(cursor: Cursor, events_json: str, last_id: int, more: bool, as_of: float | None) -> bytes:
    as_of_json = "null" if as_of is None else str(round(as_of, 6))
    return (f'data: {{"as_of":{as_of_json},"cursor":"{cursor}","events":{events_json},"last_id":{last_id},'
            f'"more":{_dumps(more)}}}\n\n').encode()


class Stream:
    """The body of one stream response: frames from ``cursor`` on, until the client goes, the database
    fails, or ``max_age``. An object with ``close`` (not a bare generator) so that the slot is released
    even if the server closes the response before the first frame is asked for."""

    def __init__(self, using: str, cursor: Cursor, arrived: float, beat: float, max_age: float) -> None:
        self.using, self.position, self.arrived = using, cursor, arrived
        self.beat, self.max_age = beat, max_age
        self.limit = get_server_settings().feed_page_size
        self._frames = self._run()
        self._closed = False

    def __iter__(self) -> Iterator[bytes]:
        return self._frames

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._frames.close()
            stream_slots.release()

    def _own_pages(self) -> Iterator[bytes]:
        """Catch up by reading from our own position, as a long-poll does, until a page is not full."""
        try:
            while True:
                page = build_page(self.using, self.position, self.position.safe, self.limit,
                                  time.monotonic() + SETTLE_MIN)
                self.position = page.cursor
                yield _frame(page.cursor, page.events_json, page.last_id, page.more,
                             None if page.more else page.read_at - self.arrived)
                if not page.more:
                    return
        finally:
            connections[self.using].close()  # a stream holds a thread, not a database connection

    def _run(self) -> Iterator[bytes]:
        broadcaster = broadcaster_for(self.using)
        token, seen = broadcaster.subscribe(self.beat)
        ends = self.arrived + self.max_age
        try:
            try:
                yield from self._own_pages()
            except DatabaseError:
                logger.warning("feed stream: database unavailable")
                return
            while time.monotonic() < ends:
                frame = broadcaster.next_frame(seen, min(self.beat * 2, max(0.0, ends - time.monotonic())))
                if frame is None:
                    continue
                seen = frame.seq
                if frame.fast is not None:
                    if frame.fast.id is not None and frame.fast.id > self.position.safe:
                        yield _frame(self.position, _dumps([frame.fast.to_wire()]), frame.fast.id, False, None)
                    continue
                page = frame.page
                if page is None:
                    return  # the database failed or was replaced: the service reconnects (503 or 410)
                if frame.base != self.position:
                    # Out of step with the broadcaster, whose cursor it checks itself: prove that this
                    # stream's position still belongs to the data before reading from it or forwarding
                    # above it (after a restore, the broadcaster's new cursor can be valid and below it).
                    try:
                        valid = feedlog.cursor_is_valid(self.using, self.position, feedlog.allocated(self.using))
                        if valid and frame.base.safe > self.position.safe:
                            yield from self._own_pages()  # behind the shared reads: catch up alone first
                            continue
                    except DatabaseError:
                        return
                    finally:
                        connections[self.using].close()
                    if not valid:
                        return  # reconnecting with this cursor gets the 410 that brings a new snapshot
                if page.read_at < self.arrived:
                    continue  # read before this stream existed: proves nothing for it
                if frame.base.safe == self.position.safe:
                    events_json, last_id = page.events_json, page.last_id  # the common case: as serialized
                else:
                    mine = [e for e in page.events if e.id > self.position.safe]
                    events_json = _dumps([e.to_wire() for e in mine])
                    last_id = mine[-1].id if mine else self.position.safe
                if page.cursor.safe > self.position.safe:
                    self.position = page.cursor
                yield _frame(self.position, events_json, last_id, page.more,
                             None if page.more else page.read_at - self.arrived)
        finally:
            broadcaster.unsubscribe(token)
