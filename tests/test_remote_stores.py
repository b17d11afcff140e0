"""The remote stores against real parts: the provider served by gunicorn, the certifying publisher as its own
process, real Redis (the shared test server with a channel per test, and a redis-server of our own for the
restart test), and a DRF service process that has no database at all.

Revocations are made in this test process through ``services`` (they commit to the test database, which
the provider and the publisher read), with the fast path publishing to Redis when a test turns it on.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
import uuid

import pytest
from django.db import connection

from tests.feed_settings import FEED_SECRET, FEED_SIGNING_KEY, FEED_VERIFY_KEY
from tests.remote_helpers import (
    Process,
    RedisServer,
    WebProcess,
    django_env,
    http_get,
    revocation_held_open,
    wait_until,
)
from tokenversion.conf import get_settings
from tokenversion.core.errors import StoreUnavailable
from tokenversion.core.feed_protocol import Cursor, FeedSigner, FeedVerifier, generate_signing_key
from tokenversion.stores.feed import HttpFeedStore
from tokenversion.stores.redis import RedisStore
from tokenversion_server import services
from tokenversion_server.models import RevocationEvent
from tokenversion_server.publish import Publisher, feed_signer, redis_client

pytestmark = pytest.mark.django_db(transaction=True)
VERIFIER = FeedVerifier([FEED_VERIFY_KEY])


def redis_store(**options) -> RedisStore:
    """A ``RedisStore`` for this test run's issuer (the runtime fills it in from the settings; by hand, it is
    a value like any other)."""
    return RedisStore(issuer=get_settings().issuer, **options)


def actor():
    return services.Actor.system("remote-store-test")


@pytest.fixture(scope="session")
def redis_url() -> str:
    """The shared test Redis (``scripts/services.sh``): required, never skipped."""
    url = os.environ.get("TOKENVERSION_TEST_REDIS_URL")
    if not url:
        pytest.fail("TOKENVERSION_TEST_REDIS_URL is not set: run `bash scripts/services.sh start` and "
                    "`eval \"$(bash scripts/services.sh env)\"` (Redis is required, not optional)")
    return url


@pytest.fixture(scope="module")
def db_name(django_db_setup, django_db_blocker) -> str:
    with django_db_blocker.unblock():
        return connection.settings_dict["NAME"]


@pytest.fixture(scope="module")
def provider(db_name, jwks_server):
    web = WebProcess("provider", "provider.wsgi:application",
                     django_env("tests.feed_settings", db_name, jwks_server.issuer))
    web.start()
    yield web
    web.kill()


@pytest.fixture
def channel() -> str:
    return f"tokenversion:test:{uuid.uuid4().hex}"


def publisher_process(db_name: str, issuer: str, url: str, channel: str) -> Process:
    env = django_env("tests.feed_settings", db_name, issuer, TOKENVERSION_TEST_FEED_REDIS_URL=url,
                     TOKENVERSION_TEST_FEED_CHANNEL=channel)
    return Process("publisher", [sys.executable, "manage.py", "tokenversion_publisher", "--interval", "0.05"], env)


@pytest.fixture
def stores():
    """Stores built by a test, closed after it."""
    built = []
    yield built
    for store in built:
        store.close()


def feed_url(provider: WebProcess) -> str:
    return f"{provider.url}/tokenversion/feed"


def fresh(store) -> bool:
    return store.staleness() <= store.max_staleness


def version_seen(store, subject: str) -> int | None:
    """The version the store answers for ``subject``; None while it refuses to answer (stale)."""
    try:
        return store.view(services.resolve_issuer(None), subject, None).subject.token_version
    except StoreUnavailable:
        return None


def refuses(store) -> bool:
    try:
        store.view(services.resolve_issuer(None), "anyone", None)
    except StoreUnavailable:
        return True
    return False


# The HTTP feed.


def test_http_feed_store_sees_a_revocation_within_a_round_trip(provider, stores):
    services.revoke_user("before", reason="logout", actor=actor())
    store = HttpFeedStore(feed_url=feed_url(provider), secret=FEED_SECRET)
    stores.append(store)
    wait_until(lambda: fresh(store), 10, what="the first snapshot")
    assert version_seen(store, "before") == 1 and store.stats["snapshots"] == 1
    delays = []
    for n in range(1, 6):
        services.revoke_user("alice", reason="logout", actor=actor())
        committed = time.monotonic()
        wait_until(lambda n=n: version_seen(store, "alice") == n, 3, interval=0.005, what="the bump")
        delays.append(time.monotonic() - committed)
    print(f"HTTP feed: bump seen after {[round(d * 1000) for d in delays]} ms")
    assert max(delays) < 1.0  # the long-poll answers when the commit is seen, not at its timeout
    time.sleep(1.5)  # idle: the answers keep proving freshness
    assert fresh(store) and store.stats["feed_errors"] == 0


def test_http_feed_store_refuses_when_it_cannot_prove_freshness_then_recovers(provider, stores):
    store = HttpFeedStore(feed_url=feed_url(provider), secret=FEED_SECRET, timeout=1.0, max_staleness=0.5)
    stores.append(store)
    wait_until(lambda: fresh(store), 10, what="the first snapshot")
    provider.pause()  # the provider hangs: connections open, nothing answers
    try:
        paused = time.monotonic()
        wait_until(lambda: refuses(store), 3, what="the store to refuse")
        assert 0.4 < time.monotonic() - paused < 1.0  # the bound is 0.5 s: not earlier, not much later
        services.revoke_user("during", reason="compromise", actor=actor())
        assert store.stats["stale_refusals"] >= 1
    finally:
        provider.resume()
    wait_until(lambda: version_seen(store, "during") == 1, 10, what="recovery")


def test_http_feed_store_loses_nothing_across_a_provider_restart(provider, stores):
    store = HttpFeedStore(feed_url=feed_url(provider), secret=FEED_SECRET, timeout=1.0)
    stores.append(store)
    wait_until(lambda: fresh(store), 10, what="the first snapshot")
    subjects = [f"restart-{i}" for i in range(45)]
    refused_while_down = False
    for i, subject in enumerate(subjects):
        if i == 15:
            provider.kill()  # SIGKILL mid-stream: no goodbye
        if i == 30:
            refused_while_down = wait_until(lambda: refuses(store), 3, what="the store to go stale")
            provider.start()
        services.revoke_user(subject, reason="logout", actor=actor())
        time.sleep(0.01)
    assert refused_while_down  # it never accepted on a map it could not vouch for
    wait_until(lambda: all(version_seen(store, s) == 1 for s in subjects), 15, what="every revocation")
    assert store.stats["feed_errors"] >= 1 and store.stats["snapshots"] == 1  # resumed from its cursor


def test_a_forked_worker_restarts_its_own_sync_thread(provider, stores):
    """gunicorn --preload forks after the store may exist: the child must not rely on the parent's thread."""
    store = HttpFeedStore(feed_url=feed_url(provider), secret=FEED_SECRET)
    stores.append(store)
    wait_until(lambda: fresh(store), 10, what="the first snapshot")
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: no database, only the store
        code = 1
        try:
            os.close(read)
            wait_until(lambda: version_seen(store, "after-fork") == 1, 10, what="the child to see it")
            code = 0 if store._thread is not None and store._thread.is_alive() else 2
        finally:
            os.write(write, bytes([code]))
            os._exit(code)
    os.close(write)
    services.revoke_user("after-fork", reason="logout", actor=actor())
    result = os.read(read, 1)
    os.close(read)
    os.waitpid(pid, 0)
    assert result == b"\x00"


def test_a_restored_provider_database_makes_the_store_take_a_new_snapshot(provider, stores):
    services.revoke_user("first", reason="logout", actor=actor())
    store = HttpFeedStore(feed_url=feed_url(provider), secret=FEED_SECRET)
    stores.append(store)
    wait_until(lambda: fresh(store), 10, what="the first snapshot")
    known = store.cursor.safe
    # A restore to an older backup: the audit rows and the id sequence go back, so new revocations reuse
    # ids at or below the store's cursor. Without the anchor, the store would wait above them for ever.
    table = RevocationEvent._meta.db_table
    with connection.cursor() as cur:
        if connection.vendor == "postgresql":
            cur.execute(f"TRUNCATE {table} RESTART IDENTITY")
        else:
            cur.execute(f"DELETE FROM {table}")
            cur.execute("DELETE FROM sqlite_sequence WHERE name = %s", [table])
    rev = services.revoke_user("after-restore", reason="logout", actor=actor())
    assert rev.audit_id <= known
    wait_until(lambda: version_seen(store, "after-restore") == 1, 5, what="the new revocation")
    assert store.stats["cursor_expired"] == 1 and store.stats["snapshots"] == 2
    assert version_seen(store, "first") == 1  # what it knew stays: merges never go back


# Redis.


def publish_here(tv_settings, url: str, channel: str) -> None:
    """This test process publishes its revocations on Redis (the fast path), signed like the provider's."""
    tv_settings(REDIS_URL=url, REDIS_CHANNEL=channel, FEED_SECRETS=[FEED_SECRET], FEED_SIGNING_KEY=FEED_SIGNING_KEY)


def start_publisher(db_name, jwks_server, url, channel) -> Process:
    """The publisher process, once it is publishing (Django takes a while to start on a busy machine)."""
    process = publisher_process(db_name, jwks_server.issuer, url, channel).start()

    def publishing() -> bool:
        assert process.running, process.output()
        return "publishing on" in process.output()

    wait_until(publishing, 20, interval=0.05, what="the publisher to start")
    return process


def test_redis_store_fast_path_and_certified_freshness(provider, redis_url, channel, db_name, jwks_server, stores,
                                                       tv_settings):
    publish_here(tv_settings, redis_url, channel)
    publisher = start_publisher(db_name, jwks_server, redis_url, channel)
    try:
        store = redis_store(redis_url=redis_url, channel=channel, feed_url=feed_url(provider), secret=FEED_SECRET,
                           verify_keys=[FEED_VERIFY_KEY], poll_when_silent=False)
        stores.append(store)
        wait_until(lambda: fresh(store) and store.stats["heartbeats"] > 0, 15, what="certified freshness")
        delays = []
        for n in range(1, 11):
            services.revoke_user("alice", reason="logout", actor=actor())
            committed = time.monotonic()
            wait_until(lambda n=n: version_seen(store, "alice") == n, 2, interval=0.001, what="the bump")
            delays.append(time.monotonic() - committed)
        print(f"Redis: bump seen after {[round(d * 1000, 1) for d in delays]} ms")
        assert max(delays) < 0.1 and store.stats["fast_events"] >= 10
        time.sleep(0.5)
        assert fresh(store) and store.staleness() < 0.3  # heartbeats every 50 ms keep it fresh
        assert store.stats["silent_polls"] == 0 and store.stats["bad_messages"] == 0
    finally:
        publisher.stop()


def test_a_live_connection_without_a_publisher_is_not_fresh(provider, redis_url, channel, db_name, jwks_server,
                                                           stores):
    publisher = start_publisher(db_name, jwks_server, redis_url, channel)
    try:
        strict = redis_store(redis_url=redis_url, channel=channel, feed_url=feed_url(provider), secret=FEED_SECRET,
                            verify_keys=[FEED_VERIFY_KEY], poll_when_silent=False, max_staleness=0.5)
        polling = redis_store(redis_url=redis_url, channel=channel, feed_url=feed_url(provider), secret=FEED_SECRET,
                             verify_keys=[FEED_VERIFY_KEY], max_staleness=0.5)
        stores.extend([strict, polling])
        wait_until(lambda: fresh(strict) and fresh(polling), 15, what="certified freshness")
        publisher.kill()
        killed = time.monotonic()
        # Forged certificates do not help: unsigned, wrongly signed, or replayed with a stale as_of.
        client = redis_client(redis_url)
        try:
            for forged in (json.dumps({"type": "heartbeat", "run": "x", "n": 2, "as_of": time.time()}).encode(),
                           FeedSigner.from_pem(generate_signing_key()[0]).seal(
                               {"type": "heartbeat", "run": "x", "n": 2, "cursor": "v1.0.0.0", "as_of": time.time()},
                               channel, services.resolve_issuer(None))):
                for _ in range(3):
                    client.publish(channel, forged)
                    time.sleep(0.1)
        finally:
            client.close()
        wait_until(lambda: refuses(strict), 3, what="the strict store to refuse")
        assert time.monotonic() - killed > 0.4
        assert strict.stats["bad_messages"] >= 6 and strict.stats["connects"] == 1  # connected all along
        services.revoke_user("while-silent", reason="logout", actor=actor())
        wait_until(lambda: version_seen(polling, "while-silent") == 1, 3, what="the polling store to catch up")
        assert polling.stats["silent_polls"] >= 1 and fresh(polling)
        # The publisher is back: a new run; its hello is past the strict store's cursor, so it closes the gap.
        publisher = start_publisher(db_name, jwks_server, redis_url, channel)
        wait_until(lambda: version_seen(strict, "while-silent") == 1, 15, what="the strict store to recover")
        assert strict.stats["gap_closes"] >= 1
    finally:
        publisher.stop()


def test_killing_redis_mid_stream_loses_no_revocation(provider, db_name, jwks_server, stores, tv_settings):
    """A redis-server of our own is SIGKILLed while revocations stream in, then restarted. Pub/sub drops
    everything published meanwhile (a plain subscriber proves it); the store closes the gap from the HTTP
    feed and every revocation bites afterwards. While Redis is down it refuses rather than guess."""
    own = RedisServer().start()
    channel = "tokenversion:restart"
    publisher = start_publisher(db_name, jwks_server, own.url, channel)
    publish_here(tv_settings, own.url, channel)
    plain_seen: set[str] = set()
    stop_plain = threading.Event()

    def plain_subscriber():
        """What pub/sub alone gives: redis-py reconnects, resubscribes, and never knows what it missed."""
        import redis

        while not stop_plain.is_set():
            try:
                pubsub = redis.Redis.from_url(own.url, socket_timeout=1).pubsub(ignore_subscribe_messages=True)
                pubsub.subscribe(channel)
                while not stop_plain.is_set():
                    message = pubsub.get_message(timeout=0.05)
                    if message and message["type"] == "message":
                        opened = VERIFIER.open(message["data"], channel, services.resolve_issuer(None))
                        event = opened.get("event") or {}
                        plain_seen.add(event.get("subject", ""))
            except (redis.RedisError, OSError):
                time.sleep(0.05)

    plain = threading.Thread(target=plain_subscriber, daemon=True)
    plain.start()
    try:
        store = redis_store(redis_url=own.url, channel=channel, feed_url=feed_url(provider), secret=FEED_SECRET,
                           verify_keys=[FEED_VERIFY_KEY], poll_when_silent=False, timeout=1.0)
        stores.append(store)
        wait_until(lambda: fresh(store) and store.stats["heartbeats"] > 0, 15, what="certified freshness")
        subjects = [f"stream-{i}" for i in range(60)]
        refused_while_down = False
        for i, subject in enumerate(subjects):
            if i == 20:
                own.kill()
            if i == 40:
                refused_while_down = wait_until(lambda: refuses(store), 3, what="the store to go stale")
                own.start()
            services.revoke_user(subject, reason="logout", actor=actor())
            time.sleep(0.01)
        assert refused_while_down
        wait_until(lambda: all(version_seen(store, s) == 1 for s in subjects), 20, what="every revocation")
        assert store.stats["connects"] >= 2 and store.stats["gap_closes"] >= 1
        time.sleep(0.3)  # the plain subscriber has had every chance to catch up
        missed = [s for s in subjects if s not in plain_seen]
        # Everything committed while Redis was down, and until the publisher's new run began, was never
        # published: the new run starts from the current horizon and the store fetched the rest over HTTP.
        assert set(subjects[20:40]) <= set(missed), "the outage did not test gap closing"
        print(f"pub/sub alone missed {len(missed)} of {len(subjects)} revocations; the store missed none")
    finally:
        stop_plain.set()
        publisher.stop()
        own.stop()


def test_the_publisher_never_certifies_past_a_revocation_in_flight(redis_url, channel, tv_settings):
    """The out-of-order commit case, for the publisher: its heartbeats' cursor stays below an id whose
    transaction is still open, and the row is published before any heartbeat that covers it."""
    listener = redis_client(redis_url).pubsub()
    listener.subscribe(channel)
    wait_until(lambda: (listener.get_message(timeout=0.05) or {}).get("type") == "subscribe", 5,
               what="the subscription")
    tv_settings(FEED_SIGNING_KEY=FEED_SIGNING_KEY)
    issuer = services.resolve_issuer(None)
    publisher = Publisher(redis_client(redis_url), channel, feed_signer(), issuer, "default", interval=0.05)

    def messages():
        """Everything published until the channel has been quiet for 0.3 s."""
        out, quiet_until = [], time.monotonic() + 0.3
        while time.monotonic() < quiet_until:
            message = listener.get_message(timeout=0.05)
            if message and message["type"] == "message":
                out.append(VERIFIER.open(message["data"], channel, issuer))
                quiet_until = time.monotonic() + 0.3
        return out

    try:
        assert publisher.tick()
        hello, first = messages()[:2]
        assert (hello["type"], hello["n"], first["type"]) == ("hello", 1, "heartbeat")
        with revocation_held_open("slow", actor()):
            if connection.vendor == "postgresql":
                services.revoke_user("fast", reason="logout", actor=actor())
            publisher.tick()
        slow_id = RevocationEvent.objects.get(subject="slow").id
        during = messages()
        beats = [m for m in during if m["type"] == "heartbeat"]
        assert beats and all(Cursor.parse(m["cursor"]).safe < slow_id for m in beats)
        publisher.tick()
        after = messages()
        kinds = [(m["type"], (m.get("event") or {}).get("subject")) for m in after]
        assert ("event", "slow") in kinds
        last_beat = [m for m in after if m["type"] == "heartbeat"][-1]
        assert Cursor.parse(last_beat["cursor"]).safe >= slow_id
        assert kinds.index(("event", "slow")) < len(kinds) - 1  # before the heartbeat that covers it
        numbers = [m["n"] for m in [hello, first, *during[2:], *after] if m.get("run") == publisher.run]
        assert numbers == sorted(numbers)
    finally:
        listener.close()


# A real DRF service process with no database.


@pytest.mark.parametrize("kind", ["http", "redis"])
def test_a_service_without_the_providers_database_refuses_a_revoked_token(kind, provider, redis_url, channel, db_name,
                                                                          jwks_server, tv_settings):
    publisher = None
    if kind == "redis":
        publish_here(tv_settings, redis_url, channel)
        publisher = start_publisher(db_name, jwks_server, redis_url, channel)
        # No HTTP polling when silent: the service must be kept fresh by the publisher's heartbeats.
        store = "tokenversion.stores.redis.RedisStore"
        options = {"redis_url": redis_url, "channel": channel, "poll_when_silent": False,
                   "verify_keys": [FEED_VERIFY_KEY]}
    else:
        store, options = "tokenversion.stores.feed.HttpFeedStore", {}
    options.update(feed_url=feed_url(provider), secret=FEED_SECRET)
    service = WebProcess(f"service-{kind}", "tests.remote_service.wsgi:application", {
        "DJANGO_SETTINGS_MODULE": "tests.remote_service.settings",
        "TOKENVERSION_TEST_ISSUER": jwks_server.issuer,
        "REMOTE_SERVICE_STORE": store,
        "REMOTE_SERVICE_STORE_OPTIONS": json.dumps(options),
    })
    try:
        service.start()
        subject = f"svc-{kind}-{uuid.uuid4().hex[:8]}"
        old = {"Authorization": f"Bearer {jwks_server.mint(sub=subject, token_version=0)}"}
        status, body = wait_until(lambda: _ok(service.url + "/api/whoami", old), 10, what="the service to accept")
        assert body["sub"] == subject
        if kind == "redis":  # certified by the publisher's heartbeats, not by the start-up snapshot
            wait_until(lambda: http_get(service.url + "/health")[1]["stats"]["heartbeats"] > 0, 5,
                       what="certified heartbeats")
        services.revoke_user(subject, reason="compromise", actor=actor())
        committed = time.monotonic()
        status, body = wait_until(lambda: _refused(service.url + "/api/whoami", old), 3, interval=0.005,
                                  what="the service to refuse the old token")
        print(f"{kind}: the service refused the old token {(time.monotonic() - committed) * 1000:.0f} ms after commit")
        assert (status, body["code"]) == (401, "token_revoked")
        new = {"Authorization": f"Bearer {jwks_server.mint(sub=subject, token_version=1)}"}
        assert http_get(service.url + "/api/whoami", new)[0] == 200
        health = http_get(service.url + "/health")[1]
        assert health["staleness"] <= 1.0
        if kind == "redis":
            assert health["stats"]["heartbeats"] > 0 and health["stats"]["silent_polls"] == 0, json.dumps(health)
        else:  # the provider hangs: the service answers 503 rather than vouch for a stale map, then recovers
            provider.pause()
            try:
                status, body = wait_until(lambda: _status(service.url + "/api/whoami", new, 503), 3,
                                          what="the service to answer 503")
                assert body["code"] == "revocation_store_unavailable"
            finally:
                provider.resume()
            wait_until(lambda: _status(service.url + "/api/whoami", new, 200), 10, what="the service to recover")
    finally:
        service.kill()
        if publisher is not None:
            publisher.stop()


def _status(url, headers, expected):
    status, body = http_get(url, headers)
    return (status, body) if status == expected else None


def _ok(url, headers):
    status, body = http_get(url, headers)
    return (status, body) if status == 200 else None


def _refused(url, headers):
    status, body = http_get(url, headers)
    return (status, body) if status == 401 else None
