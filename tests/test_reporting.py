"""The service reporter (``tokenversion.reporting``) against a real loopback HTTP server that records what it
receives (``tests/report_recorder.py``): batching, the bounded queue and its drop counter, the provider
unreachable then back, 429 with Retry-After, fork safety, the last report at shutdown.

The store is a stand-in with the one method the reporter reads (``freshness``); the real stores' freshness is
tested at the end of this file and, through the front doors, in ``tests/test_reporting_doors.py``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests.report_recorder import ReportRecorder
from tokenversion.core.errors import ConfigurationError, TokenRevoked
from tokenversion.reporting import (
    MAX_BODY_BYTES,
    MAX_FRESHNESS_POINTS,
    Reporter,
    client_address,
    parse_networks,
)

ROOT = Path(__file__).resolve().parent.parent
KEY = "tvs_test-key"


class NowStore:
    """A store that reads at request time, like the database store without cache: fresh as of now."""

    def freshness(self) -> tuple[float, float]:
        now = time.time()
        return now, now


def revoked(sub: str = "alice", hit: str = "version", **claims) -> TokenRevoked:
    error = TokenRevoked("token version revoked", hit=hit)
    error.claims = {"iss": "http://127.0.0.1/realms/t", "sub": sub, "sid": "s-1", "jti": "j-1", "token_version": 1,
                    **claims}
    return error


def eventually(condition, timeout: float = 5.0) -> bool:
    """``condition()`` becomes true within ``timeout`` (the reporter reads the answer after the server sent it)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def use(reporter: Reporter, sub: str = "alice", **facts) -> None:
    facts = {"client_address": "203.0.113.9", "user_agent": "curl/8.0", "method": "GET", "path": "/api/orders",
             **facts}
    reporter.revoked_use(revoked(sub), **facts)


@pytest.fixture
def recorder():
    server = ReportRecorder(KEY)
    yield server
    server.stop()


@pytest.fixture
def make_reporter():
    made = []

    def make(url: str, **options) -> Reporter:
        options.setdefault("store", NowStore())
        reporter = Reporter(url, KEY, **options)
        made.append(reporter)
        return reporter

    yield make
    for reporter in made:
        reporter.close(bound=0.5)


def test_uses_are_batched_into_one_authenticated_report_of_the_contract(recorder, make_reporter):
    reporter = make_reporter(recorder.url, interval=0.5)
    before = time.time()
    for n in range(5):
        use(reporter, sub=f"user-{n}")
    assert recorder.wait_for(lambda r: len(r.uses()) == 5)
    with_uses = [report for report in recorder.reports if report["uses"]]
    assert len(with_uses) == 1, "five uses queued together are sent in one report"
    report = with_uses[0]
    assert report["instance"]["pid"] == os.getpid() and report["instance"]["store"] == "nowstore"
    assert report["instance"]["host"] and before - 1 < report["instance"]["started_at"] <= time.time()
    assert report["dropped"] == {"uses": 0, "freshness": 0}
    as_of = [point["as_of"] for point in report["freshness"]]
    assert as_of and as_of == sorted(as_of) and len(as_of) <= MAX_FRESHNESS_POINTS
    first = report["uses"][0]
    assert first == {"at": first["at"], "iss": "http://127.0.0.1/realms/t", "sub": "user-0", "sid": "s-1",
                     "jti": "j-1", "token_version": 1, "hit": "version", "client_address": "203.0.113.9",
                     "user_agent": "curl/8.0", "method": "GET", "path": "/api/orders"}
    assert before <= first["at"] <= time.time()
    headers = recorder.received[-1][2]
    assert headers["Content-Type"] == "application/json" and headers["Authorization"] == f"Bearer {KEY}"
    assert eventually(lambda: reporter.queue_length == 0 and reporter.stats["uses_sent"] == 5)


def test_a_report_with_nothing_new_is_a_heartbeat(recorder, make_reporter):
    reporter = make_reporter(recorder.url, interval=0.2)
    reporter.start()
    assert recorder.wait_for(lambda r: len(r.reports) >= 3)
    assert all(report["freshness"] and not report["uses"] for report in recorder.reports)


def test_long_strings_are_cut_and_a_report_stays_under_64_kib(recorder, make_reporter):
    reporter = make_reporter(recorder.url, interval=0.3)  # not started: the queue fills before the first report
    for n in range(100):
        reporter._queue.append((time.time(), revoked(f"user-{n}").claims, "session", "203.0.113.9", "u" * 5000,
                                "GET", "/p" * 2000))
    reporter.start()
    assert recorder.wait_for(lambda r: len(r.uses()) == 100)
    sizes = [int(headers["Content-Length"]) for _, _, headers in recorder.received]
    assert max(sizes) <= MAX_BODY_BYTES
    assert len([report for report in recorder.reports if report["uses"]]) >= 2, "split to stay under 64 KiB"
    assert {len(u["user_agent"]) for u in recorder.uses()} == {256}
    assert {len(u["path"]) for u in recorder.uses()} == {512}


def test_a_full_queue_drops_and_counts_and_the_next_report_says_so(recorder, make_reporter):
    recorder.stop()  # the provider unreachable: the uses wait in the queue
    reporter = make_reporter(recorder.url, interval=0.2, queue_size=3)
    for n in range(5):
        use(reporter, sub=f"user-{n}")
    assert reporter.queue_length == 3 and reporter.uses_dropped == 2
    recorder.start()
    assert recorder.wait_for(lambda r: len(r.uses()) == 3, timeout=10)
    assert [u["sub"] for u in recorder.uses()] == ["user-0", "user-1", "user-2"]
    first = next(report for report in recorder.reports if report["uses"])
    assert first["dropped"]["uses"] == 2
    assert recorder.wait_for(lambda r: len(r.reports) >= 2)
    assert recorder.reports[-1]["dropped"]["uses"] == 0, "counted once, in the first accepted report"


def test_provider_unreachable_then_back_catches_up(recorder, make_reporter):
    reporter = make_reporter(recorder.url, interval=0.1)
    reporter.start()
    assert recorder.wait_for(lambda r: len(r.reports) >= 1)
    recorder.stop()
    time.sleep(0.3)
    for n in range(4):
        use(reporter, sub=f"during-{n}")
    time.sleep(0.5)
    assert reporter.stats["reports_failed"] >= 1 and reporter.queue_length == 4
    down_at = time.time()
    recorder.start()
    assert recorder.wait_for(lambda r: len(r.uses()) == 4, timeout=10)
    assert [u["sub"] for u in recorder.uses()] == [f"during-{n}" for n in range(4)]
    catch_up = next(report for report in recorder.reports if report["uses"])
    # The freshness points gathered while it was down come along, coalesced to the contract's bound.
    assert 1 < len(catch_up["freshness"]) <= MAX_FRESHNESS_POINTS
    assert catch_up["freshness"][0]["as_of"] < down_at
    assert catch_up["dropped"]["uses"] == 0


def test_freshness_points_are_coalesced_while_the_provider_is_away(recorder, make_reporter):
    recorder.stop()
    reporter = make_reporter(recorder.url, interval=0.1)
    for n in range(200):  # far more points than a report may carry
        reporter._points.append((1000.0 + n, 1000.0 + n))
        if len(reporter._points) > MAX_FRESHNESS_POINTS:
            reporter._thin()
    recorder.start()
    reporter.start()
    assert recorder.wait_for(lambda r: len(r.reports) >= 1)
    points = recorder.reports[0]["freshness"]
    assert len(points) <= MAX_FRESHNESS_POINTS
    assert points[0]["as_of"] == 1000.0, "the oldest point is kept"
    assert recorder.reports[0]["dropped"]["freshness"] == reporter.stats["freshness_dropped"] > 0


def test_429_is_honoured_with_its_retry_after(recorder, make_reporter):
    recorder.answers = [(429, {"Retry-After": "2"})]
    reporter = make_reporter(recorder.url, interval=0.1)
    use(reporter)
    assert recorder.wait_for(lambda r: len(r.uses()) == 1, timeout=10)
    refused_at = recorder.received[0][0]
    accepted_at = next(at for at, status, _ in recorder.received if status == 202)
    assert recorder.received[0][1] == 429
    assert accepted_at - refused_at >= 1.9, "nothing sent before Retry-After"
    assert reporter.stats["rate_limited"] == 1


def test_a_report_refused_for_good_drops_its_uses_and_counts_them(recorder, make_reporter):
    recorder.answers = [(400, {})]
    reporter = make_reporter(recorder.url, interval=0.1)
    use(reporter, sub="bad")
    assert recorder.wait_for(lambda r: len(r.reports) >= 1, timeout=10)
    assert eventually(lambda: reporter.uses_dropped == 1 and reporter.queue_length == 0)
    assert recorder.wait_for(lambda r: r.reports and r.reports[-1]["dropped"]["uses"] == 1)


def test_a_refused_key_keeps_the_uses_for_when_it_is_fixed(recorder, make_reporter):
    reporter = Reporter(recorder.url, "tvs_wrong", store=NowStore(), interval=0.1)
    try:
        use(reporter)
        assert recorder.wait_for(lambda r: len(r.received) >= 2)
        assert {status for _, status, _ in recorder.received} == {401}
        assert reporter.queue_length == 1 and reporter.uses_dropped == 0
    finally:
        reporter.close(bound=0.2)


def test_a_forked_child_starts_its_own_thread_with_its_own_queue(recorder, make_reporter):
    reporter = make_reporter(recorder.url, interval=0.2)
    use(reporter, sub="parent")
    assert recorder.wait_for(lambda r: len(r.uses()) == 1)
    recorder.stop()  # the parent's next use waits in its queue while the child forks
    use(reporter, sub="parent-queued")
    recorder.start()
    pid = os.fork()
    if pid == 0:  # the child: idle, an empty queue, its own identity; the first use starts its thread
        ok = reporter.idle and reporter.queue_length == 0 and reporter._thread is None
        use(reporter, sub="child")
        reporter.close(bound=2.0)
        os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert recorder.wait_for(lambda r: {"child", "parent-queued"} <= {u["sub"] for u in r.uses()}, timeout=10)
    by_pid: dict[int, list[str]] = {}
    for report in recorder.reports:
        by_pid.setdefault(report["instance"]["pid"], []).extend(u["sub"] for u in report["uses"])
    assert by_pid[pid] == ["child"], "the child sends only its own uses, as its own instance"
    assert by_pid[os.getpid()] == ["parent", "parent-queued"]


def test_close_sends_the_last_report_within_its_bound(recorder, make_reporter):
    reporter = make_reporter(recorder.url, interval=60)
    use(reporter, sub="last")
    started = time.monotonic()
    reporter.close(bound=2.0)
    assert time.monotonic() - started < 2.6
    assert [u["sub"] for u in recorder.uses()] == ["last"]


def test_a_closed_reporter_does_not_start_again(recorder, make_reporter):
    reporter = make_reporter(recorder.url, interval=0.1)
    use(reporter)
    reporter.close(bound=1.0)
    use(reporter)  # a request late in the shutdown: queued, no thread
    assert reporter._thread is None and not reporter.idle


def test_close_is_bounded_when_the_provider_hangs(make_reporter):
    import socket

    hung = socket.socket()
    hung.bind(("127.0.0.1", 0))
    hung.listen(1)  # accepts the connection, never answers
    try:
        reporter = make_reporter(f"http://127.0.0.1:{hung.getsockname()[1]}/tokenversion/reports", interval=60)
        use(reporter)
        started = time.monotonic()
        reporter.close(bound=0.5)
        assert time.monotonic() - started < 1.5
    finally:
        hung.close()


def test_a_process_that_exits_sends_its_last_report(recorder):
    script = textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {str(ROOT)!r})
        from tests.test_reporting import NowStore, use
        from tokenversion.reporting import Reporter
        reporter = Reporter({recorder.url!r}, {KEY!r}, store=NowStore(), interval=60)
        use(reporter, sub="at-exit")
        print("queued", flush=True)
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=30,
                            cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert [u["sub"] for u in recorder.uses()] == ["at-exit"]


def test_bad_options_are_one_clear_error():
    with pytest.raises(ConfigurationError) as excinfo:
        Reporter("ftp://provider/reports", "", interval=0)
    message = str(excinfo.value)
    assert "REPORT_URL must be" in message and "REPORT_KEY" in message and "REPORT_INTERVAL" in message


# Client addresses.

def test_x_forwarded_for_is_read_only_from_a_trusted_proxy():
    trusted = parse_networks(["127.0.0.1", "10.0.0.0/8"])
    forged = "6.6.6.6, 203.0.113.9"
    assert client_address("198.51.100.7", forged, trusted) == "198.51.100.7", "not a proxy: its own address"
    assert client_address("127.0.0.1", forged, ()) == "127.0.0.1", "no trusted proxies: never read"
    assert client_address("127.0.0.1", forged, trusted) == "203.0.113.9", "the right-most untrusted entry"
    assert client_address("127.0.0.1", "203.0.113.9, 10.1.2.3", trusted) == "203.0.113.9", "proxies skipped"
    assert client_address("127.0.0.1", "junk, 10.1.2.3", trusted) == "10.1.2.3", "a bad entry stops the walk"
    assert client_address("127.0.0.1", "[2001:db8::1]:443", trusted) == "2001:db8::1"
    with pytest.raises(ValueError, match="not an IP address"):
        parse_networks(["10.0.0.0/33"])


# The real stores' freshness.

def test_a_remote_store_s_freshness_is_its_mark_on_the_wall_clock():
    from tokenversion.stores.feed import HttpFeedStore

    store = HttpFeedStore(feed_url="http://127.0.0.1:9/tokenversion/feed", secret="s", autostart=False)
    assert store.freshness() is None, "never proven fresh: no claim"
    store.mark_fresh(time.monotonic() - 0.25)
    as_of, reached_at = store.freshness()
    now = time.time()
    assert now - 0.35 < as_of < now - 0.2
    assert now - 0.1 < reached_at <= now
    store.mark_fresh(time.monotonic() - 10)  # an older proof never moves freshness back
    assert store.freshness()[0] == pytest.approx(as_of, abs=0.01)


@pytest.mark.django_db
def test_the_database_store_is_fresh_as_of_now_minus_its_cache_ttl():
    from tokenversion_server.store import DatabaseStore

    now = time.time()
    as_of, reached_at = DatabaseStore(cache_ttl=0).freshness()
    assert as_of == reached_at and now <= as_of <= time.time()
    as_of, reached_at = DatabaseStore(cache_ttl=1.0).freshness()
    assert reached_at - as_of == pytest.approx(1.0)


def test_the_report_is_json_the_contract_names():
    """Every key of the contract's example body, and no other (docs/contract.md, "Service reports")."""
    reporter = Reporter("http://127.0.0.1:9/tokenversion/reports", KEY, store=NowStore())
    use(reporter)
    reporter._sample()
    body = json.loads(reporter._body()[0])
    reporter.close(bound=0.1)
    assert set(body) == {"instance", "freshness", "uses", "dropped"}
    assert set(body["instance"]) == {"host", "pid", "started_at", "store"}
    assert set(body["uses"][0]) == {"at", "iss", "sub", "sid", "jti", "token_version", "hit", "client_address",
                                    "user_agent", "method", "path"}
