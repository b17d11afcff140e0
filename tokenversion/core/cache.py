"""A small bounded cache with per-entry expiry, safe to share between threads.

Used for the stores' per-process cache of revocation state. Entries expire after ``ttl`` seconds, which is
what bounds how stale a process's view can be; the size bound keeps memory flat however many subjects a
process sees. Eviction is oldest-inserted first, which is cheap and good enough when entries live a second.

Once full, the oldest entries are evicted in batches of 1/16 of the bound, not one per insertion: each
deletion at the front of a dict leaves a hole that the next walk from the front steps over, so evicting one
entry per insertion with ``next(iter(d))`` cost time in proportion to the size (4 us per insertion at 10,000
entries, 44 us at 100,000 on the benchmark machine). One walk per batch makes it constant (docs/benchmarks.md).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable
from itertools import islice
from typing import Generic, TypeVar

V = TypeVar("V")
_MISSING = object()


class TTLCache(Generic[V]):
    def __init__(self, ttl: float, max_entries: int, clock: Callable[[], float] = time.monotonic) -> None:
        if ttl < 0 or max_entries < 1:
            raise ValueError("ttl must be >= 0 and max_entries >= 1")
        self.ttl = ttl
        self.max_entries = max_entries
        self._clock = clock
        self._data: dict[Hashable, tuple[float, V]] = {}
        self._batch = max_entries // 16  # evicted beyond the bound at once (0 for tiny caches)
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> V | object:
        """The cached value, or the module's ``MISSING`` sentinel when absent or expired."""
        entry = self._data.get(key)
        if entry is None or entry[0] <= self._clock():
            return _MISSING
        return entry[1]

    def put(self, key: Hashable, value: V, fetched_at: float | None = None, ttl: float | None = None) -> None:
        """Store ``value`` for ``ttl`` (default: the cache's); ``fetched_at`` (a clock reading taken *before*
        the read that produced the value) keeps the staleness bound honest."""
        ttl = self.ttl if ttl is None else ttl
        if ttl <= 0:
            return
        start = self._clock() if fetched_at is None else fetched_at
        with self._lock:
            data = self._data
            data.pop(key, None)  # a refreshed entry moves to the end: eviction follows insertion time
            data[key] = (start + ttl, value)
            if len(data) > self.max_entries:
                # The oldest first, a batch at a time: one walk over the holes at the front for the batch.
                for old in list(islice(data, len(data) - self.max_entries + self._batch)):
                    del data[old]

    def discard(self, key: Hashable) -> None:
        with self._lock:
            self._data.pop(key, None)

    def clear(self) -> None:
        with self._lock:
            self._data.clear()

    def __len__(self) -> int:
        return len(self._data)


MISSING = _MISSING
