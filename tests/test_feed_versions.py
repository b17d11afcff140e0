"""``/tokenversion/feed/versions``: the full map of versions that Keycloak's cached mapper loads at start (issue 12).

Every subject above version 0, paged by (issuer, subject), with the cursor to follow ``/feed/events`` from. The
proof that nothing is lost between the pages and the events is the snapshot's (settled horizon): a bump is
either at or below the cursor (committed before the first page was read: in the pages) or above it (in the
events). These tests check it as a reader would: load the pages, follow the events, compare with the database.
"""

from __future__ import annotations

import threading

import pytest
from django.db import connection

from tests.conftest import EVENT_SECRET, MAPPER_SECRET, database_down
from tests.remote_helpers import revocation_held_open
from tokenversion.core.feed_protocol import Cursor
from tokenversion_server import feed, services
from tokenversion_server.models import RevocationEvent, SubjectVersion

SECRET = "feed-secret-dddddddddddddddddddddddddddddddddddd"
VERSIONS, EVENTS = "/tokenversion/feed/versions", "/tokenversion/feed/events"


def actor():
    return services.Actor.system("test")


@pytest.fixture(autouse=True)
def feed_settings(tv_settings):
    tv_settings(FEED_SECRETS=[SECRET], FEED_POLL_INTERVAL=0.02)
    yield
    feed.stop_watchers()


@pytest.fixture
def get(client):
    def call(path: str, secret: str | None = SECRET, **params):
        headers = {} if secret is None else {"HTTP_X_TOKENVERSION_SECRET": secret}
        return client.get(path, {k: v for k, v in params.items() if v is not None}, **headers)

    return call


def load_all(get, limit: int | None = None) -> tuple[dict[tuple[str, str], int], str, list[dict]]:
    """What the mapper does at start: every page, then the map and the cursor."""
    response = get(VERSIONS, limit=limit)
    assert response.status_code == 200, response.content
    pages = [response.json()]
    while pages[-1]["next_page"]:
        response = get(VERSIONS, page=pages[-1]["next_page"], limit=limit)
        assert response.status_code == 200, response.content
        pages.append(response.json())
    versions = {(v["issuer"], v["sub"]): v["token_version"] for p in pages for v in p["versions"]}
    return versions, pages[0]["cursor"], pages


def database_versions() -> dict[tuple[str, str], int]:
    return {(row.issuer, row.subject): row.token_version for row in SubjectVersion.objects.filter(token_version__gt=0)}


@pytest.mark.django_db
def test_every_subject_above_zero_whenever_it_was_bumped(get):
    issuer = services.resolve_issuer(None)
    for _ in range(3):
        services.revoke_user("alice", reason="logout", actor=actor())
    services.revoke_user("bob", reason="compromise", actor=actor())
    # A row of another issuer (a provider that served another realm before): sent with its issuer.
    SubjectVersion.objects.create(issuer="https://other.example/realms/x", subject="bob", token_version=1)
    services.current_version("carol")  # known at version 0: not sent (absent means 0)
    services.revoke_session("sid-1", subject="dave", actor=actor())  # a session revocation bumps no version
    services.revoke_realm(actor=actor())
    # A bump older than the snapshot's 7-day window (no recent audit row) is still a version: it is sent.
    SubjectVersion.objects.create(issuer=issuer, subject="erin", token_version=5)

    versions, cursor, pages = load_all(get)
    assert versions == {(issuer, "alice"): 3, (issuer, "bob"): 1, (issuer, "erin"): 5,
                        ("https://other.example/realms/x", "bob"): 1}
    assert len(pages) == 1 and pages[0]["as_of"] >= 0 and pages[0]["server_time"] > 0
    top = RevocationEvent.objects.order_by("-id").first()
    assert Cursor.parse(cursor).safe == top.id
    # The cursor is the feed's: /feed/events accepts it, and has nothing newer.
    after = get(EVENTS, after=cursor).json()
    assert after["events"] == [] and after["cursor"] == cursor


@pytest.mark.django_db
def test_pages_in_key_order_with_one_cursor(get):
    issuer = services.resolve_issuer(None)
    for name in ("d", "a", "c", "b", "e"):
        services.revoke_user(name, reason="logout", actor=actor())
    versions, cursor, pages = load_all(get, limit=2)
    assert [len(p["versions"]) for p in pages] == [2, 2, 1]
    assert [v["sub"] for p in pages for v in p["versions"]] == ["a", "b", "c", "d", "e"]
    assert {p["cursor"] for p in pages} == {cursor}
    assert "as_of" in pages[0] and all("as_of" not in p for p in pages[1:])  # only the first page proves a time
    assert versions == {(issuer, n): 1 for n in "abcde"}


@pytest.mark.django_db
def test_bumps_between_the_pages_and_after_them_reach_the_reader(get):
    """The reader's map equals the database once it has followed the events from the cursor, whatever
    happened between its pages (a row already bumped again on a later page is only larger: kept by max)."""
    for name in ("a", "b", "c", "d"):
        services.revoke_user(name, reason="logout", actor=actor())
    first = get(VERSIONS, limit=2).json()
    services.revoke_user("a", reason="logout", actor=actor())  # on a page already read: only in the events
    services.revoke_user("d", reason="logout", actor=actor())  # on the next page and in the events
    services.revoke_user("new", reason="logout", actor=actor())
    second = get(VERSIONS, page=first["next_page"], limit=2).json()
    known: dict[tuple[str, str], int] = {}
    for row in first["versions"] + second["versions"]:
        key = (row["issuer"], row["sub"])
        known[key] = max(known.get(key, 0), row["token_version"])
    events = get(EVENTS, after=first["cursor"]).json()
    for event in events["events"]:
        if event["scope"] == "user":
            key = (event["issuer"], event["subject"])
            known[key] = max(known.get(key, 0), event["version"])
    assert known == database_versions()


@pytest.mark.django_db(transaction=True)
def test_a_bump_in_flight_is_never_skipped(get):
    """A revocation that has its audit id but has not committed when the pages are read: the cursor stays
    below it (the first page waits for it to finish, up to the snapshot's 2 s, else 503), so the reader gets
    it from the events."""
    with revocation_held_open("slow", actor(), reason="compromise") as release:
        if connection.vendor == "postgresql":
            timer = threading.Timer(0.3, release.set)  # commits while the first page waits for it
            timer.start()
            response = get(VERSIONS)
            timer.join()
            assert response.status_code == 200, response.content
            body = response.json()
            slow_id = RevocationEvent.objects.get(subject="slow").id
            # Waited for: committed before the rows were read, so in the page, and the cursor is past it.
            assert [v["sub"] for v in body["versions"]] == ["slow"]
            assert Cursor.parse(body["cursor"]).safe >= slow_id
        else:  # SQLite: one writer at a time; the read sees only committed rows, and its cursor is below them
            body = get(VERSIONS).json()
            release.set()
            assert body["versions"] == []
    events = get(EVENTS, after=body["cursor"]).json()
    seen = {v["sub"] for v in body["versions"]} | {e["subject"] for e in events["events"]}
    assert "slow" in seen


@pytest.mark.django_db
@pytest.mark.parametrize("secret", [None, "", "wrong", MAPPER_SECRET, EVENT_SECRET])
def test_the_versions_need_a_feed_secret(get, secret):
    response = get(VERSIONS, secret=secret)
    assert response.status_code == 401 and response.json()["error"] == "invalid_secret"


@pytest.mark.django_db
@pytest.mark.parametrize("query", [
    "bogus=1",
    "limit=0",
    "limit=100000",
    "limit=x",
    "limit=1&limit=1",
    "page=xyz",
    "page=eyJjIjoxfQ",  # base64 JSON, but not a page token
    "page=eyJjIjoidjEuMC4wLjAiLCJrIjpbImEiXX0",  # {"c":"v1.0.0.0","k":["a"]}: a key of one part
    "page=eyJjIjoidjEuOS4wLjAiLCJrIjpbMSwyXX0",  # {"c":"v1.9.0.0","k":[1,2]}: not strings
    "x=" + "a" * 3000,
])
def test_bad_input_is_a_precise_400_and_writes_nothing(client, query):
    before = (SubjectVersion.objects.count(), RevocationEvent.objects.count())
    response = client.get(f"{VERSIONS}?{query}", HTTP_X_TOKENVERSION_SECRET=SECRET)
    assert response.status_code == 400, response.content
    assert response.json()["error"] == "invalid_request" and response.json()["detail"]
    assert (SubjectVersion.objects.count(), RevocationEvent.objects.count()) == before


@pytest.mark.django_db
@pytest.mark.parametrize("method", ["post", "put", "delete"])
def test_only_get(client, method):
    response = getattr(client, method)(VERSIONS, HTTP_X_TOKENVERSION_SECRET=SECRET)
    assert response.status_code == 405 and response["Allow"] == "GET"


@pytest.mark.django_db
def test_database_down_is_503(get):
    with database_down():
        response = get(VERSIONS)
    assert response.status_code == 503 and response.json()["error"] == "unavailable"
