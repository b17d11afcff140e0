"""``HttpFeedStore``: the revocation map kept current by long-polling the provider's HTTP feed.

For services that do not share the provider's database and have no Redis. One thread per process:
a snapshot at start, then ``GET /tokenversion/feed/events`` in a loop, each call waiting up to
``poll_wait`` (default: half of ``max_staleness``) for something new. The provider answers at once when a
revocation commits, so revocations bite within a round trip; when nothing happens, the answers keep
proving freshness every ``poll_wait``.

If the provider cannot be reached, the map goes stale and, ``max_staleness`` after the last proof, the
store refuses (503) rather than accept on old data. When the provider is back, the thread resumes from
its cursor: the cursor only moves over settled ids, so nothing committed in between is skipped.

Settings::

    TOKENVERSION = {
        "STORE": "tokenversion.stores.feed.HttpFeedStore",
        "STORE_OPTIONS": {
            "feed_url": "https://provider.example.com/tokenversion/feed",
            "secret": "<one of the provider's FEED_SECRETS>",
            # "max_staleness": 1.0, "poll_wait": 0.5, "timeout": 5.0, "fallback": None,
        },
    }
"""

from __future__ import annotations

from .remote import FeedError, RemoteStore, check_common_options


class HttpFeedStore(RemoteStore):
    thread_name = "tokenversion-feed-store"

    @classmethod
    def check_options(cls, options: dict) -> list[str]:
        return check_common_options(options)

    def run(self) -> None:
        backoff = self.iter_backoff()
        while not self._stop.is_set():
            try:
                self.catch_up(self.poll_wait)
            except FeedError as exc:
                self.stats["feed_errors"] += 1
                self.log_error("revocation feed: %s (map %.2f s stale)", exc, self.staleness())
                self._stop.wait(next(backoff))
                continue
            backoff = self.iter_backoff()
