"""The provider under gunicorn on PostgreSQL, for the load benchmarks: a database of its own, seeding by COPY,
gunicorn bound to loopback, and wrk driven with ``claims_load.lua``.

Nothing here starts Keycloak: the claims endpoint is called the way Keycloak's mapper calls it.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from _setup import ROOT

BENCH_ISSUER = "http://127.0.0.1:8080/realms/bench"
MAPPER_SECRET = "bench-mapper-secret-0123456789abcdef0123"
EVENT_SECRET = "bench-event-secret-0123456789abcdef01234"
DEFAULT_DATABASE_URL = "postgres://tokenversion:tokenversion@127.0.0.1:55432/tv_bench"
LUA = ROOT / "bench" / "claims_load.lua"
PYTHON = Path(sys.executable)


def subject_of(i: int) -> str:
    """Keycloak-shaped (UUID-like, 36 characters) subject number ``i``; claims_load.lua builds the same."""
    return f"{i:08x}-0000-4000-8000-{i:012x}"


def provider_env(database_url: str, **extra: str) -> dict[str, str]:
    """The provider's production settings (DEBUG off: no query log), configured from the environment."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TOKENVERSION_", "DJANGO_"))}
    env.update({
        "DJANGO_SETTINGS_MODULE": "provider.settings",
        "DJANGO_DEBUG": "0",
        "DJANGO_SECRET_KEY": "bench-secret-key-not-for-production-0123456789",
        "DJANGO_SSL_REDIRECT": "0",  # plain HTTP on loopback
        "DATABASE_URL": database_url,
        "TOKENVERSION_ISSUER": BENCH_ISSUER,
        "TOKENVERSION_MAPPER_SECRETS": MAPPER_SECRET,
        "TOKENVERSION_EVENT_SECRETS": EVENT_SECRET,
        "TOKENVERSION_LOG_LEVEL": "WARNING",
        "DJANGO_SECURE_COOKIES": "0",  # likewise (provider/settings.py)
        "PYTHONPATH": str(ROOT),
    })
    env.update(extra)
    return env


def pg_connect(database_url: str, dbname: str | None = None) -> Any:
    """A psycopg connection (autocommit) to the URL's server, to ``dbname`` or the URL's database."""
    import psycopg

    parts = urllib.parse.urlsplit(database_url)
    return psycopg.connect(
        host=parts.hostname, port=parts.port or 5432, user=urllib.parse.unquote(parts.username or ""),
        password=urllib.parse.unquote(parts.password or ""), dbname=dbname or parts.path.lstrip("/"),
        autocommit=True,
    )


def ensure_database(database_url: str) -> None:
    """Create the URL's database if missing (the role has CREATEDB), then migrate it."""
    name = urllib.parse.urlsplit(database_url).path.lstrip("/")
    with pg_connect(database_url, "postgres") as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone() is None:
            conn.execute(f'CREATE DATABASE "{name}"')
    subprocess.run([str(PYTHON), "manage.py", "migrate", "--verbosity", "0"], cwd=ROOT, check=True,
                   env=provider_env(database_url))


def seed_users(database_url: str, count: int) -> float:
    """Make users 0..count-1 exist (version row and user row), adding only the missing ones, with COPY.

    Returns the seconds spent. Rows are added in subject order, so the number of seeded rows (their subjects
    have the shape of ``subject_of``; other benchmarks add other shapes) says which exist.
    """
    started = time.perf_counter()
    seeded = "WHERE issuer = %s AND subject LIKE '%%-0000-4000-8000-%%'"
    with pg_connect(database_url) as conn:
        have = conn.execute(f"SELECT count(*) FROM tokenversion_server_subjectversion {seeded}",
                            [BENCH_ISSUER]).fetchone()[0]
        users = conn.execute(f"SELECT count(*) FROM accounts_keycloakuser {seeded}",
                             [BENCH_ISSUER]).fetchone()[0]
        if have != users:
            raise SystemExit(f"bench rows out of step ({have} versions, {users} users): drop the database")
        if have >= count:
            return 0.0
        with conn.transaction():
            with conn.cursor().copy(
                "COPY tokenversion_server_subjectversion (issuer, subject, token_version, updated_at) "
                "FROM STDIN"
            ) as copy:
                for i in range(have, count):
                    copy.write_row((BENCH_ISSUER, subject_of(i), 0, "2026-01-01T00:00:00Z"))
            with conn.cursor().copy(
                "COPY accounts_keycloakuser (issuer, subject, username, email, last_client_id, first_seen, "
                "last_seen) FROM STDIN"
            ) as copy:
                for i in range(have, count):
                    copy.write_row((BENCH_ISSUER, subject_of(i), f"user{i}", f"user{i}@example.com", "web",
                                    "2026-01-01T00:00:00Z", "2026-01-01T00:00:00Z"))
        conn.execute("ANALYZE tokenversion_server_subjectversion")
        conn.execute("ANALYZE accounts_keycloakuser")
    return time.perf_counter() - started


def with_database(database_url: str, name: str) -> str:
    """The same server and credentials, another database."""
    parts = urllib.parse.urlsplit(database_url)
    return urllib.parse.urlunsplit(parts._replace(path=f"/{name}"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass(frozen=True)
class ServerConfig:
    workers: int = 2
    worker_class: str = "gthread"
    threads: int = 4
    conn_max_age: int = 600
    health_checks: bool = False
    prepared: bool = True  # server-side binding, statements prepared from their 2nd run on a connection
    tree: str = ""  # another checkout of the project to serve from (e.g. a `git archive HEAD` export)
    database: str = ""  # another database on the same server than the URL's (bench/scale.py: one per size)
    settings: str = ""  # another DJANGO_SETTINGS_MODULE (bench/claims_floor.py: the provider plus a floor view)

    def label(self) -> str:
        kind = f"{self.worker_class}x{self.threads}" if self.worker_class == "gthread" else self.worker_class
        return (f"{self.workers} {kind}, CONN_MAX_AGE={self.conn_max_age}, "
                f"health checks {'on' if self.health_checks else 'off'}, "
                f"{'prepared' if self.prepared else 'unprepared'}" + (f", code from {self.tree}" if self.tree else "")
                + (f", database {self.database}" if self.database else ""))

    def short(self) -> str:
        kind = f"gthread x{self.threads}" if self.worker_class == "gthread" else self.worker_class
        return (f"{self.workers} {kind}, age {self.conn_max_age}, checks {'on' if self.health_checks else 'off'}"
                f", {'prep' if self.prepared else 'no prep'}" + (f", {Path(self.tree).name}" if self.tree else ""))


@contextmanager
def gunicorn(database_url: str, config: ServerConfig) -> Iterator[str]:
    """The provider under gunicorn on 127.0.0.1; yields its base URL and stops it (only it) on exit."""
    port = free_port()
    # Only what differs from provider/env.py's defaults, so an older tree (``tree``) understands the URL.
    options: dict[str, int] = {"conn_max_age": config.conn_max_age}
    if not config.health_checks:
        options["conn_health_checks"] = 0
    if config.prepared:
        options.update(server_side_binding=1, prepare_threshold=1)
    query = urllib.parse.urlencode(options)
    root = Path(config.tree).resolve() if config.tree else ROOT
    if config.database:
        database_url = with_database(database_url, config.database)
    env = provider_env(f"{database_url}?{query}", PYTHONPATH=str(root))
    if config.settings:
        env["DJANGO_SETTINGS_MODULE"] = config.settings
    cmd = [str(PYTHON.parent / "gunicorn"), "provider.wsgi:application", "--bind", f"127.0.0.1:{port}",
           "--workers", str(config.workers), "--worker-class", config.worker_class, "--keep-alive", "30",
           "--log-level", "warning"]
    if config.worker_class == "gthread":
        cmd += ["--threads", str(config.threads)]
    proc = subprocess.Popen(cmd, cwd=root, env=env, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(base, proc)
        yield base
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)  # the master and its workers: a session of their own
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def wait_ready(base: str, proc: subprocess.Popen, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"gunicorn exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(f"{base}/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise SystemExit("gunicorn did not become ready")


def claims_call(base: str, body: dict[str, Any]) -> dict[str, Any]:
    """One claims call with the bench secret (to check the server answers as the contract says)."""
    request = urllib.request.Request(
        f"{base}/tokenversion/claims", data=json.dumps(body).encode(), method="POST",
        headers={"Content-Type": "application/json", "X-TokenVersion-Secret": MAPPER_SECRET},
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.loads(response.read())


def wrk_available() -> bool:
    return shutil.which("wrk") is not None


def run_wrk(base: str, connections: int, duration: float, users: int, new_users: bool = False) -> dict[str, Any]:
    """wrk, one thread (it needs a fraction of a core; the rest is the provider's), closed loop: each of the
    ``connections`` sends its next request when the previous answer arrives."""
    if not wrk_available():
        raise SystemExit("wrk is not installed: apt-get install -y wrk")
    env = {**os.environ, "TV_USERS": str(users), "TV_SECRET": MAPPER_SECRET, "TV_NEW": "1" if new_users else "0"}
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{duration:g}s", "--timeout", "5s", "-s", str(LUA),
           f"{base}/tokenversion/claims"]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout
    for line in out.splitlines():
        if line.startswith("JSON "):
            result = json.loads(line[5:])
            result["rps"] = result["requests"] / (result["duration_us"] / 1e6)
            result["errors"] = sum(result[k] for k in ("status_errors", "connect_errors", "read_errors",
                                                       "write_errors", "timeouts"))
            return result
    raise SystemExit(f"wrk printed no result:\n{out}")
