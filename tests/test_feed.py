"""The provider's revocation feed (``/tokenversion/feed/*``): authentication, strict input, the snapshot, the
cursor, long-poll, and the out-of-order commit case that a naive "highest id seen" cursor gets wrong."""

from __future__ import annotations

import dataclasses
import datetime as dt
import threading
import time

import pytest
from django.db import connection, connections, transaction
from django.utils import timezone

from tests.conftest import database_down
from tests.remote_helpers import revocation_held_open
from tokenversion.core.feed_protocol import Cursor
from tokenversion.core.revocation_map import RevocationMap, parse_event
from tokenversion_server import feed, feedlog, services
from tokenversion_server.models import RevocationEvent
from tokenversion_server.publish import event_of

SECRET = "feed-secret-dddddddddddddddddddddddddddddddddddd"
SNAPSHOT, EVENTS = "/tokenversion/feed/snapshot", "/tokenversion/feed/events"


def actor():
    return services.Actor.system("test")


@pytest.fixture(autouse=True)
def feed_settings(tv_settings):
    tv_settings(FEED_SECRETS=[SECRET, "feed-secret-rotated-eeeeeeeeeeeeeeeeeeeeeeeeeeee"], FEED_POLL_INTERVAL=0.02)
    yield
    feed.stop_watchers()


@pytest.fixture
def get(client):
    def call(path: str, secret: str | None = SECRET, **params):
        headers = {} if secret is None else {"HTTP_X_TOKENVERSION_SECRET": secret}
        return client.get(path, {k: v for k, v in params.items() if v is not None}, **headers)

    return call


def since() -> str:
    return f"{time.time() - 3600:.3f}"


def snapshot(get) -> dict:
    response = get(SNAPSHOT, since=since())
    assert response.status_code == 200, response.content
    return response.json()


# Authentication and input.


@pytest.mark.django_db
@pytest.mark.parametrize("path", [SNAPSHOT, EVENTS])
def test_the_feed_needs_a_feed_secret(get, path, tv_settings):
    from tests.conftest import EVENT_SECRET, MAPPER_SECRET

    for secret in (None, "", "wrong", MAPPER_SECRET, EVENT_SECRET):
        response = get(path, secret=secret, since=since(), after="v1.0.0.0")
        assert response.status_code == 401 and response.json()["error"] == "invalid_secret"
    assert get(SNAPSHOT, secret="feed-secret-rotated-eeeeeeeeeeeeeeeeeeeeeeeeeeee", since=since()).status_code == 200
    tv_settings(FEED_SECRETS=[])
    assert get(path, since=since(), after="v1.0.0.0").status_code == 401  # unset: refuses everyone


@pytest.mark.django_db
@pytest.mark.parametrize("method", ["post", "put", "delete", "head"])
def test_only_get(client, method):
    response = getattr(client, method)(EVENTS, HTTP_X_TOKENVERSION_SECRET=SECRET)
    assert response.status_code == 405 and response["Allow"] == "GET"


@pytest.mark.django_db
@pytest.mark.parametrize("path, query, code", [
    (SNAPSHOT, "", "invalid_request"),
    (SNAPSHOT, "since=abc", "invalid_request"),
    (SNAPSHOT, "since=-5", "invalid_request"),
    (SNAPSHOT, "since=nan", "invalid_request"),
    (SNAPSHOT, "since=1e9", "invalid_request"),
    (SNAPSHOT, "since=1000", "invalid_request"),  # older than the feed keeps
    (SNAPSHOT, "since=99999999999", "invalid_request"),  # the future
    (SNAPSHOT, "page=xyz", "invalid_request"),
    (SNAPSHOT, "page=eyJjIjoxfQ", "invalid_request"),  # base64 JSON, but not a page token
    (SNAPSHOT, "since=SINCE&since=SINCE", "invalid_request"),
    (SNAPSHOT, "since=SINCE&limit=0", "invalid_request"),
    (SNAPSHOT, "since=SINCE&limit=100000", "invalid_request"),
    (SNAPSHOT, "since=SINCE&bogus=1", "invalid_request"),
    (EVENTS, "", "invalid_request"),
    (EVENTS, "after=5", "invalid_cursor"),
    (EVENTS, "after=v1.5.6.0", "invalid_cursor"),  # anchor above safe
    (EVENTS, "after=v1.%D9%A1.0.0", "invalid_cursor"),  # a non-ASCII digit
    (EVENTS, "after=v1.0.0.0&wait=26", "invalid_request"),
    (EVENTS, "after=v1.0.0.0&wait=-1", "invalid_request"),
    (EVENTS, "after=v1.0.0.0&wait=inf", "invalid_request"),
    (EVENTS, "after=v1.5.0.0&from=4", "invalid_request"),  # from below the cursor
    (EVENTS, "after=v1.5.0.0&have=4", "invalid_request"),
    (EVENTS, "after=v1.0.0.0&from=x", "invalid_request"),
    (EVENTS, "after=v1.0.0.0&after=v1.0.0.0", "invalid_request"),
    (EVENTS, "after=v1.0.0.0&limit=1001", "invalid_request"),
    (EVENTS, "after=v1.0.0.0&x=" + "a" * 3000, "invalid_request"),
])
def test_bad_input_is_a_precise_400(client, path, query, code):
    response = client.get(f"{path}?{query.replace('SINCE', since())}", HTTP_X_TOKENVERSION_SECRET=SECRET)
    assert response.status_code == 400, response.content
    assert response.json()["error"] == code and response.json()["detail"]
    assert response["Cache-Control"] == "no-store"


@pytest.mark.django_db
def test_database_down_is_503(get):
    cursor = snapshot(get)["cursor"]
    with database_down():
        for response in (get(SNAPSHOT, since=since()), get(EVENTS, after=cursor)):
            assert response.status_code == 503 and response.json()["error"] == "unavailable"
            assert response["Retry-After"] == "1"


# The snapshot.


@pytest.mark.django_db
def test_snapshot_folds_each_key_and_keeps_to_the_window(get):
    for _ in range(3):
        services.revoke_user("alice", reason="logout", actor=actor())
    services.revoke_user("bob", reason="compromise", actor=actor())
    services.revoke_session("sid-1", subject="carol", actor=actor())
    services.revoke_realm(actor=actor())
    old = timezone.now() - dt.timedelta(hours=2)  # before `since`: only expired tokens can care
    RevocationEvent.objects.create(created_at=old, scope="user", issuer=services.resolve_issuer(None),
                                   subject="dave", actor_type="system", reason="admin", new_version=9)
    body = snapshot(get)
    entries = [parse_event(e) for e in body["entries"]]
    assert [(e.scope, e.session_id if e.scope == "session" else e.subject, e.version) for e in entries] == [
        ("user", "alice", 3), ("user", "bob", 1), ("session", "sid-1", None), ("realm", "", None)]
    assert entries[2].subject == "carol"  # as the events and Redis carry it (issue 10 item 5)
    latest = RevocationEvent.objects.filter(subject="alice").order_by("-id").first()
    assert entries[0].at == feedlog.microseconds(latest.created_at) / 1e6
    assert body["next_page"] is None and body["as_of"] >= 0
    cursor = Cursor.parse(body["cursor"])
    top = RevocationEvent.objects.order_by("-id").first()
    assert cursor == Cursor(top.id, top.id, feedlog.microseconds(top.created_at))


@pytest.mark.django_db
def test_snapshot_pages_across_scopes_with_one_cursor(get):
    for name in ("a", "b", "c"):
        services.revoke_user(name, reason="logout", actor=actor())
    services.revoke_session("s1", actor=actor())
    services.revoke_realm(actor=actor())
    response = get(SNAPSHOT, since=since(), limit=2)
    pages = [response.json()]
    while pages[-1]["next_page"]:
        response = get(SNAPSHOT, page=pages[-1]["next_page"], limit=2)
        assert response.status_code == 200
        pages.append(response.json())
    assert [len(p["entries"]) for p in pages] == [2, 2, 1]
    assert {p["cursor"] for p in pages} == {pages[0]["cursor"]}
    keys = [(e["scope"], e.get("subject") or e.get("session_id", "")) for p in pages for e in p["entries"]]
    assert keys == [("user", "a"), ("user", "b"), ("user", "c"), ("session", "s1"), ("realm", "")]
    assert get(SNAPSHOT, page=pages[0]["next_page"], since=since()).status_code == 400


# Events and the cursor.


@pytest.mark.django_db
def test_events_after_the_snapshot_in_order_then_the_cursor_moves(get):
    body = snapshot(get)
    cursor = body["cursor"]
    revs = [services.revoke_user("alice", reason="logout", actor=actor()),
            services.revoke_session("sid-9", actor=actor()), services.revoke_realm(actor=actor())]
    response = get(EVENTS, after=cursor)
    assert response.status_code == 200
    data = response.json()
    assert [e["id"] for e in data["events"]] == [r.audit_id for r in revs]
    assert [e["scope"] for e in data["events"]] == ["user", "session", "realm"]
    assert data["events"][0]["version"] == 1 and data["more"] is False and data["settled"] is True
    assert Cursor.parse(data["cursor"]).safe == revs[-1].audit_id
    # Nothing new: nothing sent, the same cursor.
    again = get(EVENTS, after=data["cursor"]).json()
    assert again["events"] == [] and again["cursor"] == data["cursor"] and again["last_id"] == revs[-1].audit_id


@pytest.mark.django_db
def test_pages_of_events(get):
    cursor = snapshot(get)["cursor"]
    ids = [services.revoke_user(f"u{i}", reason="logout", actor=actor()).audit_id for i in range(5)]
    seen, start = [], None
    while True:
        data = get(EVENTS, after=cursor, limit=2, **({"from": start} if start else {})).json()
        seen += [e["id"] for e in data["events"]]
        cursor = data["cursor"]
        if not data["more"]:
            break
        start = data["last_id"]
    assert seen == ids and Cursor.parse(cursor).safe == ids[-1]


@pytest.mark.django_db
def test_a_cursor_from_other_data_is_410(get):
    services.revoke_user("alice", reason="logout", actor=actor())
    good = Cursor.parse(snapshot(get)["cursor"])
    for forged in (Cursor(good.safe, good.anchor_id, good.anchor_us + 1),  # same id, other row: a restored database
                   Cursor(good.safe + 1000, good.anchor_id, good.anchor_us),  # beyond every id ever handed out
                   Cursor(good.safe, 0, 0)):  # "nothing below" while there is
        response = get(EVENTS, after=str(forged))
        assert response.status_code == 410 and response.json()["error"] == "cursor_expired"
    assert get(EVENTS, after=str(good)).status_code == 200


@pytest.mark.django_db(transaction=True)
def test_long_poll_returns_as_soon_as_a_revocation_commits(get):
    cursor = snapshot(get)["cursor"]
    started = time.monotonic()
    data = get(EVENTS, after=cursor, wait="0.3").json()  # nothing happens: waits, answers empty
    assert 0.3 <= time.monotonic() - started < 2 and data["events"] == []

    def later():
        time.sleep(0.3)
        try:
            services.revoke_user("alice", reason="logout", actor=actor())
        finally:
            connections.close_all()

    thread = threading.Thread(target=later)
    started = time.monotonic()
    thread.start()
    data = get(EVENTS, after=cursor, wait="10").json()
    elapsed = time.monotonic() - started
    thread.join()
    assert [e["subject"] for e in data["events"]] == ["alice"]
    assert 0.25 < elapsed < 2, elapsed  # woken by the commit, not by the 10 s timeout
    assert data["as_of"] >= 0.25  # read after the commit, and it says so


@pytest.mark.django_db(transaction=True)
def test_a_lower_id_committing_after_a_higher_one_is_never_skipped(get):
    """Transaction A takes an audit id and stays open; on PostgreSQL, B takes the next id and commits first.
    A reader that moved its cursor to the highest id it saw (B's) would never see A's. The feed's cursor
    stays below A until A has finished, and A's revocation is delivered when it commits."""
    start = snapshot(get)["cursor"]
    with revocation_held_open("slow", actor(), reason="compromise"):
        postgres = connection.vendor == "postgresql"
        if postgres:  # SQLite has one writer at a time: B would wait for A, ids commit in order
            fast = services.revoke_user("fast", reason="logout", actor=actor())
        first = get(EVENTS, after=start).json()
        assert "slow" not in [e.get("subject") for e in first["events"]]  # not committed: not visible
        if postgres:
            assert [e["subject"] for e in first["events"]] == ["fast"]  # visible and sent at once
            assert first["settled"] is False  # A still holds the audit table
        assert Cursor.parse(first["cursor"]) == Cursor.parse(start)  # so the cursor does not move
    slow_id = RevocationEvent.objects.get(subject="slow").id
    second = get(EVENTS, after=first["cursor"], have=first["last_id"]).json()
    assert "slow" in [e["subject"] for e in second["events"]]
    assert Cursor.parse(second["cursor"]).safe >= slow_id and second["settled"] is True
    if postgres:
        assert slow_id < fast.audit_id  # the out-of-order case really happened
        naive = Cursor(fast.audit_id, fast.audit_id, feedlog.microseconds(
            RevocationEvent.objects.get(id=fast.audit_id).created_at))
        skipped = get(EVENTS, after=str(naive)).json()
        assert "slow" not in [e.get("subject") for e in skipped["events"]]  # what the naive cursor loses
    # Replaying everything from the start is harmless: the map ends the same.
    replay = RevocationMap(3600)
    replay.apply_many(parse_event(e) for e in first["events"] + second["events"] + second["events"])
    assert replay.view(services.resolve_issuer(None), "slow", None).subject.token_version == 1


@pytest.mark.django_db(transaction=True)
def test_settle_waits_only_for_audit_writers():
    """An open transaction that has not touched the audit trail (a report, a dump) does not hold the feed."""
    busy, release = threading.Event(), threading.Event()

    def unrelated():
        try:
            with transaction.atomic():
                list(RevocationEvent.objects.all()[:1])
                services.current_version("someone")  # writes, but not an audit row
                busy.set()
                release.wait(10)
        finally:
            connections.close_all()

    thread = threading.Thread(target=unrelated)
    thread.start()
    try:
        assert busy.wait(10)
        started = time.monotonic()
        assert feedlog.settle("default", time.monotonic() + 2) is not None
        assert time.monotonic() - started < 0.5
    finally:
        release.set()
        thread.join()


@pytest.mark.django_db
def test_the_publisher_the_feed_and_the_snapshot_give_one_event_per_revocation(get):
    """One revocation, one event: the Redis publisher's (from the committed ``Revocation``), the HTTP feed's
    (from the audit row) and the snapshot's (folded, so without an id) agree field for field, the session
    event's subject included (the snapshot used to drop it)."""
    revs = [services.revoke_user("alice", reason="logout", actor=actor()),
            services.revoke_session("sid-1", subject="alice", actor=actor()),
            services.revoke_session("sid-2", actor=actor()),  # a session revoked by its id alone
            services.revoke_realm(actor=actor())]
    published = [event_of(rev) for rev in revs]
    fed = [parse_event(e) for e in get(EVENTS, after="v1.0.0.0").json()["events"]]
    snapshotted = [parse_event(e) for e in snapshot(get)["entries"]]
    assert fed == published
    assert snapshotted == [dataclasses.replace(event, id=None) for event in published]
    assert [(e.scope, e.subject, e.session_id, e.version) for e in published] == [
        ("user", "alice", "", 1), ("session", "alice", "sid-1", None), ("session", "", "sid-2", None),
        ("realm", "", "", None)]
