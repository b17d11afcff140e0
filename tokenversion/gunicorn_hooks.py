"""Gunicorn hooks for Prometheus's multi-process mode (several workers, one ``/metrics``).

With ``PROMETHEUS_MULTIPROC_DIR`` set, every worker writes its metrics to files in that directory and the
worker that answers a scrape reads them all. Two chores belong to the gunicorn master, so they are here:

- ``on_starting``: empty the directory, so counters of a previous run are not added to this one's;
- ``child_exit``: drop the files of a worker that ended, so its live gauges (feed requests in progress,
  store staleness) stop counting. Its counters stay: a restart must not make ``_total`` go back.

And one belongs to each worker: ``worker_exit`` sends the worker's last service report (``REPORT_URL``;
``tokenversion.reporting``) within its 2 s bound as the worker stops (``atexit`` does it too; the hook also
covers a worker that gunicorn ends without running ``atexit`` handlers to the end).

Use it as the configuration module (``gunicorn -c python:tokenversion.gunicorn_hooks ...``) or import the
functions into your own ``gunicorn.conf.py``. Without ``PROMETHEUS_MULTIPROC_DIR`` the first two do nothing;
without reporting, the third.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any


def _directory() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or os.environ.get("prometheus_multiproc_dir") or None


def on_starting(server: Any) -> None:
    directory = _directory()
    if directory:
        path = Path(directory)
        path.mkdir(parents=True, exist_ok=True)
        for stale in path.glob("*.db"):
            stale.unlink()


def child_exit(server: Any, worker: Any) -> None:
    if _directory():
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)


def worker_exit(server: Any, worker: Any) -> None:
    from tokenversion.reporting import flush_at_exit

    flush_at_exit()
