"""The in-process revocation map (core, no Django): window bounds, monotonic merges, the wire format and cursors
(the signed Redis envelope: tests/test_feed_signing.py). The window argument itself is checked as a property:
for every token that is not yet expired, the map (which forgot everything older than the window) decides
exactly as the full history does."""

from __future__ import annotations

import itertools
import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tokenversion.core.errors import TokenRejected
from tokenversion.core.feed_protocol import Cursor, CursorError
from tokenversion.core.revocation import RevocationPolicy, RevocationView, SubjectState, check_revocation
from tokenversion.core.revocation_map import FeedEvent, RevocationMap, WireError, parse_event, window_for

ISS = "https://sso.example.com/realms/main"


class Clock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def user(subject: str, version: int, at: float, issuer: str = ISS) -> FeedEvent:
    return FeedEvent("user", issuer, at, subject=subject, version=version)


def test_absent_keys_read_as_never_revoked():
    view = RevocationMap(100).view(ISS, "alice", "sid-1")
    assert view == RevocationView(SubjectState(0, None), session_revoked=False, realm_not_before=None)


def test_each_scope_is_answered():
    clock = Clock()
    m = RevocationMap(100, clock=clock)
    m.apply_many([user("alice", 3, clock.now - 1), FeedEvent("session", ISS, clock.now - 2, session_id="sid-1"),
                  FeedEvent("realm", ISS, clock.now - 3)])
    view = m.view(ISS, "alice", "sid-1")
    assert view.subject == SubjectState(3, clock.now - 1)
    assert view.session_revoked and view.realm_not_before == clock.now - 3
    assert not m.view(ISS, "alice", "sid-2").session_revoked
    other = m.view("https://other/realms/x", "alice", "sid-1")  # keys are per issuer
    assert other.subject.token_version == 0 and not other.session_revoked and other.realm_not_before is None
    assert m.counts() == {"subjects": 1, "sessions": 1, "realms": 1}


def test_merges_are_monotonic_whatever_the_order():
    clock = Clock()
    m = RevocationMap(100, clock=clock)
    assert m.apply(user("alice", 5, clock.now - 10)) is True
    assert m.apply(user("alice", 3, clock.now - 5)) is True  # a late, older version: keeps 5, takes the later time
    assert m.view(ISS, "alice", None).subject == SubjectState(5, clock.now - 5)
    assert m.apply(user("alice", 5, clock.now - 10)) is False  # a replay changes nothing
    assert m.apply(FeedEvent("realm", ISS, clock.now - 1)) is True
    assert m.apply(FeedEvent("realm", ISS, clock.now - 50)) is False  # an older epoch never moves it back
    assert m.view(ISS, "x", None).realm_not_before == clock.now - 1


events_strategy = st.lists(
    st.one_of(
        st.builds(lambda s, v, a: user(s, v, a), st.sampled_from("abc"), st.integers(0, 9), st.integers(900, 1000)),
        st.builds(lambda s, a: FeedEvent("session", ISS, a, session_id=s), st.sampled_from("xy"),
                  st.integers(900, 1000)),
        st.builds(lambda a: FeedEvent("realm", ISS, a), st.integers(900, 1000)),
    ),
    max_size=12,
)


@given(events_strategy, st.randoms(use_true_random=False))
@settings(max_examples=200, deadline=None)
def test_replays_and_any_delivery_order_give_the_same_map(events, rnd):
    """What the feeds rely on to re-send rather than risk a gap: order and duplicates do not matter."""

    def build(sequence):
        m = RevocationMap(1000, clock=Clock(1000))
        m.apply_many(sequence)
        return [m.view(ISS, s, sid) for s, sid in itertools.product("abcz", ["x", "y", None])]

    shuffled = events + events[: len(events) // 2]  # duplicates
    rnd.shuffle(shuffled)
    assert build(events) == build(shuffled)


def test_entries_live_for_the_window_only():
    clock = Clock()
    m = RevocationMap(100, clock=clock)
    assert m.apply(user("old", 1, clock.now - 101)) is False  # already outside: never stored
    m.apply(user("alice", 1, clock.now - 99))
    m.apply(FeedEvent("session", ISS, clock.now - 50, session_id="s"))
    m.apply(FeedEvent("realm", ISS, clock.now - 10))
    assert len(m) == 3
    clock.now += 2
    assert m.prune() == 1 and m.view(ISS, "alice", None).subject.token_version == 0
    clock.now += 50
    assert m.prune() == 1 and not m.view(ISS, "x", "s").session_revoked
    clock.now += 50
    assert m.prune() == 1 and len(m) == 0


def test_the_size_bound_fails_closed_instead_of_evicting():
    clock = Clock()
    m = RevocationMap(100, max_entries=2, clock=clock)
    for name in "abc":
        m.apply(user(name, 1, clock.now))
    assert m.overflowed and len(m) == 3  # nothing was evicted: every revocation still bites
    assert m.view(ISS, "a", None).subject.token_version == 1
    clock.now += 101
    m.prune()
    assert not m.overflowed


def test_window_covers_lifetime_leeway_and_margin():
    # LEEWAY twice: the realm and logout rules refuse an iat up to LEEWAY after the revocation, and such a
    # token passes the exp check until LEEWAY after its exp.
    assert window_for(3600, 5) == 3670.0
    assert window_for(300, 0, margin=0) == 300.0
    with pytest.raises(ValueError):
        RevocationMap(0)


# The window argument, as a property.


@st.composite
def histories(draw):
    lifetime = draw(st.integers(30, 600))
    leeway = draw(st.integers(0, 10))
    bumps = sorted(set(draw(st.lists(st.integers(0, 3000), max_size=8))))
    realms = sorted(set(draw(st.lists(st.integers(0, 3000), max_size=3))))
    issued = draw(st.integers(0, 3200))
    checked = issued + draw(st.integers(0, lifetime + leeway))  # the token has not expired at `checked`
    return lifetime, leeway, bumps, realms, issued, checked


@given(histories(), st.booleans())
@settings(max_examples=500, deadline=None)
def test_forgetting_older_than_the_window_never_changes_a_decision_on_a_live_token(history, logout_rule):
    """Even with a zero margin: a token carrying version v was issued before the bump to v+1, so it is
    expired one lifetime after that bump; the map may forget the bump then, not before."""
    lifetime, leeway, bumps, realms, issued, checked = history
    version = sum(1 for t in bumps if t <= issued)  # the claims endpoint embeds the version current at issue
    claims = {"token_version": version, "iat": issued, "exp": issued + lifetime}
    policy = RevocationPolicy(check_logout_time=logout_rule, leeway=leeway)

    past_bumps = [t for t in bumps if t <= checked]
    past_realms = [t for t in realms if t <= checked]
    full = RevocationView(SubjectState(len(past_bumps), float(past_bumps[-1]) if past_bumps else None),
                          realm_not_before=float(past_realms[-1]) if past_realms else None)

    clock = Clock(0)
    m = RevocationMap(window_for(lifetime, leeway, margin=0), clock=clock)
    timeline = [(t, user("u", n, float(t))) for n, t in enumerate(past_bumps, 1)]
    timeline += [(t, FeedEvent("realm", ISS, float(t))) for t in past_realms]
    for t, event in sorted(timeline, key=lambda item: item[0]):
        clock.now = t
        m.apply(event)
    clock.now = checked
    m.prune()

    def decide(view):
        try:
            check_revocation(claims, view, policy)
        except TokenRejected as exc:
            return type(exc)
        return None

    assert decide(m.view(ISS, "u", None)) == decide(full)


# The wire format.


def test_events_round_trip_through_json():
    for event in (user("alice", 7, 1700000000.123456),
                  FeedEvent("session", ISS, 1.5, subject="a", session_id="s", id=9),
                  FeedEvent("realm", ISS, 2.0, id=10)):
        wire = json.loads(json.dumps(event.to_wire()))
        assert parse_event(wire) == event


@pytest.mark.parametrize("bad", [
    None, [], "x", {},
    {"scope": "group", "issuer": ISS, "at": 1},
    {"scope": "user", "issuer": ISS, "at": 1, "version": 1},  # no subject
    {"scope": "user", "issuer": ISS, "at": 1, "subject": "a"},  # no version
    {"scope": "user", "issuer": ISS, "at": 1, "subject": "a", "version": True},
    {"scope": "user", "issuer": ISS, "at": 1, "subject": "a", "version": -1},
    {"scope": "user", "issuer": ISS, "at": 1, "subject": "a", "version": 2**63},
    {"scope": "user", "issuer": ISS, "at": 1, "subject": "a", "version": 1.0},
    {"scope": "user", "issuer": ISS, "at": math.nan, "subject": "a", "version": 1},
    {"scope": "user", "issuer": ISS, "at": math.inf, "subject": "a", "version": 1},
    {"scope": "user", "issuer": ISS, "at": -1, "subject": "a", "version": 1},
    {"scope": "user", "issuer": ISS, "at": "1", "subject": "a", "version": 1},
    {"scope": "user", "issuer": ISS, "at": 1, "subject": "a" * 256, "version": 1},
    {"scope": "user", "issuer": ISS, "at": 1, "subject": 5, "version": 1},
    {"scope": "user", "issuer": ISS, "at": 1, "subject": "a\x00", "version": 1},
    {"scope": "user", "issuer": ISS, "at": 1, "subject": "a", "version": 1, "extra": 1},
    {"scope": "session", "issuer": ISS, "at": 1},  # no session id
    {"scope": "session", "issuer": ISS, "at": 1, "session_id": "s", "version": 2},
    {"scope": "realm", "at": 1},  # no issuer
    {"scope": "realm", "issuer": ISS, "at": 1, "id": "7"},
])
def test_malformed_events_are_refused_whole(bad):
    with pytest.raises(WireError):
        parse_event(bad)


def test_feed_events_must_carry_an_id():
    with pytest.raises(WireError):
        parse_event({"scope": "realm", "issuer": ISS, "at": 1}, require_id=True)


def test_cursors_round_trip_and_refuse_anything_else():
    cursor = Cursor(42, 40, 1700000000123456)
    assert Cursor.parse(str(cursor)) == cursor and str(cursor) == "v1.42.40.1700000000123456"
    for bad in [None, 42, "", "v1.1.2.3", "v2.1.1.1", "v1.1.1", "v1.-1.0.0", "v1.1.0.0 ", "v1.\u0661.0.0",
                "v1.99999999999999999999.0.0", "v1.1.0.99999999999999999999"]:
        with pytest.raises(CursorError):
            Cursor.parse(bad)


