"""``HttpFeedStore``: the revocation map kept current by the provider's HTTP feed.

For services that do not share the provider's database and have no Redis. One thread per process: a
snapshot at start, then either

- ``transport="stream"`` (the default): one open ``GET /tokenversion/feed/stream`` response (server-sent
  events). The provider sends a frame when a revocation commits and a freshness frame at least every
  ``poll_wait`` (default: half of ``max_staleness``); each frame carries the cursor and ``as_of``, so the
  store proves freshness per frame exactly as it does per long-poll answer. The provider's cost per
  revocation does not grow with the number of services: one read of the audit trail, serialized once, is
  written to every stream. The provider ends a stream every few minutes; the store reconnects from its
  cursor at once. If the stream cannot be opened (a provider that does not offer it answers 404 or 501:
  older, or ``FEED_MAX_STREAMS`` 0, the provider's default; one at its stream cap answers 503), the store
  long-polls instead and tries the stream again later (after 5 minutes when the provider does not offer
  streams, or when a stream opened but sent no frame, which is what a proxy that buffers responses does);
- ``transport="poll"``: ``GET /tokenversion/feed/events`` in a loop, each call waiting up to ``poll_wait``
  for something new. For proxies that buffer responses (a stream whose frames are held back goes stale and
  the store refuses), or providers whose worker threads are too few to hold one stream per service process
  (docs/scaling.md).

Either way, revocations bite within a round trip; when nothing happens, the frames or answers keep proving
freshness every ``poll_wait``. If the provider cannot be reached, the map goes stale and, ``max_staleness``
after the last proof, the store refuses (503) rather than accept on old data. When the provider is back, the
thread resumes from its cursor: the cursor only moves over settled ids, so nothing committed in between is
skipped.

Settings::

    TOKENVERSION = {
        "STORE": "tokenversion.stores.feed.HttpFeedStore",
        "STORE_OPTIONS": {
            "feed_url": "https://provider.example.com/tokenversion/feed",
            "secret": "<one of the provider's FEED_SECRETS>",
            # "transport": "stream",  # or "poll"
            # "max_staleness": 1.0, "poll_wait": 0.5, "timeout": 5.0, "fallback": None,
        },
    }
"""

from __future__ import annotations

import time
from typing import Any

from ..core.errors import ConfigurationError
from .remote import (
    PRUNE_EVERY,
    CursorExpired,
    FeedError,
    RemoteStore,
    StreamSilent,
    StreamUnsupported,
    check_common_options,
    logger,
)

TRANSPORTS = ("stream", "poll")
POLL_AFTER_STREAM_FAILURE = 5.0  # seconds of long-poll after a stream could not be opened or was cut
POLL_WITHOUT_STREAM = 300.0  # seconds of long-poll after a provider answered 404 or 501 (no streams there)


class HttpFeedStore(RemoteStore):
    thread_name = "tokenversion-feed-store"

    def __init__(self, *args: Any, transport: str = "stream", **kwargs: Any) -> None:
        if transport not in TRANSPORTS:
            raise ConfigurationError(f"transport must be one of {', '.join(TRANSPORTS)}")
        self.transport = transport
        self._poll_until = 0.0
        super().__init__(*args, **kwargs)
        self.stats.update(streams=0, frames=0)

    @classmethod
    def check_options(cls, options: dict) -> list[str]:
        problems = check_common_options(options)
        if options.get("transport", "stream") not in TRANSPORTS:
            problems.append(f"transport must be one of {', '.join(TRANSPORTS)}")
        return problems

    def run(self) -> None:
        backoff = self.iter_backoff()
        while not self._stop.is_set():
            try:
                if self.transport == "stream" and time.monotonic() >= self._poll_until:
                    self.follow_stream()
                else:
                    self.catch_up(self.poll_wait)
            except StreamUnsupported as exc:
                # The provider's default (streams off): a choice, not a fault. Info, once per retry period.
                logger.info("revocation feed: %s; long-polling, stream asked again in %.0f s", exc,
                            POLL_WITHOUT_STREAM)
                self._poll_until = time.monotonic() + POLL_WITHOUT_STREAM
                continue
            except StreamSilent as exc:
                self.stats["feed_errors"] += 1
                self.log_error("revocation feed: %s; long-polling, stream asked again in %.0f s", exc,
                               POLL_WITHOUT_STREAM)
                self._poll_until = time.monotonic() + POLL_WITHOUT_STREAM
                continue
            except CursorExpired:
                self.stats["cursor_expired"] += 1
                self.log_error("feed cursor expired (the provider's data changed): taking a new snapshot")
                with self._sync_lock:
                    self.cursor = None
                continue
            except FeedError as exc:
                self.stats["feed_errors"] += 1
                self.log_error("revocation feed: %s (map %.2f s stale)", exc, self.staleness())
                if self.transport == "stream":
                    self._poll_until = time.monotonic() + POLL_AFTER_STREAM_FAILURE
                self._stop.wait(next(backoff))
                continue
            backoff = self.iter_backoff()

    def follow_stream(self) -> None:
        """One stream, from the cursor (a snapshot first if there is none), until the provider ends it.
        Each complete frame marks the map fresh as of its read: the request was sent at ``sent``, so the
        provider read the rows no earlier than ``sent + as_of`` on this clock (no clocks compared)."""
        with self._sync_lock:
            if self.cursor is None:
                self._load_snapshot()
            position = self.cursor
        self.stats["streams"] += 1
        sent = time.monotonic()
        frames = 0
        for frame in self.client.stream(position, self.poll_wait):
            frames += 1
            with self._sync_lock:
                self.map.apply_many(frame["events"])
                if self.cursor is None or frame["cursor"].safe > self.cursor.safe:
                    self.cursor = frame["cursor"]
                self.have = max(self.have, frame["last_id"], frame["cursor"].safe)
                self.stats["frames"] += 1
            if not frame["more"] and frame["as_of"] is not None:
                self.mark_fresh(sent + min(frame["as_of"], time.monotonic() - sent))
            if time.monotonic() - self._last_prune > PRUNE_EVERY:
                self._last_prune = time.monotonic()
                self.map.prune()
            if self._stop.is_set():
                return
        if not frames:
            raise FeedError("feed stream ended before its first frame")
