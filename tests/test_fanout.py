"""The feed's fan-out: long-polls woken by one change share one read of the audit trail, and the stream
(``/tokenversion/feed/stream``, server-sent events) keeps one response open per service.

The store tests run against the provider served by gunicorn (``remote_helpers``), as the remote-store tests
do; the revocations are made in this test process and commit to the database the provider reads. The
freshness-proof tests also use a loopback server that sends scripted frames: the real provider only sends
well-formed frames, and what must be shown there is what the *client* does with a frame that proves nothing.
"""

from __future__ import annotations

import http.server
import json
import threading
import time

import pytest
from django.db import connection, connections
from django.test import Client

from tests.feed_settings import FEED_SECRET
from tests.remote_helpers import WebProcess, django_env, wait_until
from tokenversion.core.errors import StoreUnavailable
from tokenversion.core.feed_protocol import Cursor
from tokenversion.stores.feed import HttpFeedStore
from tokenversion.stores.remote import FeedClient, FeedError, StreamSilent
from tokenversion_server import fanout, feed, feedlog, services
from tokenversion_server.models import RevocationEvent

pytestmark = pytest.mark.django_db(transaction=True)

SNAPSHOT, EVENTS, STREAM = "/tokenversion/feed/snapshot", "/tokenversion/feed/events", "/tokenversion/feed/stream"


def actor():
    return services.Actor.system("fanout-test")


@pytest.fixture
def in_process(tv_settings):
    tv_settings(FEED_SECRETS=[FEED_SECRET], FEED_POLL_INTERVAL=0.02, FEED_MAX_STREAMS=8)
    yield
    feed.stop_watchers()
    fanout.stop_broadcasters()


def get(path: str, **params):
    # As under gunicorn's gthread worker: the stream is served only by a server with threads.
    return Client().get(path, params, HTTP_X_TOKENVERSION_SECRET=FEED_SECRET, **{"wsgi.multithread": True})


def first_cursor() -> str:
    response = get(SNAPSHOT, since=f"{time.time() - 3600:.3f}")
    assert response.status_code == 200, response.content
    return response.json()["cursor"]


# Shared pages (long-poll).


def test_long_polls_woken_by_one_revocation_share_one_read(in_process, monkeypatch):
    """Eight services long-poll at the same cursor; one revocation wakes them all. The audit trail is read
    once for all eight (before pages were shared, it was read eight times), and every answer holds the
    revocation with a non-negative as_of of its own."""
    cursor = first_cursor()
    reads = []
    real_read = feedlog.read_events

    def counting_read(using, after, limit):
        reads.append(after)
        return real_read(using, after, limit)

    monkeypatch.setattr(feedlog, "read_events", counting_read)
    answers: list = [None] * 8

    def poll(i: int) -> None:
        try:
            answers[i] = get(EVENTS, after=cursor, wait="10")
        finally:
            connections.close_all()

    threads = [threading.Thread(target=poll, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    wait_until(lambda: feed.watcher_for("default").waiters == 8, 10, what="eight waiting polls")
    rev = services.revoke_user("alice", reason="logout", actor=actor())
    for thread in threads:
        thread.join(15)
    bodies = [a.json() for a in answers]
    assert all(a.status_code == 200 for a in answers)
    assert all([e["id"] for e in b["events"]] == [rev.audit_id] for b in bodies)
    assert {b["cursor"] for b in bodies} == {bodies[0]["cursor"]}
    assert Cursor.parse(bodies[0]["cursor"]).safe >= rev.audit_id
    assert all(b["as_of"] >= 0 and b["more"] is False and b["settled"] is True for b in bodies)
    assert len(reads) == 1, reads


def test_a_page_read_before_a_poll_arrived_is_not_shared_with_it(in_process):
    """A page proves freshness only for requests that arrived before it was read: a later poll at the same
    position reads again, so its as_of is never a claim about an instant before it asked."""
    cursor = first_cursor()
    built = fanout.shared_pages.built
    first = get(EVENTS, after=cursor).json()
    second = get(EVENTS, after=cursor).json()
    assert fanout.shared_pages.built == built + 2
    assert first["as_of"] >= 0 and second["as_of"] >= 0


class Statements:
    """Counts the SQL statements each thread runs (Django's cursor wrapper, so every backend alike)."""

    def __init__(self, monkeypatch) -> None:
        from django.db.backends import utils

        self.by_thread: dict[int, int] = {}
        self._lock = threading.Lock()
        real = utils.CursorWrapper._execute

        def counting(cursor, sql, params, *rest):
            with self._lock:
                ident = threading.get_ident()
                self.by_thread[ident] = self.by_thread.get(ident, 0) + 1
            return real(cursor, sql, params, *rest)

        monkeypatch.setattr(utils.CursorWrapper, "_execute", counting)

    def of(self, idents) -> int:
        return sum(self.by_thread.get(i, 0) for i in idents)


def test_statements_per_long_poll_answer(in_process, monkeypatch):
    """What docs/scaling.md quotes. On its own, an answer whose cursor moves costs 6 statements on PostgreSQL
    (cursor check 2, settle 2, rows 1, new cursor 1; SQLite has no lock list: 5). Eight polls woken by one
    revocation cost 2 each (the check before waiting) plus one shared page of 4, not 8 x 6."""
    postgres = connection.vendor == "postgresql"
    cursor = first_cursor()
    services.revoke_user("frank", reason="logout", actor=actor())
    statements = Statements(monkeypatch)
    body = get(EVENTS, after=cursor).json()
    assert body["cursor"] != cursor and statements.of([threading.get_ident()]) == (6 if postgres else 5)
    cursor = body["cursor"]
    answers: list = [None] * 8
    idents: list[int] = []

    def poll(i: int) -> None:
        idents.append(threading.get_ident())
        try:
            answers[i] = get(EVENTS, after=cursor, wait="10")
        finally:
            connections.close_all()

    threads = [threading.Thread(target=poll, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    wait_until(lambda: feed.watcher_for("default").waiters == 8, 10, what="eight waiting polls")
    services.revoke_user("frank", reason="logout", actor=actor())
    for thread in threads:
        thread.join(15)
    assert all(a.status_code == 200 and a.json()["events"] for a in answers)
    assert statements.of(idents) == 8 * 2 + (4 if postgres else 3)


# The stream endpoint, in process.


def frames(response, count: int) -> list[dict]:
    """The next ``count`` frames of an open stream response."""
    out, data = [], None
    for chunk in response.streaming_content:
        for line in chunk.decode().splitlines(keepends=True):
            if line.startswith("data: "):
                data = json.loads(line[6:])
            elif line == "\n" and data is not None:
                out.append(data)
                data = None
        if len(out) >= count:
            return out
    return out


def test_the_stream_sends_each_revocation_then_heartbeats_with_as_of(in_process):
    cursor = first_cursor()
    response = get(STREAM, after=cursor, beat="0.1")
    assert response.status_code == 200 and response["Content-Type"] == "text/event-stream"
    assert response["Cache-Control"] == "no-store"
    try:
        opening = frames(response, 1)[0]  # the stream's own first read: proves freshness at once
        assert opening["events"] == [] and opening["as_of"] >= 0 and opening["cursor"] == cursor
        rev = services.revoke_user("bob", reason="logout", actor=actor())
        seen: list[dict] = []
        wait_until(lambda: seen.extend(frames(response, 1)) or any(f["events"] and f["as_of"] for f in seen), 5,
                   interval=0, what="the revocation's certified frame")
        fast, certified = [f for f in seen if f["events"]][:2]
        # First the fast frame (committed in this process): the event, but no proof and the cursor unmoved;
        # then the broadcaster's read, which certifies it.
        assert [e["id"] for e in fast["events"]] == [rev.audit_id] and fast["events"][0]["subject"] == "bob"
        assert fast["as_of"] is None and fast["cursor"] == cursor
        assert [e["id"] for e in certified["events"]] == [rev.audit_id] and certified["as_of"] >= 0
        # The cursor moves past it once its id is settled: on SQLite that can take the broadcaster one more read.
        wait_until(lambda: seen.extend(frames(response, 1))
                   or any(Cursor.parse(f["cursor"]).safe >= rev.audit_id for f in seen), 5, interval=0,
                   what="the cursor to move past the revocation")
        frame = next(f for f in seen if Cursor.parse(f["cursor"]).safe >= rev.audit_id)
        assert frame["as_of"] >= 0
        beats = frames(response, 3)  # nothing happens: heartbeats, each a proof read later than the last
        assert all(f["events"] == [] and f["cursor"] == frame["cursor"] for f in beats)
        as_ofs = [frame["as_of"]] + [f["as_of"] for f in beats]
        assert as_ofs == sorted(as_ofs) and as_ofs[-1] > as_ofs[0]
    finally:
        response.close()
    assert fanout.stream_slots.open == 0


def test_open_streams_share_the_broadcasters_one_read_per_revocation(in_process, monkeypatch):
    """Four streams at the same cursor: a revocation is read from the trail once, by the broadcaster, and the
    streams only forward it; none reads the trail itself once it has caught up."""
    cursor = first_cursor()
    reads: list[str] = []
    real_read = feedlog.read_events

    def counting_read(using, after, limit):
        reads.append(threading.current_thread().name)
        return real_read(using, after, limit)

    monkeypatch.setattr(feedlog, "read_events", counting_read)
    opened = threading.Barrier(5)
    got: list = [None] * 4

    def follow(i: int) -> None:
        response = get(STREAM, after=cursor, beat="20")  # no heartbeat during the test
        try:
            frames(response, 1)
            opened.wait(10)
            while got[i] is None:
                frame = frames(response, 1)[0]
                if frame["events"] and frame["as_of"] is not None:  # the certified frame (after the fast one)
                    got[i] = frame
        finally:
            response.close()
            connections.close_all()

    threads = [threading.Thread(target=follow, args=(i,), name=f"stream-{i}") for i in range(4)]
    for thread in threads:
        thread.start()
    opened.wait(10)
    broadcaster = fanout.broadcaster_for("default")
    wait_until(lambda: broadcaster.seq >= 1, 5, what="the broadcaster's first read")  # its start-up read
    time.sleep(0.1)
    del reads[:]
    rev = services.revoke_user("gina", reason="logout", actor=actor())
    for thread in threads:
        thread.join(15)
    assert all(g is not None and [e["id"] for e in g["events"]] == [rev.audit_id] for g in got)
    assert not [name for name in reads if name.startswith("stream-")]  # the streams read nothing themselves
    assert 1 <= len(reads) <= 2, reads  # the broadcaster: once (twice if its tick saw the commit before the poke)


def test_the_stream_refuses_bad_input_an_expired_cursor_and_too_many_streams(in_process, tv_settings):
    for query, code in (({}, "invalid_request"), ({"after": "v1.5.6.0"}, "invalid_cursor"),
                        ({"after": "v1.0.0.0", "beat": "0.001"}, "invalid_request"),
                        ({"after": "v1.0.0.0", "wait": "1"}, "invalid_request")):
        response = get(STREAM, **query)
        assert response.status_code == 400 and response.json()["error"] == code, (query, response.content)
    assert Client().get(STREAM, {"after": "v1.0.0.0"}).status_code == 401
    services.revoke_user("carol", reason="logout", actor=actor())
    good = Cursor.parse(first_cursor())
    forged = Cursor(good.safe, good.anchor_id, good.anchor_us + 1)  # the same id, another row: restored data
    response = get(STREAM, after=str(forged))
    assert response.status_code == 410 and response.json()["error"] == "cursor_expired"
    tv_settings(FEED_MAX_STREAMS=1)
    held = get(STREAM, after=str(good))
    try:
        assert held.status_code == 200
        refused = get(STREAM, after=str(good))
        assert refused.status_code == 503 and refused["Retry-After"] == "1"
    finally:
        held.close()
    again = get(STREAM, after=str(good))
    assert again.status_code == 200
    again.close()


# The store over the stream, against the provider under gunicorn.


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
def stores():
    built = []
    yield built
    for store in built:
        store.close()


def feed_url(provider: WebProcess) -> str:
    return f"{provider.url}/tokenversion/feed"


def fresh(store) -> bool:
    return store.staleness() <= store.max_staleness


def version_seen(store, subject: str) -> int | None:
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


def test_the_stream_store_sees_revocations_and_stays_fresh_without_polling(provider, stores):
    services.revoke_user("before", reason="logout", actor=actor())
    store = HttpFeedStore(feed_url=feed_url(provider), secret=FEED_SECRET)  # transport="stream": the default
    stores.append(store)
    assert store.transport == "stream"
    wait_until(lambda: fresh(store), 10, what="the first snapshot")
    assert version_seen(store, "before") == 1
    delays = []
    for n in range(1, 6):
        services.revoke_user("dora", reason="logout", actor=actor())
        committed = time.monotonic()
        wait_until(lambda n=n: version_seen(store, "dora") == n, 3, interval=0.005, what="the bump")
        delays.append(time.monotonic() - committed)
    print(f"stream: bump seen after {[round(d * 1000) for d in delays]} ms")
    assert max(delays) < 1.0
    time.sleep(1.5)  # idle: the heartbeat frames keep proving freshness
    assert fresh(store)
    assert store.stats["streams"] == 1 and store.stats["rounds"] == 0  # one open response, no long-poll
    assert store.stats["frames"] >= 3 and store.stats["feed_errors"] == 0 and store.stats["snapshots"] == 1


def test_a_stream_cut_mid_way_makes_the_store_stale_then_it_resumes_from_its_cursor(provider, stores):
    store = HttpFeedStore(feed_url=feed_url(provider), secret=FEED_SECRET, timeout=1.0, max_staleness=0.5)
    stores.append(store)
    wait_until(lambda: fresh(store) and store.stats["frames"] >= 1, 10, what="the stream")
    subjects = [f"cut-{i}" for i in range(30)]
    refused_while_down = False
    for i, subject in enumerate(subjects):
        if i == 10:
            provider.kill()  # SIGKILL: the stream is cut with no goodbye
        if i == 20:
            refused_while_down = wait_until(lambda: refuses(store), 3, what="the store to go stale")
            provider.start()
        services.revoke_user(subject, reason="logout", actor=actor())
        time.sleep(0.01)
    assert refused_while_down  # no answer from a map it could not vouch for
    wait_until(lambda: all(version_seen(store, s) == 1 for s in subjects), 20, what="every revocation")
    assert store.stats["feed_errors"] >= 1 and store.stats["snapshots"] == 1  # resumed from its cursor
    wait_until(lambda: store.stats["streams"] >= 2, 20, what="the store back on a stream")


def test_a_replaced_provider_database_ends_the_stream_and_the_410_brings_a_snapshot(provider, stores):
    services.revoke_user("first", reason="logout", actor=actor())
    store = HttpFeedStore(feed_url=feed_url(provider), secret=FEED_SECRET)
    stores.append(store)
    wait_until(lambda: fresh(store) and store.stats["frames"] >= 1, 10, what="the stream")
    known = store.cursor.safe
    table = RevocationEvent._meta.db_table
    with connection.cursor() as cur:
        if connection.vendor == "postgresql":
            cur.execute(f"TRUNCATE {table} RESTART IDENTITY")
        else:
            cur.execute(f"DELETE FROM {table}")
            cur.execute("DELETE FROM sqlite_sequence WHERE name = %s", [table])
    rev = services.revoke_user("after-restore", reason="logout", actor=actor())
    assert rev.audit_id <= known  # an id the store's cursor has already passed
    try:
        wait_until(lambda: version_seen(store, "after-restore") == 1, 5, what="the new revocation")
    except AssertionError:
        raise AssertionError(f"not seen; store stats {store.stats}, cursor {store.cursor}, known {known}, "
                             f"revocation {rev.audit_id}:\n{provider.process.output()}") from None
    assert store.stats["cursor_expired"] == 1 and store.stats["snapshots"] == 2
    assert version_seen(store, "first") == 1


def test_streams_are_off_unless_the_provider_sizes_for_them(in_process, tv_settings):
    """The provider's default (FEED_MAX_STREAMS 0) and a server without threads answer 501: an open stream
    would hold the only thread (or one of too few) for minutes, starving the claims endpoint."""
    cursor = first_cursor()
    no_threads = Client().get(STREAM, {"after": cursor}, HTTP_X_TOKENVERSION_SECRET=FEED_SECRET)
    assert no_threads.status_code == 501 and no_threads.json()["error"] == "streams_disabled"
    tv_settings(FEED_MAX_STREAMS=0)
    off = get(STREAM, after=cursor)
    assert off.status_code == 501 and off.json()["error"] == "streams_disabled"


def test_a_provider_without_streams_is_long_polled(db_name, jwks_server, stores):
    """A service's default transport is the stream; a provider that does not offer it (its default) answers
    501 and the store long-polls, revocations still biting within a round trip."""
    web = WebProcess("provider-no-streams", "provider.wsgi:application",
                     django_env("tests.feed_settings", db_name, jwks_server.issuer,
                                TOKENVERSION_TEST_FEED_MAX_STREAMS="0"))
    web.start()
    try:
        store = HttpFeedStore(feed_url=feed_url(web), secret=FEED_SECRET)
        stores.append(store)
        wait_until(lambda: fresh(store), 10, what="the first snapshot")
        services.revoke_user("hana", reason="logout", actor=actor())
        wait_until(lambda: version_seen(store, "hana") == 1, 3, interval=0.005, what="the revocation")
        time.sleep(1.2)
        assert fresh(store) and store.stats["rounds"] >= 2 and store.stats["frames"] == 0
        assert store.stats["feed_errors"] == 0
    finally:
        web.kill()


# What the client does with frames: proof only from complete frames, never past the read.


class ScriptedFeed:
    """A loopback HTTP server whose /stream answer is a given list of frames, each sent after a pause."""

    def __init__(self, frames: list[tuple[float, dict]]) -> None:
        script = frames

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                if "/snapshot" in self.path:  # what a store asks first: an empty snapshot, read at once
                    body = json.dumps({"cursor": "v1.5.5.1000000", "entries": [], "next_page": None,
                                       "as_of": 0.0}).encode()
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Connection", "close")
                self.end_headers()
                for pause, frame in script:
                    time.sleep(pause)
                    self.wfile.write(f"data: {json.dumps(frame)}\n\n".encode())
                    self.wfile.flush()

            def log_message(self, *args) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads, self.server.block_on_close = True, False  # close without waiting for a script
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/tokenversion/feed"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_only_a_complete_frame_moves_freshness_and_never_past_its_read():
    start = Cursor(5, 5, 1_000_000)
    moved = str(Cursor(7, 7, 2_000_000))
    event = {"scope": "user", "issuer": "https://issuer.example", "subject": "eve", "version": 2, "at": 1.0, "id": 6}
    feed_server = ScriptedFeed([
        (0.0, {"as_of": None, "cursor": str(start), "events": [], "last_id": 5, "more": True}),
        (0.0, {"as_of": 0.9, "cursor": str(start), "events": [event], "last_id": 6, "more": True}),
        (0.3, {"as_of": 0.25, "cursor": moved, "events": [], "last_id": 7, "more": False}),
        (0.0, {"as_of": 50.0, "cursor": moved, "events": [], "last_id": 7, "more": False}),  # beyond arrival
    ])
    try:
        client = FeedClient(feed_server.url, "secret", timeout=2.0)
        sent = time.monotonic()
        got = []
        for frame in client.stream(start, 0.5):
            got.append((frame, time.monotonic()))
    finally:
        feed_server.close()
    assert [f["as_of"] for f, _ in got] == [None, 0.9, 0.25, 50.0]
    assert [f["more"] for f, _ in got] == [True, True, False, False]
    # The store's rule (follow_stream): a frame proves freshness at sent + min(as_of, received - sent).
    proofs = [sent + min(f["as_of"], at - sent) for f, at in got if not f["more"] and f["as_of"] is not None]
    assert len(proofs) == 2 and proofs[0] <= sent + 0.25 and proofs[1] <= got[-1][1]


def test_the_store_moves_fresh_at_only_on_a_complete_frame():
    """The store over a scripted stream: frames that prove nothing (the fast frame, a partial page) apply their
    events but leave ``fresh_at`` where the snapshot put it, so the store goes stale and refuses; the next
    complete frame makes it fresh again, as of no later than that frame's arrival."""
    now = time.time()
    event = {"scope": "user", "issuer": "https://issuer.example", "subject": "eve", "version": 2, "at": now,
             "id": 6}
    moved = str(Cursor(6, 6, int(now * 1e6)))
    feed_server = ScriptedFeed([
        (0.0, {"as_of": None, "cursor": "v1.5.5.1000000", "events": [event], "last_id": 6, "more": False}),
        (0.0, {"as_of": 0.05, "cursor": "v1.5.5.1000000", "events": [event], "last_id": 6, "more": True}),
        (1.6, {"as_of": 1.6, "cursor": moved, "events": [], "last_id": 6, "more": False}),
        (3.0, {"as_of": 4.6, "cursor": moved, "events": [], "last_id": 6, "more": False}),  # holds the stream
    ])
    store = HttpFeedStore(feed_url=feed_server.url, secret="secret", max_staleness=1.0, timeout=2.0)
    try:
        wait_until(lambda: store.stats["frames"] >= 2, 5, what="the first two frames")
        after_snapshot = store.fresh_at
        assert store.map.view("https://issuer.example", "eve", None).subject.token_version == 2  # applied
        assert store.cursor == Cursor(5, 5, 1_000_000)  # not moved by frames that prove nothing
        wait_until(lambda: store.staleness() > store.max_staleness, 3, what="the store to go stale")
        assert store.fresh_at == after_snapshot
        with pytest.raises(StoreUnavailable):
            store.view("https://issuer.example", "eve", None)
        wait_until(lambda: store.stats["frames"] >= 3, 5, what="the complete frame")
        received = time.monotonic()
        assert after_snapshot < store.fresh_at <= received and store.cursor == Cursor.parse(moved)
        assert store.view("https://issuer.example", "eve", None).subject.token_version == 2
    finally:
        store.close()
        feed_server.close()


@pytest.mark.parametrize("bad", [
    {"as_of": 0.1, "cursor": "v1.4.4.0", "events": [], "last_id": 4, "more": False},  # cursor backwards
    {"as_of": 0.1, "cursor": "v1.5.5.1000000", "events": [{"scope": "realm", "issuer": "i", "at": 1.0, "id": 5}],
     "last_id": 5, "more": False},  # an event at the position
    {"as_of": -1, "cursor": "v1.5.5.1000000", "events": [], "last_id": 5, "more": False},
    {"as_of": 0.1, "cursor": "v1.5.5.1000000", "events": [], "last_id": 5},
])
def test_a_frame_that_breaks_the_protocol_ends_the_stream(bad):
    feed_server = ScriptedFeed([(0.0, bad)])
    try:
        with pytest.raises(FeedError):
            list(FeedClient(feed_server.url, "secret", timeout=2.0).stream(Cursor(5, 5, 1_000_000), 0.5))
    finally:
        feed_server.close()


def test_a_stream_that_sends_no_frame_is_taken_for_a_buffering_proxy():
    """The provider sends a frame as soon as a stream opens; an open stream that stays silent is what a proxy
    buffering responses looks like, and the store then long-polls (``StreamSilent``) rather than go stale
    again at each attempt. A silence after frames is a cut, retried at once."""
    frame = {"as_of": 0.1, "cursor": "v1.5.5.1000000", "events": [], "last_id": 5, "more": False}
    for script, expected in (([(3.0, frame)], StreamSilent), ([(0.0, frame), (3.0, frame)], FeedError)):
        feed_server = ScriptedFeed(script)
        try:
            with pytest.raises(FeedError) as raised:
                list(FeedClient(feed_server.url, "secret", timeout=0.5).stream(Cursor(5, 5, 1_000_000), 0.5))
            assert type(raised.value) is expected, raised.value
        finally:
            feed_server.close()


def test_the_transport_option_is_checked():
    problems = HttpFeedStore.check_options({"feed_url": "http://p/tokenversion/feed", "secret": "s",
                                            "transport": "carrier-pigeon"})
    assert problems == ["transport must be one of stream, poll"]
