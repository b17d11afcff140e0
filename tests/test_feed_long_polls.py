"""Long-polls on the HTTP feed cannot starve the claims endpoint (issue 9 item 7).

Each waiting long-poll holds a worker thread. Before the cap, enough feed clients held every thread of a
provider process, and Keycloak's calls to the claims endpoint (at every token issue) queued behind them. Now
at most ``FEED_MAX_LONG_POLLS`` wait at once per process; a further one is answered 503 ``feed_busy`` with
``Retry-After`` at once, and the claims endpoint keeps answering. Real concurrent requests against the
provider under gunicorn (1 worker, 4 threads, cap 2), as in production.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request

import pytest
from django.db import connection

from tests.conftest import MAPPER_SECRET
from tests.feed_settings import FEED_SECRET
from tests.longpoll_settings import LONG_POLL_CAP
from tests.remote_helpers import WebProcess, django_env, gunicorn, http_get, wait_until
from tokenversion.stores.feed import HttpFeedStore
from tokenversion_server import services

pytestmark = pytest.mark.django_db(transaction=True)

THREADS = 4
SUB = "5b7f0b36-8d0e-4a35-9f49-7a5ad1b0c0d4"


class SmallProvider(WebProcess):
    """The provider under gunicorn as in remote_helpers, but with few threads: the cap must leave some free."""

    def start(self, timeout: float = 30) -> WebProcess:
        self.process = gunicorn(self.name, self.app, self.port, self.env, threads=THREADS).start()

        def ready() -> bool:
            if not self.process.running:
                raise AssertionError(f"{self.name} exited:\n{self.process.output()}")
            try:
                return http_get(self.url + "/health", timeout=1)[0] == 200
            except OSError:
                return False

        wait_until(ready, timeout, interval=0.05, what="the provider to serve")
        return self


@pytest.fixture(scope="module")
def provider(django_db_setup, django_db_blocker, jwks_server):
    with django_db_blocker.unblock():
        db_name = connection.settings_dict["NAME"]
    web = SmallProvider("provider-capped", "provider.wsgi:application",
                        django_env("tests.longpoll_settings", db_name, jwks_server.issuer))
    web.start()
    yield web
    web.kill()


def hold(provider: WebProcess, after: str, wait: float, answers: list[int]) -> None:
    """A feed client's long-poll; refused while a probe briefly held a slot, it asks again."""
    while (status := feed(provider, f"events?after={after}&wait={wait}")[0]) == 503:
        time.sleep(0.02)
    answers.append(status)


def cap_reached(provider: WebProcess, after: str) -> bool:
    """A probe that waits 10 ms when admitted, so it never holds a slot for long itself."""
    return feed(provider, f"events?after={after}&wait=0.01", timeout=10)[0] == 503


def feed(provider: WebProcess, path: str, timeout: float = 30.0) -> tuple[int, dict, dict[str, str]]:
    request = urllib.request.Request(f"{provider.url}/tokenversion/feed/{path}",
                                     headers={"X-TokenVersion-Secret": FEED_SECRET})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read()), dict(response.headers)
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, json.loads(exc.read()), dict(exc.headers)


def claims(provider: WebProcess) -> int:
    request = urllib.request.Request(f"{provider.url}/tokenversion/claims", data=json.dumps({"sub": SUB}).encode(),
                                     headers={"X-TokenVersion-Secret": MAPPER_SECRET,
                                              "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=5) as response:
        return response.status


def cursor(provider: WebProcess) -> str:
    """A cursor at the head of the audit trail, so that a long-poll from it waits. One revocation first: the
    test database is flushed between tests, and ids handed out before a flush would wake it at once."""
    services.revoke_realm(actor=services.Actor.system("long-poll test"))
    status, body, _ = feed(provider, f"snapshot?since={time.time() - 60:.0f}")
    assert status == 200, body
    return body["cursor"]


def test_past_the_cap_a_long_poll_is_refused_at_once_and_claims_still_answer(provider):
    after = cursor(provider)
    answers: list[int] = []
    waiting = [threading.Thread(target=hold, args=(provider, after, 20, answers)) for _ in range(LONG_POLL_CAP)]
    for thread in waiting:
        thread.start()
    try:
        # The cap is reached once both wait; a further long-poll is then refused at once, not after 20 s.
        wait_until(lambda: cap_reached(provider, after), 10, interval=0.05, what="the cap to be reached")
        sent = time.monotonic()
        status, body, headers = feed(provider, f"events?after={after}&wait=20", timeout=10)
        took = time.monotonic() - sent
        assert status == 503, body
        assert body["error"] == "feed_busy" and headers["Retry-After"] == "1"
        assert took < 5  # answered at once: the wait it asked for was 20 s
        # The long-polls hold LONG_POLL_CAP of the THREADS threads; Keycloak's claims calls still get answers,
        # several at once.
        results: list[int] = []
        callers = [threading.Thread(target=lambda: results.append(claims(provider))) for _ in range(THREADS)]
        for caller in callers:
            caller.start()
        for caller in callers:
            caller.join()
        assert results == [200] * THREADS
        # A poll without wait is never refused: it holds a thread only for its own answer.
        assert feed(provider, f"events?after={after}")[0] == 200
        assert answers == []  # the long-polls were still waiting all along
    finally:
        services.revoke_realm(actor=services.Actor.system("long-poll test"))  # wakes the waiting polls
        for thread in waiting:
            thread.join(30)
    assert answers == [200] * LONG_POLL_CAP
    # Their slots are free again.
    assert feed(provider, f"events?after={after}&wait=0.2")[0] == 200


def test_a_feed_store_past_the_cap_counts_feed_errors_backs_off_and_recovers(provider):
    """The service side: HttpFeedStore takes 503 feed_busy as a feed error, backs off (no tight loop), refuses
    once its map is stale (fail closed), and is fresh again once a slot frees."""
    after = cursor(provider)
    holders = [threading.Thread(target=hold, args=(provider, after, 4, [])) for _ in range(LONG_POLL_CAP)]
    for thread in holders:
        thread.start()
    wait_until(lambda: cap_reached(provider, after), 10, interval=0.05, what="the cap to be reached")
    store = HttpFeedStore(f"{provider.url}/tokenversion/feed", FEED_SECRET, max_staleness=1.0,
                          transport="poll")  # long-polls: streams have their own cap
    try:
        store.start()
        wait_until(lambda: store.stats["feed_errors"] >= 2, 10, what="the store to meet the cap")
        time.sleep(1.5)
        errors = store.stats["feed_errors"]
        # Backing off 0.05 s doubling to 0.5 s: a handful of attempts in ~2 s, not hundreds.
        assert 2 <= errors <= 15, errors
        assert store.staleness() > store.max_staleness  # it cannot prove freshness: it refuses
        for thread in holders:
            thread.join(10)
        wait_until(lambda: store.staleness() <= store.max_staleness, 10, what="the store to be fresh again")
    finally:
        store.close()

