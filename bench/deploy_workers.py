"""Which gunicorn worker class and counts for the provider in production (docs/deployment.md).

The provider serves two kinds of requests on one port: the claims endpoint (Keycloak's mapper, at every
token issue: short, database bound) and the feed's long-polls (``/tokenversion/feed/events?wait=...``:
each holds a worker thread for up to ``FEED_MAX_WAIT`` seconds while it waits). This measures the claims
endpoint (wrk, closed loop, ``--connections``) while ``K`` long-polls are held open by services' stand-ins,
for sync workers and for gthread workers with several thread counts, on PostgreSQL, in one run.

    bash scripts/services.sh start
    .venv/bin/python bench/deploy_workers.py            # 3 rounds of 4 s per cell
    .venv/bin/python bench/deploy_workers.py --quick    # 2 rounds of 2 s

Cells run in an order rotated each round; figures are medians over rounds (the machine is shared).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from contextlib import ExitStack

import _provider
from _provider import DEFAULT_DATABASE_URL, ServerConfig, ensure_database, gunicorn, run_wrk, seed_users, with_database
from _report import run_reported
from _setup import load

FEED_SECRET = "bench-feed-secret-0123456789abcdef0123456789"
CONFIGS = [
    ServerConfig(workers=2, worker_class="sync", threads=1),
    ServerConfig(workers=2, worker_class="gthread", threads=4),
    ServerConfig(workers=2, worker_class="gthread", threads=8),
    ServerConfig(workers=2, worker_class="gthread", threads=16),
]
_provider_env = _provider.provider_env


def _env_with_feed(database_url: str, **extra: str) -> dict[str, str]:
    """The benchmark provider's environment plus a feed secret, so the feed endpoints answer."""
    return {**_provider_env(database_url, **extra), "TOKENVERSION_FEED_SECRETS": FEED_SECRET}


_provider.provider_env = _env_with_feed  # gunicorn() reads it from the module


class LongPolls:
    """``count`` services long-polling the feed, each re-polling as soon as its answer comes."""

    def __init__(self, base: str, count: int, wait: float) -> None:
        self.base, self.wait, self.stop = base, wait, threading.Event()
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(count)]
        self.answers = self.errors = 0

    def _get(self, path: str, timeout: float) -> dict:
        request = urllib.request.Request(f"{self.base}{path}", headers={"X-TokenVersion-Secret": FEED_SECRET})
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.loads(response.read())

    def _run(self) -> None:
        cursor = self._get(f"/tokenversion/feed/snapshot?since={int(time.time()) - 60}", 30)["cursor"]
        have = 0
        while not self.stop.is_set():
            query = urllib.parse.urlencode({"after": cursor, "have": have, "wait": self.wait})
            try:
                answer = self._get(f"/tokenversion/feed/events?{query}", self.wait + 30)
            except (OSError, urllib.error.HTTPError) as exc:
                self.errors += 1
                print(f"long-poll failed: {exc}")
                time.sleep(1)
                continue
            cursor, have = answer["cursor"], answer.get("last_id") or have
            self.answers += 1

    def __enter__(self) -> LongPolls:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        # The threads end with their current poll; waiting for them keeps this cell's long-polls from
        # holding the server's threads into the next cell.
        self.stop.set()
        for thread in self.threads:
            thread.join(self.wait + 30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--connections", type=int, default=8, help="claims connections (Keycloak-like)")
    parser.add_argument("--long-polls", default="0,4,12", help="comma-separated counts of held long-polls")
    parser.add_argument("--users", type=int, default=10_000)
    args = parser.parse_args()
    rounds, duration = (2, 2.0) if args.quick else (3, 4.0)
    polls = [int(k) for k in args.long_polls.split(",")]
    database_url = with_database(DEFAULT_DATABASE_URL, "tv_deploy_bench")
    ensure_database(database_url)
    seed_users(database_url, args.users)
    results: dict[tuple[str, int], list[dict]] = {}
    with ExitStack() as stack:
        servers = {config.short(): stack.enter_context(gunicorn(database_url, config)) for config in CONFIGS}
        cells = [(name, k) for name in servers for k in polls]
        for r in range(rounds):
            for name, k in cells[r % len(cells):] + cells[:r % len(cells)]:
                # each long-poll waits a little longer than a measurement, so it spans it, then ends
                with LongPolls(servers[name], k, wait=duration + 2):
                    # let the long-polls reach their wait before measuring
                    threading.Event().wait(1.0 if k else 0)
                    results.setdefault((name, k), []).append(run_wrk(servers[name], args.connections, duration,
                                                                     args.users))
    print(f"load average at end (1/5/15 min): {load()}")
    print(f"claims endpoint, {args.connections} wrk connections, medians of {rounds} rounds of {duration:g} s; "
          f"K = long-polls held open on the same server throughout (wait={duration + 2:g} s)")
    print(f"{'server':45} {'K':>3} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7} {'vs K=0':>7}")
    for name in servers:
        base_rps = None
        for k in polls:
            runs = results[(name, k)]
            rps = statistics.median(x["rps"] for x in runs)
            p50 = statistics.median(x["p50_us"] for x in runs) / 1000
            p99 = statistics.median(x["p99_us"] for x in runs) / 1000
            errors = sum(x["errors"] for x in runs)
            base_rps = base_rps or rps
            print(f"{name:45} {k:>3} {rps:8.0f} {p50:8.1f} {p99:8.1f} {errors:>7} {rps / base_rps:7.2f}")


if __name__ == "__main__":
    sys.exit(run_reported(main))
