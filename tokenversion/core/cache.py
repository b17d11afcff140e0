"""A small bounded cache with per-entry expiry, safe to share between threads.

Used for the stores' per-process cache of revocation state. Entries expire after ``ttl`` seconds, which is
what bounds how stale a process's view can be; the size bound keeps memory flat however many subjects a
process sees. Eviction is oldest-inserted first, which is cheap and good enough when entries live a second.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable
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
            self._data.pop(key, None)
            self._data[key] = (start + ttl, value)
            while len(self._data) > self.max_entries:
                del self._data[next(iter(self._data))]

    def discard(self, key: Hashable) -> None:
        with self._lock:
            self._data.pop(key, None)

    def clear(self) -> None:
        with self._lock:
            self._data.clear()

    def __len__(self) -> int:
        return len(self._data)


MISSING = _MISSING
