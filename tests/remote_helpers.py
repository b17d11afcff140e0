"""Real processes for the remote-store tests: a Redis server of our own, the provider (gunicorn), the
certifying publisher, and a DRF service with no database. Each runs in its own session and is ended by its
own process group, never by name."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(condition: Callable[[], Any], timeout: float, interval: float = 0.02, what: str = "condition"):
    """Poll ``condition`` until it returns something truthy; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


class Process:
    """One command in its own session, its output in a log file (printed when a test fails)."""

    def __init__(self, name: str, args: list[str], env: dict[str, str] | None = None) -> None:
        self.name, self.args = name, args
        self.env = {**os.environ, **(env or {})}
        self.log = Path(tempfile.mkstemp(prefix=f"tv-{name}-", suffix=".log")[1])
        self.proc: subprocess.Popen | None = None

    def start(self) -> Process:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(self.args, cwd=ROOT, env=self.env, stdout=out, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        return self

    def signal(self, signum: int) -> None:
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signum)  # our own session: the process and its children

    def kill(self) -> None:
        if self.proc is None:
            return
        self.signal(signal.SIGCONT)
        self.signal(signal.SIGKILL)
        self.proc.wait(10)
        self.proc = None

    def stop(self) -> None:
        if self.proc is None:
            return
        self.signal(signal.SIGCONT)
        self.signal(signal.SIGTERM)
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.signal(signal.SIGKILL)
            self.proc.wait(5)
        self.proc = None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]


def http_get(url: str, headers: dict[str, str] | None = None, timeout: float = 5.0) -> tuple[int, Any]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as exc:
        body = exc.read()
        exc.close()
        try:
            return exc.code, json.loads(body or b"null")
        except ValueError:
            return exc.code, body.decode(errors="replace")


class RedisServer(Process):
    """A redis-server of our own on a free port (never the shared one), restartable on the same port."""

    def __init__(self) -> None:
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="tv-redis-")
        super().__init__("redis", ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                                   "--appendonly", "no", "--dir", self.dir])
        self.url = f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        super().start()
        import redis

        client = redis.Redis.from_url(self.url, socket_connect_timeout=0.2)
        try:
            wait_until(lambda: _pings(client), 10, what="redis-server to answer")
        finally:
            client.close()
        return self


def _pings(client) -> bool:
    import redis

    try:
        return bool(client.ping())
    except (redis.RedisError, OSError):
        return False


def django_env(settings_module: str, db_name: str, issuer: str, **extra: str) -> dict[str, str]:
    return {
        "DJANGO_SETTINGS_MODULE": settings_module,
        "TOKENVERSION_TEST_ISSUER": issuer,
        "TOKENVERSION_TEST_SQLITE": db_name,
        "TOKENVERSION_TEST_PG_NAME": db_name,
        "PYTHONUNBUFFERED": "1",
        **extra,
    }


def gunicorn(name: str, app: str, port: int, env: dict[str, str], threads: int = 16) -> Process:
    return Process(name, [sys.executable, "-m", "gunicorn", app, "--bind", f"127.0.0.1:{port}", "--workers", "1",
                          "--worker-class", "gthread", "--threads", str(threads), "--timeout", "60",
                          "--graceful-timeout", "1", "--log-level", "warning"], env)


class WebProcess:
    """A gunicorn-served Django project on a fixed port: startable, killable and restartable."""

    def __init__(self, name: str, app: str, env: dict[str, str], ready_path: str = "/health") -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.name, self.app, self.env, self.ready_path = name, app, env, ready_path
        self.process: Process | None = None

    def start(self, timeout: float = 30) -> WebProcess:
        self.process = gunicorn(self.name, self.app, self.port, self.env).start()

        def ready() -> bool:
            if not self.process.running:
                raise AssertionError(f"{self.name} exited:\n{self.process.output()}")
            try:
                return http_get(self.url + self.ready_path, timeout=1)[0] == 200
            except OSError:
                return False

        wait_until(ready, timeout, interval=0.05, what=f"{self.name} to serve")
        return self

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()

    def pause(self) -> None:
        self.process.signal(signal.SIGSTOP)

    def resume(self) -> None:
        self.process.signal(signal.SIGCONT)


@contextlib.contextmanager
def revocation_held_open(subject: str, actor: Any, reason: str = "logout"):
    """A user revocation that has taken its audit id and not committed (the feed's hardest case): yields the
    event that lets it commit; it commits at the latest when the block ends. Needs a transactional test."""
    import threading

    from django.db import connections, transaction

    from tokenversion_server import services

    holding, release = threading.Event(), threading.Event()

    def revoke() -> None:
        try:
            with transaction.atomic():
                services.revoke_user(subject, reason=reason, actor=actor)
                holding.set()
                release.wait(10)
        finally:
            connections.close_all()

    thread = threading.Thread(target=revoke)
    thread.start()
    try:
        assert holding.wait(10), "the revocation did not start"
        yield release
    finally:
        release.set()
        thread.join()
