"""``RedisStore``: the revocation map kept current by Redis pub/sub, with the HTTP feed to close gaps.

One thread per process subscribes to the provider's channel (``tokenversion_server.publish``) and applies:

- fast-path events, published by the provider process that committed the revocation: milliseconds;
- the certifying publisher's numbered messages (``hello``, ``event``, ``heartbeat``) of each *run*.

**Fresh means certified, not connected.** The map is marked fresh as of a heartbeat's ``as_of`` only when
this process received every numbered message of that run since a point its data already covered:

- the run's ``hello`` (n = 1) when the store's cursor was already at or past the hello's cursor; or
- an HTTP feed catch-up that started after the first message received of an unbroken stretch.

A missing number (a dropped connection, a Redis restart, redis-py's silent reconnect-and-resubscribe, a
failed publish), a new connection or a new run all open a **gap**; the thread then reads the HTTP feed
from its cursor, which holds everything committed in between, before it trusts that run again. Pub/sub alone
would lose what was published while nobody listened. A live connection with a dead publisher brings no
heartbeats: the store goes stale and refuses (503), unless ``poll_when_silent`` lets it poll the HTTP feed
meanwhile (the default: it keeps serving, at the cost of one feed request per ``max_staleness / 4`` per
process while Redis or the publisher is down).

``as_of`` is the publisher's wall clock. A heartbeat delayed in transit is counted from when it was
published, so it cannot make the map look fresher than it is, as long as the clocks agree (NTP), which token
validation already assumes (``exp``, ``LEEWAY``). A service clock *behind* the publisher's is clamped to
"fresh now", never the future; the time since the heartbeat arrived always counts.

**Signed, addressed, dated.** Messages are Ed25519-signed by the provider and the certifying publisher
(``core.feed_protocol``); the store holds only public keys (``verify_keys``), which verify but cannot sign. A
message is refused (counted and dropped) when it is unsigned, signed with a key not in ``verify_keys``, signed
for another channel or issuer, dated more than ``LEEWAY`` in the future, or published more than
``MAX_MESSAGE_AGE`` (20 s) ago. So neither a Redis client nor a service holding this whole configuration
(feed credential included) can forge an event, a hello or a heartbeat.

**Replays.** A signed message captured and published again is ignored: a ``hello`` for a run already seen,
and a numbered message at or below the highest number received in its run. Runs are remembered for
``RUN_MEMORY`` seconds, longer than ``MAX_MESSAGE_AGE``, across reconnections. Whatever still opens a gap,
gap-closing catch-ups are rate-limited to one per ``gap_close_interval`` (default ``max_staleness / 4``, the
rate of ``poll_when_silent``): no stream of messages becomes a stream of feed requests.

Settings::

    TOKENVERSION = {
        "STORE": "tokenversion.stores.redis.RedisStore",
        "STORE_OPTIONS": {
            "redis_url": "redis://redis.internal:6379/0",
            "channel": "tokenversion:revocations",          # the provider's REDIS_CHANNEL
            "feed_url": "https://provider.example.com/tokenversion/feed",
            "secret": "<one of the provider's FEED_SECRETS>",     # the HTTP feed credential (gap closing)
            "verify_keys": ["<public key printed by manage.py tokenversion_feed_keygen>"],
            # "max_staleness": 1.0, "poll_when_silent": True, "gap_close_interval": 0.25, "fallback": None,
        },
    }
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from typing import Any

from ..core.errors import ConfigurationError
from ..core.feed_protocol import MAX_MESSAGE_AGE, Cursor, CursorError, EnvelopeError, FeedKeyError, FeedVerifier
from ..core.revocation_map import FeedEvent, WireError, parse_event, parse_time
from .remote import FeedError, RemoteStore, _positive, check_common_options

logger = logging.getLogger("tokenversion")
RUN_FORGET_AFTER = 30.0  # seconds without a message from a run: forget its numbering (a new stretch: a gap)
RUN_MEMORY = 3 * MAX_MESSAGE_AGE  # seconds a run id is remembered as seen (a replayed hello is then ignored)
MAX_RUNS_REMEMBERED = 4096
# bad_messages counts every refused message; these count some reasons apart
_REFUSALS = {"misdirected": "misdirected", "future": "out_of_time", "expired": "out_of_time"}


@dataclass
class _Run:
    last_n: int
    synced: bool
    seen: float


class RedisStore(RemoteStore):
    thread_name = "tokenversion-redis-store"

    settings_options = (*RemoteStore.settings_options, "issuer")

    def __init__(self, redis_url: str, feed_url: str, secret: str, verify_keys: list[str] | None = None,
                 channel: str = "tokenversion:revocations", poll_when_silent: bool = True,
                 gap_close_interval: float | None = None, issuer: str = "", **options: Any) -> None:
        problems = self.check_options({"redis_url": redis_url, "feed_url": feed_url, "secret": secret,
                                       "verify_keys": verify_keys, "channel": channel,
                                       **({} if gap_close_interval is None else
                                          {"gap_close_interval": gap_close_interval}), **options})
        if not isinstance(issuer, str) or not issuer:
            problems.append("issuer (the realm's exact iss) is required: signed messages name the issuer they "
                            "are for")
        if problems:
            raise ConfigurationError("; ".join(problems))
        self.redis_url = redis_url
        self.channel = channel
        self.issuer = issuer
        self.future_skew = float(options.get("leeway", 5.0))
        self.poll_when_silent = bool(poll_when_silent)
        self.verifier = FeedVerifier(verify_keys or ())
        self._runs: dict[str, _Run] = {}
        # run -> (last message, monotonic; highest number received), kept across reconnections: replays
        self._seen_runs: dict[str, tuple[float, int]] = {}
        self._gap_runs: set[str] = set()
        self._next_http = 0.0
        self._next_gap_close = 0.0
        self._last_message = 0.0
        self._last_ping = 0.0
        autostart = options.pop("autostart", True)
        super().__init__(feed_url, secret, autostart=False, **options)
        self.gap_close_interval = (self.max_staleness / 4 if gap_close_interval is None
                                   else float(gap_close_interval))
        self.stats.update({"connects": 0, "redis_errors": 0, "gaps": 0, "gap_closes": 0, "heartbeats": 0,
                           "fast_events": 0, "events": 0, "bad_messages": 0, "misdirected": 0, "out_of_time": 0,
                           "replays": 0, "silent_polls": 0})
        if autostart:
            self.start()

    @classmethod
    def check_options(cls, options: dict) -> list[str]:
        problems = check_common_options(options)
        url = options.get("redis_url")
        if not isinstance(url, str) or not url.startswith(("redis://", "rediss://", "unix://")):
            problems.append("redis_url must be a redis://, rediss:// or unix:// URL")
        channel = options.get("channel", "tokenversion:revocations")
        if not isinstance(channel, str) or not channel:
            problems.append("channel must be a non-empty string")
        if "verify_secrets" in options:
            problems.append("verify_secrets is gone: Redis messages are Ed25519-signed; list the provider's "
                            "public keys in verify_keys (docs/scaling.md)")
        keys = options.get("verify_keys")
        if not isinstance(keys, list | tuple) or not keys:
            problems.append("verify_keys (the provider's feed public keys, printed by manage.py "
                            "tokenversion_feed_keygen) must be a non-empty list")
        else:
            for i, key in enumerate(keys):
                try:
                    FeedVerifier([key])
                except FeedKeyError as exc:
                    problems.append(f"verify_keys[{i}]: {exc}")
        if "gap_close_interval" in options:
            try:
                _positive(options["gap_close_interval"], "gap_close_interval")
            except ValueError as exc:
                problems.append(str(exc))
        return problems

    # The thread.

    def _subscribe(self):
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        # No retries inside redis-py: a failure must reach this loop, which treats it as a gap.
        client = redis.Redis.from_url(self.redis_url, socket_connect_timeout=self.timeout,
                                      socket_timeout=self.timeout, socket_keepalive=True,
                                      retry=Retry(NoBackoff(), 0), health_check_interval=0)
        pubsub = client.pubsub(ignore_subscribe_messages=True)
        try:
            pubsub.subscribe(self.channel)
        except BaseException:
            pubsub.close()
            client.close()
            raise
        # Whatever was certified on an earlier connection, this one starts with a gap in every run.
        self._runs.clear()
        self._gap_runs.clear()
        self.stats["connects"] += 1
        self._last_message = self._last_ping = time.monotonic()
        return pubsub

    def run(self) -> None:
        import redis

        pubsub = None
        reconnect_at = 0.0
        backoff = self.iter_backoff(cap=1.0)
        try:
            while not self._stop.is_set():
                now = time.monotonic()
                if pubsub is None and now >= reconnect_at:
                    try:
                        pubsub = self._subscribe()
                        backoff = self.iter_backoff(cap=1.0)
                    except (redis.RedisError, OSError) as exc:
                        self.stats["redis_errors"] += 1
                        self.log_error("revocation store: Redis unavailable (%s)", type(exc).__name__)
                        reconnect_at = now + next(backoff)
                if pubsub is not None:
                    try:
                        self._drain(pubsub)
                    except (redis.RedisError, OSError) as exc:
                        self.stats["redis_errors"] += 1
                        self.log_error("revocation store: Redis connection lost (%s)", type(exc).__name__)
                        _close(pubsub)
                        pubsub = None
                        self._runs.clear()
                        reconnect_at = time.monotonic() + next(backoff)
                else:
                    self._stop.wait(0.05)
                self._http_work()
        finally:
            if pubsub is not None:
                _close(pubsub)

    def _drain(self, pubsub) -> None:
        message = pubsub.get_message(timeout=0.05)
        while message is not None:
            self._last_message = time.monotonic()
            if message.get("type") == "message":
                self._on_message(message.get("data"))
            message = pubsub.get_message(timeout=0)
        now = time.monotonic()
        silent = now - self._last_message
        if silent > 3 * self.max_staleness:
            raise OSError(f"no message (not even a pong) for {silent:.1f} s")  # a half-open connection
        if silent > self.max_staleness and now - self._last_ping > self.max_staleness:
            self._last_ping = now
            pubsub.ping()
        for run, state in list(self._runs.items()):
            if now - state.seen > RUN_FORGET_AFTER:
                del self._runs[run]
                self._gap_runs.discard(run)
        if len(self._seen_runs) > MAX_RUNS_REMEMBERED or any(
                now - seen > RUN_MEMORY for seen, _ in self._seen_runs.values()):
            recent = sorted(self._seen_runs.items(), key=lambda item: item[1][0])[-MAX_RUNS_REMEMBERED:]
            self._seen_runs = {run: seen for run, seen in recent if now - seen[0] <= RUN_MEMORY}

    def _http_work(self) -> None:
        """The HTTP feed: the first snapshot, gap closing, and polling while Redis certifies nothing."""
        now = time.monotonic()
        if now < self._next_http:
            return
        gap_due = bool(self._gap_runs) and now >= self._next_gap_close  # rate-limited: see the module docstring
        silent = self.poll_when_silent and self.staleness() > self.max_staleness / 2
        if self.cursor is not None and not gap_due and not silent:
            return
        gaps = set(self._gap_runs)  # a catch-up closes every gap opened before it started
        try:
            self.catch_up(0.0)
        except FeedError as exc:
            self.stats["feed_errors"] += 1
            self.log_error("revocation store: HTTP feed unavailable: %s", exc)
            self._next_http = time.monotonic() + 0.1
            return
        for run in gaps:  # the catch-up started after each of these runs' gap: they are whole again
            state = self._runs.get(run)
            if state is not None:
                state.synced = True
        if gaps:
            self.stats["gap_closes"] += 1
            self._next_gap_close = time.monotonic() + self.gap_close_interval
        self._gap_runs -= gaps
        if silent and not gaps:
            self.stats["silent_polls"] += 1
            self._next_http = time.monotonic() + self.max_staleness / 4

    # Messages.

    def _on_message(self, data: Any) -> None:
        try:  # the one signature verification of this message
            message = self.verifier.open(data if isinstance(data, bytes | str) else b"", self.channel, self.issuer,
                                         future_skew=self.future_skew)
        except EnvelopeError as exc:
            if exc.reason in _REFUSALS:
                self.stats[_REFUSALS[exc.reason]] += 1
            self._bad(f"message refused ({exc.reason})")
            return
        kind, run, n = message.get("type"), message.get("run"), message.get("n")
        if run is None:  # the fast path: apply, but it proves nothing about freshness
            try:
                if kind != "event":
                    raise WireError("unnumbered messages are events")
                self.map.apply(self._event(message))
                self.stats["fast_events"] += 1
            except WireError:
                self._bad("malformed fast-path event dropped")
            return
        if not isinstance(run, str) or not 0 < len(run) <= 64 or type(n) is not int or n < 1 or (
                (kind == "hello") != (n == 1)):
            self._bad("malformed run or number")
            return
        now = time.monotonic()
        seen = self._seen_runs.get(run)
        if seen is not None and (kind == "hello" or n <= seen[1]):
            self.stats["replays"] += 1  # a replay: ignored, never a gap (it would cost a feed request)
            return
        self._seen_runs[run] = (now, n)
        state = self._runs.get(run)
        try:
            event, cursor, as_of = self._content(kind, message)
        except (WireError, CursorError):
            # A numbered message we cannot use is a message missed: that run has a gap.
            self._bad("malformed numbered message")
            self._open_gap(run, n, now)
            return
        if kind == "hello":
            synced = self.cursor is not None and cursor is not None and self.cursor.safe >= cursor.safe
            self._runs[run] = _Run(1, synced, now)
            if not synced:
                self._gap_runs.add(run)
            return
        if state is None or n != state.last_n + 1:
            state = self._open_gap(run, n, now)
        else:
            state.last_n, state.seen = n, now
        if event is not None:
            self.map.apply(event)
            self.stats["events"] += 1
        elif kind == "heartbeat" and state.synced:
            self.stats["heartbeats"] += 1
            if cursor is not None and self._sync_lock.acquire(blocking=False):
                try:
                    self.adopt_cursor(cursor)
                finally:
                    self._sync_lock.release()
            self.mark_fresh(now - max(0.0, time.time() - as_of))

    def _event(self, message: dict[str, Any]) -> FeedEvent:
        event = parse_event(message.get("event"))
        if event.issuer != self.issuer:
            raise WireError("event for another issuer than its envelope's")
        return event

    def _content(self, kind: Any, message: dict[str, Any]) -> tuple[FeedEvent | None, Cursor | None, float]:
        if kind == "event":
            return self._event(message), None, math.nan
        if kind == "hello":
            return None, Cursor.parse(message.get("cursor")), math.nan
        if kind == "heartbeat":
            return None, Cursor.parse(message.get("cursor")), parse_time(message.get("as_of"), "as_of")
        raise WireError("unknown message type")

    def _open_gap(self, run: str, n: int, now: float) -> _Run:
        state = _Run(n, False, now)
        self._runs[run] = state
        self._gap_runs.add(run)
        self.stats["gaps"] += 1
        return state

    def _bad(self, what: str) -> None:
        self.stats["bad_messages"] += 1
        self.log_error("revocation store: %s", what)


def _close(pubsub) -> None:
    try:
        pubsub.close()
    except Exception as exc:  # already broken: nothing more to release
        logger.debug("closing a broken pub/sub connection: %s", exc)
