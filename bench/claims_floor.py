"""The claims endpoint against its floor: server time of one call at low load, beside a do-nothing view.

One client, one keep-alive connection, one request at a time: the latency a single Keycloak node sees when
it issues tokens at a modest rate. The provider runs under gunicorn (one gthread worker with one thread, the
gunicorn worker type that keeps connections alive; a sync worker closes each) on PostgreSQL, with the
provider's shipped database settings (``CONN_MAX_AGE=60``, health checks on, no prepared statements) unless
``--tuned``. Each claims call names one of ``--users`` provisioned users at random with the contract's full
body, unchanged: the steady state (a known user, nothing changed).

The floor is ``POST /bench/floor`` on the same server (``bench/_floor_site.py``): the same middleware, the
same body and headers, a view that does nothing. Claims and floor calls, on every server started, run
in blocks, the order of the (server, path) cells rotated each block, so noise from the shared machine lands
on all alike.

Server time is the provider's own ``Server-Timing: app;dur=…`` header (``provider/timing.py``), wall time
measured inside the WSGI application:
  includes  Django building the request, the ``request_started`` signal (connection age and health
            bookkeeping), every middleware, URL routing, the view, its database round trips (PostgreSQL's
            own time included), and serialising the answer;
  excludes  gunicorn reading and parsing the request and writing the answer, the ``request_finished``
            signal, the loopback network and the client.
``cpu;dur`` (the worker thread's CPU time) is reported too, and the client-observed round trip, which adds
what server time excludes (and the Python client's own work).

    bash scripts/services.sh start                  # the shared PostgreSQL on 127.0.0.1:55432
    .venv/bin/python bench/claims_floor.py          # 20,000 calls of each, in 100 blocks
    .venv/bin/python bench/claims_floor.py --quick  # 4,000 of each
    .venv/bin/python bench/claims_floor.py --tuned --sqlite   # also prepared statements; and SQLite, age 0/60
    .venv/bin/python bench/claims_floor.py --compare-tree /tmp/before   # also older code (see --help)

Target (issue 13): claims server time at most 0.5 ms median on PostgreSQL with persistent connections.
"""

from __future__ import annotations

import argparse
import http.client
import json
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from _provider import (
    DEFAULT_DATABASE_URL,
    MAPPER_SECRET,
    PYTHON,
    ServerConfig,
    claims_call,
    ensure_database,
    gunicorn,
    provider_env,
    seed_users,
    subject_of,
)
from _setup import ROOT, percentile

TARGET_MS = 0.5
FLOOR_SETTINGS = "bench._floor_site"
# One worker, one thread: requests never wait for each other, and the connection is kept alive.
SHIPPED = ServerConfig(workers=1, worker_class="gthread", threads=1, conn_max_age=60, health_checks=True,
                       prepared=False, settings=FLOOR_SETTINGS)
TUNED = ServerConfig(workers=1, worker_class="gthread", threads=1, conn_max_age=600, health_checks=False,
                     prepared=True, settings=FLOOR_SETTINGS)


def _local_run_reported(main: Callable[[], Any], packages: Sequence[str] = ()) -> Any:
    """Stand-in for bench/_report.py's ``run_reported`` (the ``peers`` package) until it is merged."""
    import os
    import platform

    from _setup import machine_info

    info = machine_info()
    print(f"== claims_floor.py: start {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}")
    print(f"cpu: {info['cpu']}; cores (nproc): {info['nproc']}")
    print(f"versions: Python {platform.python_version()}, Django {info['django']}, PyJWT {info['pyjwt']}, "
          f"cryptography {info['cryptography']}")
    print(f"load average before (1/5/15 min): {info['load']}", flush=True)
    try:
        return main()
    finally:
        one, five, fifteen = os.getloadavg()
        print(f"load average after (1/5/15 min): {one:.2f} {five:.2f} {fifteen:.2f}")


try:
    from _report import run_reported
except ImportError:  # bench/_report.py not merged yet
    run_reported = _local_run_reported


@dataclass
class Series:
    """Per-call samples of one (server, path): server wall and CPU from Server-Timing, and round trip."""

    app_ms: list[float] = field(default_factory=list)
    cpu_ms: list[float] = field(default_factory=list)
    rtt_ms: list[float] = field(default_factory=list)


class Client:
    """One keep-alive HTTP/1.1 connection, one request at a time (http.client reuses the socket)."""

    def __init__(self, base: str) -> None:
        host, port = base.removeprefix("http://").split(":")
        self.conn = http.client.HTTPConnection(host, int(port), timeout=10)
        self.headers = {"Content-Type": "application/json", "X-TokenVersion-Secret": MAPPER_SECRET}

    def post(self, path: str, body: bytes, into: Series) -> bytes:
        clock = time.perf_counter
        start = clock()
        self.conn.request("POST", path, body, self.headers)
        response = self.conn.getresponse()
        data = response.read()
        rtt = clock() - start
        if response.status != 200:
            raise SystemExit(f"{path}: {response.status} {data[:200]!r}")
        if response.getheader("Connection", "").lower() == "close" or response.will_close:
            raise SystemExit("the server closed the connection: keep-alive is not in effect")
        timing = dict(part.strip().split(";dur=") for part in response.getheader("Server-Timing", "").split(","))
        into.app_ms.append(float(timing["app"]))
        into.cpu_ms.append(float(timing["cpu"]))
        into.rtt_ms.append(rtt * 1000)
        return data

    def close(self) -> None:
        self.conn.close()


def bodies(users: int, count: int, seed: int) -> list[bytes]:
    """Claims bodies for random provisioned users, as Keycloak's mapper sends them, unchanged."""
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        i = rng.randrange(users)
        out.append(json.dumps({"sub": subject_of(i), "username": f"user{i}", "email": f"user{i}@example.com",
                               "client_id": "web", "session_id": "5a6b7c8d-0000-4000-8000-000000000000"}).encode())
    return out


PATHS = {"claims": "/tokenversion/claims", "floor": "/bench/floor"}


def measure(servers: Sequence[tuple[str, str, int]], calls: int, blocks: int,
            seed: int) -> dict[str, dict[str, Series]]:
    """``calls`` claims and ``calls`` floor calls per server, each server on its own keep-alive connection,
    in ``blocks`` blocks: each block runs every (server, path) cell in turn, the order rotated each block,
    so load from other processes, which comes and goes, lands on every cell alike."""
    clients = {name: Client(base) for name, base, _ in servers}
    users = {name: count for name, _, count in servers}
    series = {name: {path: Series() for path in PATHS} for name in clients}
    for name, client in clients.items():  # connection opened, code paths and the database's caches warm
        for body in bodies(users[name], 300, seed + 1):
            for path in PATHS.values():
                client.post(path, body, Series())
    per_block = max(1, calls // blocks)
    work = {name: bodies(users[name], per_block * blocks, seed) for name in clients}
    cells = [(name, path) for name in clients for path in PATHS]
    for index in range(blocks):
        shift = index % len(cells)
        for name, path in cells[shift:] + cells[:shift]:
            for body in work[name][index * per_block:(index + 1) * per_block]:
                clients[name].post(PATHS[path], body, series[name][path])
    for client in clients.values():
        client.close()
    return series


def sqlite_server(stack: ExitStack, conn_max_age: int, users: int) -> str:
    """The same provider on a fresh SQLite file (migrated, ``users`` users provisioned by first logins)."""
    path = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="tv-floor-"))) / "provider.sqlite3"
    url = f"sqlite:///{path}"
    subprocess.run([str(PYTHON), "manage.py", "migrate", "--verbosity", "0"], cwd=ROOT, check=True,
                   env=provider_env(url))
    config = ServerConfig(workers=1, worker_class="gthread", threads=1, conn_max_age=conn_max_age,
                          health_checks=True, prepared=False, settings=FLOOR_SETTINGS)
    base = stack.enter_context(gunicorn(url, config))
    client = Client(base)
    for i in range(users):
        client.post("/tokenversion/claims", json.dumps({
            "sub": subject_of(i), "username": f"user{i}", "email": f"user{i}@example.com", "client_id": "web",
        }).encode(), Series())
    client.close()
    return base


def row(name: str, s: Series, floor: Series | None) -> str:
    med, p99 = statistics.median(s.app_ms), percentile(s.app_ms, 99)
    cells = (f"{name:52s} {med:8.3f} {p99:8.3f} {statistics.median(s.cpu_ms):8.3f} "
             f"{statistics.median(s.rtt_ms):8.3f} {percentile(s.rtt_ms, 99):8.3f}")
    if floor is not None:
        cells += (f" {med / statistics.median(floor.app_ms):7.2f}x"
                  f" {med - statistics.median(floor.app_ms):8.3f}")
    return cells


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="4,000 calls of each instead of 20,000")
    parser.add_argument("--calls", type=int, help="calls of each path per server (default 20000, quick 4000)")
    parser.add_argument("--blocks", type=int, default=100, help="blocks the calls are split into (see measure)")
    parser.add_argument("--users", type=int, default=10_000, help="provisioned users the calls pick from")
    parser.add_argument("--database-url", default=DEFAULT_DATABASE_URL)
    parser.add_argument("--tuned", action="store_true",
                        help="also a server with prepared statements and health checks off (docs/benchmarks.md)")
    parser.add_argument("--sqlite", action="store_true",
                        help="also the provider on SQLite, with and without a persistent connection")
    parser.add_argument("--compare-tree", default="", help="also serve the code of another checkout (e.g. "
                        "`git archive 9444706 | tar -x -C /tmp/before`), shipped settings, side by side; this "
                        "checkout's provider/timing.py, provider/wsgi.py and bench/_floor_site.py are copied into "
                        "it so both are timed alike")
    parser.add_argument("--seed", type=int, default=13)
    args = parser.parse_args(argv)
    calls = args.calls or (4_000 if args.quick else 20_000)

    ensure_database(args.database_url)
    seeded = seed_users(args.database_url, args.users)
    print(f"PostgreSQL: {args.database_url.rsplit('@', 1)[-1]}, {args.users} provisioned users"
          + (f" (seeded in {seeded:.1f} s)" if seeded else ""))
    servers: list[tuple[str, Callable[[ExitStack], str], int]] = [
        ("PostgreSQL, shipped settings: " + SHIPPED.short(), lambda s: s.enter_context(
            gunicorn(args.database_url, SHIPPED)), args.users)]
    if args.compare_tree:
        tree = Path(args.compare_tree).resolve()
        for name in ("provider/timing.py", "provider/wsgi.py", "bench/_floor_site.py"):
            shutil.copyfile(ROOT / name, tree / name)
        other = replace(SHIPPED, tree=str(tree))
        servers.append((f"PostgreSQL, shipped settings, code from {tree}", lambda s: s.enter_context(
            gunicorn(args.database_url, other)), args.users))
    if args.tuned:
        servers.append(("PostgreSQL, tuned: " + TUNED.short(), lambda s: s.enter_context(
            gunicorn(args.database_url, TUNED)), args.users))
    if args.sqlite:
        sqlite_users = min(args.users, 2_000)
        for age in (60, 0):
            servers.append((f"SQLite, CONN_MAX_AGE={age}", lambda s, age=age: sqlite_server(s, age, sqlite_users),
                            sqlite_users))
    print(f"gunicorn: 1 gthread worker x 1 thread, keep-alive; {calls} calls of each path per server, "
          f"{args.blocks} blocks, cells rotated; one client, one connection per server")

    with ExitStack() as stack:
        bases = [(name, start(stack), users) for name, start, users in servers]
        for name, base, _ in bases:
            answer = claims_call(base, {"sub": subject_of(0), "username": "user0", "email": "user0@example.com",
                                        "client_id": "web"})
            assert answer == {"sub": subject_of(0), "token_version": 0}, (name, answer)
        results = measure(bases, calls, args.blocks, args.seed)

    print()
    print("server time = Server-Timing app (wall inside the WSGI app); rtt = client-observed round trip; ms")
    print(f"{'server / path':52s} {'median':>8s} {'p99':>8s} {'cpu med':>8s} {'rtt med':>8s} {'rtt p99':>8s} "
          f"{'/floor':>8s} {'-floor':>8s}")
    for name, series in results.items():
        print(name)
        print(row("  claims (known user, unchanged)", series["claims"], series["floor"]))
        print(row("  floor (do-nothing view, same middleware)", series["floor"], None))
    shipped = results[servers[0][0]]["claims"]
    median = statistics.median(shipped.app_ms)
    print(f"TARGET claims server time, median, PostgreSQL with persistent connections (shipped settings): "
          f"{median:.3f} ms (<= {TARGET_MS} ms: {'met' if median <= TARGET_MS else 'MISSED'}); "
          f"p99 {percentile(shipped.app_ms, 99):.3f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(run_reported(main))
