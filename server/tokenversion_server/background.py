"""A bounded queue drained in batches by one daemon thread: the provider's work that must never hold up a request.

The security webhook and the escalation policy both take work from the report endpoint, which answers before
that work is done; when the queue is full the work is dropped and counted, never waited for.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
from collections.abc import Callable, Iterable
from typing import Generic, TypeVar

logger = logging.getLogger("tokenversion.server")

Item = TypeVar("Item")


class BatchQueue(Generic[Item]):
    """``put`` never blocks: what does not fit goes to ``on_drop(count)``. The thread hands ``handle`` every
    item waiting (at most ``batch_max``) at once. ``pid`` lets the owner make a new one after a fork, since
    threads do not survive it."""

    def __init__(self, name: str, size: int, handle: Callable[[list[Item]], None],
                 on_drop: Callable[[int], None], batch_max: int | None = None) -> None:
        self.pid = os.getpid()
        self.queue: queue.Queue[Item] = queue.Queue(maxsize=size)
        self._handle, self._on_drop, self._batch_max = handle, on_drop, batch_max
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.thread.start()

    def put(self, items: Iterable[Item]) -> None:
        dropped = 0
        for item in items:
            try:
                self.queue.put_nowait(item)
            except queue.Full:
                dropped += 1
        if dropped:
            self._on_drop(dropped)

    def _run(self) -> None:
        while True:
            batch = [self.queue.get()]
            while self._batch_max is None or len(batch) < self._batch_max:
                try:
                    batch.append(self.queue.get_nowait())
                except queue.Empty:
                    break
            try:
                self._handle(batch)
            except Exception:  # the thread must outlive one bad batch
                logger.exception("%s: a batch of %d failed", self.thread.name, len(batch))
