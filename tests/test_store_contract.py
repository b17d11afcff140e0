"""One contract, every store: the same cases over the database store, the HTTP-feed store and the Redis store.

A store answers ``view(issuer, subject, sid)`` with what the revocation rules need, sees a revocation committed
elsewhere within its staleness bound, refuses (``StoreUnavailable``) rather than answer from state it cannot
vouch for, and can be closed (twice, harmlessly). The revocations here are real ones, committed through the
provider's services; the remote stores read them from a real provider process (gunicorn) and, for Redis, a real
publisher over a real Redis server.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Callable, Iterator

import pytest
from django.db import connection

from tests.conftest import database_down
from tests.feed_settings import FEED_SECRET, FEED_VERIFY_KEY
from tests.remote_helpers import WebProcess, django_env, wait_until
from tests.test_remote_stores import publish_here, redis_url, start_publisher  # noqa: F401  (redis_url: a fixture)
from tokenversion.conf import get_settings
from tokenversion.core.errors import StoreUnavailable
from tokenversion.core.revocation import RevocationStore, RevocationView
from tokenversion.stores.feed import HttpFeedStore
from tokenversion.stores.redis import RedisStore
from tokenversion_server import services
from tokenversion_server.store import DatabaseStore

pytestmark = pytest.mark.django_db(transaction=True)

KINDS = ["database", "http-feed", "redis"]


def redis_store(**options) -> RedisStore:
    """A ``RedisStore`` for this test run's issuer (the runtime fills it in from the settings; by hand, it is
    a value like any other)."""
    return RedisStore(issuer=get_settings().issuer, **options)


def actor():
    return services.Actor.system("store contract")


class Harness:
    """A store of one kind, and a way to cut it off from its source of truth."""

    def __init__(self, store: RevocationStore, cut: Callable[[], object], bound: float) -> None:
        self.store, self.cut, self.bound = store, cut, bound

    def view(self, subject: str, sid: str | None = None) -> RevocationView:
        return self.store.view(services.resolve_issuer(None), subject, sid)

    def eventually(self, condition: Callable[[RevocationView], bool], subject: str, sid: str | None = None,
                   what: str = "the revocation") -> RevocationView:
        def seen():
            try:
                view = self.view(subject, sid)
            except StoreUnavailable:
                return None
            return view if condition(view) else None

        return wait_until(seen, self.bound + 5, interval=0.01, what=what)


@contextlib.contextmanager
def paused(web: WebProcess) -> Iterator[None]:
    """The provider hangs (SIGSTOP): connections open, nothing answers."""
    web.pause()
    try:
        yield
    finally:
        web.resume()


@pytest.fixture(scope="module")
def db_name(django_db_setup, django_db_blocker) -> str:
    with django_db_blocker.unblock():
        return connection.settings_dict["NAME"]


@pytest.fixture(scope="module")
def provider(db_name, jwks_server) -> Iterator[WebProcess]:
    web = WebProcess("provider", "provider.wsgi:application",
                     django_env("tests.feed_settings", db_name, jwks_server.issuer))
    web.start()
    yield web
    web.kill()


@pytest.fixture(params=KINDS)
def harness(request, tv_settings) -> Iterator[Harness]:
    kind = request.param
    if kind == "database":
        tv_settings(CACHE_TTL=0.2)
        store = DatabaseStore()
        yield Harness(store, database_down, bound=0.2)
    elif kind == "http-feed":
        provider = request.getfixturevalue("provider")
        store = HttpFeedStore(feed_url=f"{provider.url}/tokenversion/feed", secret=FEED_SECRET, timeout=1.0,
                              max_staleness=0.5)
        wait_until(lambda: store.staleness() <= store.max_staleness, 15, what="the first snapshot")
        yield Harness(store, lambda: paused(provider), bound=0.5)
    else:
        provider = request.getfixturevalue("provider")
        redis_url = request.getfixturevalue("redis_url")
        db_name, jwks = request.getfixturevalue("db_name"), request.getfixturevalue("jwks_server")
        channel = f"tokenversion:contract:{uuid.uuid4().hex}"
        publish_here(tv_settings, redis_url, channel)
        publisher = [start_publisher(db_name, jwks, redis_url, channel)]

        @contextlib.contextmanager
        def publisher_stopped() -> Iterator[None]:
            """Redis stays up; the certifying publisher is gone, so nothing proves freshness any more."""
            publisher[0].kill()
            try:
                yield
            finally:
                publisher[0] = start_publisher(db_name, jwks, redis_url, channel)

        store = redis_store(redis_url=redis_url, channel=channel, feed_url=f"{provider.url}/tokenversion/feed",
                           secret=FEED_SECRET, verify_keys=[FEED_VERIFY_KEY], poll_when_silent=False,
                           max_staleness=0.5)
        wait_until(lambda: store.staleness() <= store.max_staleness and store.stats["heartbeats"] > 0, 20,
                   what="certified freshness")
        try:
            yield Harness(store, publisher_stopped, bound=0.5)
        finally:
            publisher[0].kill()
    store.close()


def test_the_store_implements_the_interface(harness):
    assert isinstance(harness.store, RevocationStore)
    assert callable(harness.store.close)


def test_an_unknown_subject_is_at_version_zero_with_nothing_revoked(harness):
    view = harness.view(f"nobody-{uuid.uuid4()}", f"sid-{uuid.uuid4()}")
    assert view.subject.token_version == 0
    assert view.session_revoked is False
    assert view.realm_not_before is None


def test_a_user_revocation_is_seen_within_the_bound(harness):
    subject, other = f"user-{uuid.uuid4()}", f"other-{uuid.uuid4()}"
    harness.view(subject)  # cached or mapped before the revocation: it must not hide it
    services.revoke_user(subject, reason="logout", actor=actor())
    committed = time.monotonic()
    assert harness.eventually(lambda v: v.subject.token_version == 1, subject).subject.token_version == 1
    assert time.monotonic() - committed <= harness.bound + 1.0
    services.revoke_user(subject, reason="compromise", actor=actor())
    harness.eventually(lambda v: v.subject.token_version == 2, subject)
    assert harness.view(other).subject.token_version == 0  # nobody else moved


def test_a_session_revocation_is_seen_and_only_for_that_session(harness):
    subject, sid, other_sid = f"user-{uuid.uuid4()}", f"sid-{uuid.uuid4().hex}", f"sid-{uuid.uuid4().hex}"
    services.revoke_session(sid, subject=subject, reason="logout", actor=actor())
    harness.eventually(lambda v: v.session_revoked, subject, sid)
    assert harness.view(subject, other_sid).session_revoked is False
    assert harness.view(subject, sid).subject.token_version == 0  # a session revocation bumps no version


def test_a_realm_revocation_is_seen_with_its_instant(harness):
    before = time.time()
    services.revoke_realm(reason="admin", actor=actor())
    view = harness.eventually(lambda v: v.realm_not_before is not None, f"anyone-{uuid.uuid4()}")
    assert before - 1 <= view.realm_not_before <= time.time() + 1


def test_the_store_refuses_when_cut_off_from_its_source(harness):
    subject = f"user-{uuid.uuid4()}"
    harness.view(subject)
    with harness.cut():
        def refuses() -> bool:
            try:
                harness.view(f"fresh-{uuid.uuid4()}")
            except StoreUnavailable:
                return True
            return False

        wait_until(refuses, harness.bound + 5, interval=0.02, what="the store to refuse")
    harness.eventually(lambda v: True, subject, what="the store to answer again")


def test_close_twice_is_harmless(harness):
    harness.store.close()
    harness.store.close()


def test_the_remote_stores_take_values_and_need_no_django():
    """Built by hand, as a FastAPI service or a script does: no Django settings anywhere in the process, and
    bad options are the core's ConfigurationError, not Django's."""
    import subprocess
    import sys

    script = """
import sys
from tokenversion.core.errors import ConfigurationError
from tokenversion.core.revocation_map import window_for
from tokenversion.stores.feed import HttpFeedStore
from tokenversion.stores.redis import RedisStore
try:
    RedisStore(redis_url="redis://127.0.0.1:9/0", feed_url="http://127.0.0.1:9/f", secret="s" * 40)
except ConfigurationError as exc:
    assert "issuer" in str(exc) and "verify_keys" in str(exc), exc
store = HttpFeedStore(feed_url="http://127.0.0.1:9/tokenversion/feed", secret="s" * 40, autostart=False,
                      max_token_lifetime=600, leeway=5, margin=60)
assert store.map.window == window_for(600, 5, 60), store.map.window  # the values given, not settings
store.close()
assert not [m for m in sys.modules if m == "django" or m.startswith("django.")], "Django was imported"
print("ok")
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60,
                            env={"PATH": "/usr/bin:/bin"})
    assert result.stdout.strip() == "ok", result.stderr
