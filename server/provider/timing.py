"""``Server-Timing`` on every answer: how long the provider itself spent on it, as the caller sees in the header.

Wraps the WSGI application, so it brackets all of Django's work on a request: building the request object,
the ``request_started`` signal (Django's connection age and health bookkeeping), every middleware, URL
routing, the view and its database round trips, up to the moment the answer's headers are handed to the
server. It excludes what happens outside Django: the WSGI server reading and parsing the request and writing
the answer to the socket, and the ``request_finished`` signal that runs when the answer is closed.

    Server-Timing: app;dur=0.412, cpu;dur=0.305

``app`` is wall time in milliseconds (CPU plus waiting, for the database mostly); ``cpu`` is the CPU time of
the handling thread (``time.thread_time``), so ``app - cpu`` is about the time spent waiting. Useful in
production (browser dev tools and most HTTP clients show it) and what ``bench/claims_floor.py`` measures.
``DJANGO_SERVER_TIMING=0`` leaves it out.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

StartResponse = Callable[..., Any]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


class ServerTiming:
    """A WSGI wrapper that adds ``Server-Timing: app;dur=<ms>, cpu;dur=<ms>`` to every answer."""

    def __init__(self, app: WSGIApp) -> None:
        self.app = app

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        wall, cpu = time.perf_counter(), time.thread_time()

        def timed_start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            # Django calls this once the whole answer is built (for a streaming answer: before its body).
            app_ms = (time.perf_counter() - wall) * 1000
            cpu_ms = (time.thread_time() - cpu) * 1000
            headers.append(("Server-Timing", f"app;dur={app_ms:.3f}, cpu;dur={cpu_ms:.3f}"))
            return start_response(status, headers, exc_info)

        return self.app(environ, timed_start_response)
