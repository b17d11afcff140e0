"""TTLCache: expiry, the size bound, and which entries eviction drops (the oldest inserted, in batches)."""

from __future__ import annotations

import pytest

from tokenversion.core.cache import MISSING, TTLCache


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize("bound", [1, 2, 15, 16, 17, 1000])
def test_bound_holds_and_the_newest_entries_survive(bound):
    cache: TTLCache[int] = TTLCache(ttl=60, max_entries=bound)
    for i in range(bound * 5 + 3):
        cache.put(i, i)
        assert len(cache) <= bound
    last = bound * 5 + 2
    assert cache.get(last) == last
    # Eviction drops whole batches of the oldest: what is left is a run of the most recent insertions.
    kept = sorted(k for k in range(last + 1) if cache.get(k) is not MISSING)
    assert kept == list(range(last - len(kept) + 1, last + 1))
    assert len(kept) >= bound - bound // 16


def test_a_refreshed_entry_is_evicted_as_if_inserted_now():
    cache: TTLCache[str] = TTLCache(ttl=60, max_entries=3)
    for key in "abc":
        cache.put(key, key)
    cache.put("a", "a2")  # refreshed: now the newest
    cache.put("d", "d")
    assert cache.get("b") is MISSING
    assert (cache.get("a"), cache.get("c"), cache.get("d")) == ("a2", "c", "d")


def test_entries_expire_after_their_ttl_from_the_read_that_produced_them():
    clock = Clock()
    cache: TTLCache[int] = TTLCache(ttl=1.0, max_entries=10, clock=clock)
    cache.put("k", 1, fetched_at=clock.now - 0.5)
    clock.now += 0.4
    assert cache.get("k") == 1
    clock.now += 0.2
    assert cache.get("k") is MISSING
    cache.put("x", 2, ttl=0)  # a ttl of 0 stores nothing
    assert cache.get("x") is MISSING
