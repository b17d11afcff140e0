"""A loopback HTTP server that records the service reports it receives (``POST /tokenversion/reports``).

Stands in for the provider in the reporter's own tests and the benchmark: real sockets, real HTTP, the
contract's answers (``202 {"accepted": ...}``), and the answers a provider gives when it is not happy
(``answers``: a list of ``(status, headers)`` used one by one before falling back to 202). ``stop`` closes
the listening socket (the provider unreachable: connection refused) and ``start`` opens it again on the same
port.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.remote_helpers import free_port

PATH = "/tokenversion/reports"


class ReportRecorder:
    def __init__(self, key: str = "tvs_test-key", port: int | None = None) -> None:
        self.key = key
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}{PATH}"
        self.reports: list[dict[str, Any]] = []  # accepted bodies, in arrival order
        self.received: list[tuple[float, int, dict[str, str]]] = []  # (monotonic, status answered, headers)
        self.answers: list[tuple[int, dict[str, str]]] = []
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._server: ThreadingHTTPServer | None = None
        self.start()

    def start(self) -> None:
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                with recorder._lock:
                    status, headers = recorder.answers.pop(0) if recorder.answers else (202, {})
                    if self.path != PATH or self.headers.get("Authorization") != f"Bearer {recorder.key}":
                        status, headers = 401, {}
                    recorder.received.append((time.monotonic(), status, dict(self.headers)))
                    if status == 202:
                        report = json.loads(body)
                        recorder.reports.append(report)
                        answer = {"accepted": {"freshness": len(report["freshness"]), "uses": len(report["uses"])}}
                    else:
                        answer = {"error": "test", "error_description": f"answered {status}"}
                    recorder._changed.notify_all()
                data = json.dumps(answer).encode()
                self.send_response(status)
                for name, value in {"Content-Type": "application/json", **headers}.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        server.daemon_threads = True
        self._server = server
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()

    close = stop

    def uses(self) -> list[dict[str, Any]]:
        with self._lock:
            return [use for report in self.reports for use in report["uses"]]

    def wait_for(self, predicate, timeout: float = 5.0) -> bool:
        """Wait until ``predicate(self)`` holds (checked at each arrival), up to ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                self._lock.release()
                try:
                    if predicate(self):
                        return True
                finally:
                    self._lock.acquire()
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._changed.wait(min(remaining, 0.05))
