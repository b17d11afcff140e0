"""Publishing revocations on Redis pub/sub, for the ``RedisStore`` of remote services.

Two publishers share one channel (``REDIS_CHANNEL``), every message signed with the Ed25519 key
``FEED_SIGNING_KEY`` and addressed to the channel and the issuer (``core.feed_protocol.FeedSigner``). Only the
provider's processes and the publisher hold that key; services verify with its public key. The HTTP feed's
credential (``FEED_SECRETS``) signs nothing.

**The fast path** (any provider process). After a revocation commits, ``revocation_committed`` makes the
process publish it at once: ``{"type": "event", "event": {...}}``. This is what makes a revocation bite
within milliseconds. It is best effort: if Redis is unreachable the revocation stays committed, the failure
is logged, and further attempts pause for a second so revocations do not each wait on a dead Redis.

**The certifying publisher** (``manage.py tokenversion_publisher``, exactly one or a few processes). Pub/sub
delivers at most once: a subscriber that is disconnected, or a fast-path publish that failed, loses messages
without anyone noticing. So services never trust the fast path for *freshness*. The publisher tails the audit
trail (``feedlog``) every ``PUBLISH_INTERVAL`` and publishes, numbered within its run:

- ``{"type": "hello", "run", "n": 1, "cursor"}`` when a run starts (at start and after any Redis error);
- ``{"type": "event", "run", "n", "event"}`` for every audit row it has not published in this run yet
  (so events go out twice, once per path; applying is idempotent);
- ``{"type": "heartbeat", "run", "n", "cursor", "as_of"}`` after the rows. It certifies: every revocation
  committed before ``as_of`` (the publisher's wall clock when it read the trail) has been published in this
  run, or is at or below the run's ``hello`` cursor.

A service is fresh as of a heartbeat only if it has received *every* numbered message of that run since a
point its own data already covers (``stores.redis``). A live Redis connection with a dead publisher gives no
heartbeats, so the service goes stale: freshness is never inferred from the connection alone.
"""

from __future__ import annotations

import json
import logging
import secrets
import threading
import time
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.db import DatabaseError, connections

from tokenversion.conf import get_settings, on_reset
from tokenversion.core.feed_protocol import Cursor, FeedKeyError, FeedSigner
from tokenversion.core.revocation_map import FeedEvent

from . import feedlog
from .conf import get_server_settings

logger = logging.getLogger("tokenversion.server")

FAST_PATH_PAUSE = 1.0  # seconds without fast-path publishes after a failure (a dead Redis costs a timeout)


def redis_client(url: str, timeout: float = 1.0):
    import redis

    return redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout,
                                health_check_interval=0)


# The signing key.

_signer: FeedSigner | None = None


def read_signing_key(value: str) -> str:
    """``FEED_SIGNING_KEY``: PEM text (it contains ``-----BEGIN``; line breaks may be written ``\\n``), otherwise
    the path of a PEM file."""
    if "-----BEGIN" in value:
        # an environment file cannot hold line breaks: accept them written as \n
        return value.replace("\\n", "\n") if "\n" not in value else value
    try:
        with open(value, encoding="ascii") as handle:
            return handle.read(64 * 1024)
    except (OSError, UnicodeDecodeError) as exc:
        raise ImproperlyConfigured(f"TOKENVERSION_SERVER['FEED_SIGNING_KEY']: cannot read the key file {value!r} "
                                   f"({type(exc).__name__})") from None


def feed_signer() -> FeedSigner:
    """The provider's Redis signing key; ``ImproperlyConfigured`` (with no key material) when unset or unusable."""
    global _signer
    if _signer is None:
        value = get_server_settings().feed_signing_key
        if not value:
            raise ImproperlyConfigured("TOKENVERSION_SERVER['FEED_SIGNING_KEY'] is not set: Redis messages cannot be "
                                       "signed (create one with manage.py tokenversion_feed_keygen)")
        try:
            _signer = FeedSigner.from_pem(read_signing_key(value))
        except FeedKeyError as exc:
            raise ImproperlyConfigured(f"TOKENVERSION_SERVER['FEED_SIGNING_KEY']: {exc}") from None
    return _signer


def _reset_signer() -> None:
    global _signer
    _signer = None


on_reset(_reset_signer)


# The fast path.

_fast_client: Any = None
_fast_paused_until = 0.0
_fast_lock = threading.Lock()


def _reset_fast_path() -> None:
    global _fast_client, _fast_paused_until
    with _fast_lock:
        client, _fast_client, _fast_paused_until = _fast_client, None, 0.0
    if client is not None:
        client.close()


on_reset(_reset_fast_path)


def event_of(record: Any) -> FeedEvent:
    """The feed event for a ``services.Revocation``: the same event as its audit row's (``feedlog.feed_event``)."""
    return feedlog.feed_event(record.scope, record.issuer, record.at, subject=record.subject,
                              session_id=record.session_id, version=record.new_version, id=record.audit_id)


def publish_committed(sender: Any = None, record: Any = None, **_: Any) -> None:
    """``revocation_committed`` receiver (connected in ``apps.ready``). Never raises: the revocation is committed
    whatever happens here."""
    global _fast_client, _fast_paused_until
    conf, server = get_settings(), get_server_settings()
    if not server.redis_url or record is None:
        return
    if time.monotonic() < _fast_paused_until:
        return
    try:
        message = feed_signer().seal({"type": "event", "event": event_of(record).to_wire()}, server.redis_channel,
                                     conf.issuer or "")
        with _fast_lock:
            if _fast_client is None:
                _fast_client = redis_client(server.redis_url, timeout=0.5)
            client = _fast_client
        client.publish(server.redis_channel, message)
    except ImproperlyConfigured as exc:  # no usable signing key (system check tokenversion.E010 says so too)
        _fast_paused_until = time.monotonic() + FAST_PATH_PAUSE
        logger.error("fast-path publish of a revocation skipped: %s", exc)
    except Exception as exc:  # redis errors, a missing redis package, anything: log and carry on
        _fast_paused_until = time.monotonic() + FAST_PATH_PAUSE
        logger.warning("fast-path publish of a revocation failed (%s); the publisher will certify it, "
                       "fast path paused for %.0f s", type(exc).__name__, FAST_PATH_PAUSE)


# The certifying publisher.


def status_key(channel: str) -> str:
    """Where the publisher leaves its last heartbeat for the provider's metrics (``metrics.ProviderCollector``)."""
    return f"{channel}:publisher"


def publisher_status(cursor_safe: int, as_of: float, run: str) -> str:
    return json.dumps({"safe": cursor_safe, "as_of": as_of, "run": run})


class Publisher:
    """Tails the audit trail and publishes numbered events and heartbeats (see the module docstring)."""

    def __init__(self, client: Any, channel: str, signer: FeedSigner, issuer: str, using: str,
                 interval: float = 0.2, page_size: int = 1000) -> None:
        self.client, self.channel, self.signer, self.issuer, self.using = client, channel, signer, issuer, using
        self.interval, self.page_size = interval, page_size
        self.stats = {"runs": 0, "events": 0, "heartbeats": 0, "redis_errors": 0, "database_errors": 0}
        self.new_run()

    def new_run(self) -> None:
        self.run = secrets.token_hex(8)
        self.n = 0
        self.cursor: Cursor | None = None
        self.published: set[int] = set()

    def _send(self, message: dict[str, Any]) -> None:
        self.n += 1
        message.update(run=self.run, n=self.n)
        self.client.publish(self.channel, self.signer.seal(message, self.channel, self.issuer))

    def tick(self) -> bool:
        """One round; False when nothing could be certified (the settled horizon could not be proven)."""
        deadline = time.monotonic() + max(self.interval, feedlog.SETTLE_POLL * 4)
        if self.cursor is None:
            horizon = feedlog.settle(self.using, deadline)
            if horizon is None:
                return False
            self.cursor = feedlog.cursor_at(self.using, horizon)
            self.stats["runs"] += 1
            self._send({"type": "hello", "cursor": str(self.cursor)})
        horizon = feedlog.settle(self.using, deadline)
        as_of = time.time()  # before the read: everything committed earlier is visible to it
        after = self.cursor.safe
        while True:
            events = feedlog.read_events(self.using, after, self.page_size)
            for event in events:
                if event.id not in self.published:
                    self._send({"type": "event", "event": event.to_wire()})
                    self.published.add(event.id)
                    self.stats["events"] += 1
            if len(events) < self.page_size:
                break
            after = events[-1].id
        if horizon is not None and horizon > self.cursor.safe:
            self.cursor = feedlog.cursor_at(self.using, horizon)
            self.published = {i for i in self.published if i > horizon}
        self._send({"type": "heartbeat", "cursor": str(self.cursor), "as_of": as_of})
        self.stats["heartbeats"] += 1
        # For the provider's metrics (publisher lag and backlog); services never read it.
        self.client.set(status_key(self.channel), publisher_status(self.cursor.safe, as_of, self.run))
        return True

    def serve(self, stop: threading.Event) -> None:
        """Tick every ``interval`` until ``stop`` is set. Redis errors start a new run (subscribers then close
        their gap from the HTTP feed); database errors skip heartbeats (subscribers go stale, honestly)."""
        import redis

        backoff = 0.05
        while not stop.is_set():
            started = time.monotonic()
            try:
                self.tick()
                backoff = 0.05
            except (redis.RedisError, OSError) as exc:
                self.stats["redis_errors"] += 1
                logger.warning("publisher: Redis error (%s); starting a new run", type(exc).__name__)
                self.new_run()
                stop.wait(backoff)
                backoff = min(backoff * 2, 0.5)
                continue
            except DatabaseError as exc:
                self.stats["database_errors"] += 1
                logger.warning("publisher: database error (%s); no heartbeat", type(exc).__name__)
                connections[self.using].close()
                stop.wait(backoff)
                backoff = min(backoff * 2, 0.5)
                continue
            stop.wait(max(0.0, self.interval - (time.monotonic() - started)))
