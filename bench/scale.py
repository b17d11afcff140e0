"""Scale: revocation throughput on PostgreSQL, the claims endpoint against the size of the user database, and
the in-process revocation map's memory and lookup time.

1. ``revoke``: ``services.revoke_user`` per second (one transaction: the version bump, the audit row, the
   commit hooks), in 1, 2 and 4 processes on distinct users, and 4 processes on one user (row contention).
2. ``users``: the user database at 10k, 100k and 1M users, one database per size (seeded with COPY), all
   measured in the same interleaved rounds: the claims endpoint's own two statements for random known users
   (on one prepared connection), the endpoint under gunicorn with wrk (1 and 8 connections), bytes per user.
3. ``map``: ``tokenversion.core.revocation_map.RevocationMap`` with 100k live entries: memory per entry
   (tracemalloc) and ``view`` time for subjects in and not in the map.

    bash scripts/services.sh start
    .venv/bin/python bench/scale.py                 # everything (about 5 minutes; the 1M seeding is most of it)
    .venv/bin/python bench/scale.py --quick         # shorter runs, users up to 100k
    .venv/bin/python bench/scale.py --part revoke   # or users, map
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import random
import statistics
import sys
import time
import tracemalloc
import urllib.parse
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from _provider import (
    BENCH_ISSUER,
    DEFAULT_DATABASE_URL,
    ServerConfig,
    ensure_database,
    pg_connect,
    provider_env,
    seed_users,
    subject_of,
    with_database,
)
from _report import run_reported
from _setup import RESULTS, load, percentile, pyplot, save, setup_django, timed_loop
from claims_load import TUNED, measure, summary  # the claims benchmark's tuned server and its driver

# --- 1. revoke_user throughput ---------------------------------------------------------------------------


def _revoker(index: int, same_user: bool, seconds: float, barrier: Any, results: Any) -> None:
    """One process: revoke users (its own, or the shared one) until the deadline; report the count."""
    from django.db import connections

    from tokenversion_server import services

    connections.close_all()  # never share the parent's connection across fork
    actor = services.Actor.system("bench/scale.py")
    subject = f"revoke-bench-{index}-" if not same_user else "revoke-bench-shared"
    services.current_version(subject if same_user else f"{subject}0")  # connect before the clock starts
    barrier.wait()
    deadline = time.perf_counter() + seconds
    done = 0
    while time.perf_counter() < deadline:
        target = subject if same_user else f"{subject}{done % 1000}"
        services.revoke_user(target, reason=services.Reason.ADMIN, actor=actor, note="bench")
        done += 1
    results.put(done)
    connections.close_all()


def revoke_throughput(seconds: float, process_counts: Sequence[int]) -> dict[str, float]:
    from django.db import connections

    context = multiprocessing.get_context("fork")
    rates: dict[str, float] = {}
    cases = [(n, False) for n in process_counts] + [(max(process_counts), True)]
    for n, same_user in cases:
        connections.close_all()
        barrier, results = context.Barrier(n), context.Queue()
        procs = [context.Process(target=_revoker, args=(i, same_user, seconds, barrier, results))
                 for i in range(n)]
        for proc in procs:
            proc.start()
        total = sum(results.get(timeout=seconds + 60) for _ in procs)
        for proc in procs:
            proc.join()
        label = f"{n} process{'es' if n > 1 else ''}, " + ("one shared user" if same_user else "distinct users")
        rates[label] = total / seconds
        print(f"  {label:36s} {total / seconds:8.0f} revoke_user/s  ({total / seconds / n:6.0f} per process; "
              f"load {load()})", flush=True)
    return rates


# --- 2. the user database at 10k .. 1M users --------------------------------------------------------------


def endpoint_queries(database_url: str, size: int, calls: int, seed: int) -> list[float]:
    """Seconds per call of the claims endpoint's own database work for random known users: its two statements
    (``services.current_version``'s read and ``provision_user``'s read, the SQL they run), prepared, on one
    connection, as a gunicorn worker runs them."""
    from accounts.provisioning import _select
    from tokenversion_server.services import _version_sql

    version_sql, user_sql = _version_sql("default")[0], _select("default")
    rng = random.Random(seed)
    samples = []
    clock = time.perf_counter
    with pg_connect(database_url) as conn:
        conn.prepare_threshold = 0
        for _ in range(calls):
            subject = subject_of(rng.randrange(size))
            start = clock()
            version = conn.execute(version_sql, [BENCH_ISSUER, subject]).fetchone()
            user = conn.execute(user_sql, [BENCH_ISSUER, subject]).fetchone()
            samples.append(clock() - start)
            assert version is not None and user is not None
    return samples


def bytes_per_user(database_url: str) -> float:
    """On-disk bytes (table, indexes, TOAST) per row of the version table plus per row of the user table."""
    total = 0.0
    with pg_connect(database_url) as conn:
        for table in ("tokenversion_server_subjectversion", "accounts_keycloakuser"):
            size, rows = conn.execute(
                f"SELECT pg_total_relation_size('{table}'), (SELECT count(*) FROM {table})"
            ).fetchone()
            total += size / max(rows, 1)
    return total


def users_scale(database_url: str, sizes: Sequence[int], calls: int, rounds: int, duration: float,
                ) -> list[dict[str, Any]]:
    """One database per size (``<name>_u<size>``), all served at once, measured in interleaved rounds."""
    base_name = urllib.parse.urlsplit(database_url).path.lstrip("/")
    configs = {size: replace(TUNED, database=f"{base_name}_u{size}") for size in sizes}
    urls = {size: with_database(database_url, config.database) for size, config in configs.items()}
    for size in sizes:
        ensure_database(urls[size])
        seeded = seed_users(urls[size], size)
        print(f"  {config_db(configs[size])}: {size:,d} users" + (f", seeded in {seeded:.0f} s" if seeded else ""),
              flush=True)
    queries: dict[int, list[float]] = {size: [] for size in sizes}
    for index in range(rounds):  # the in-process part, interleaved the same way
        for size in sizes[index % len(sizes):] + sizes[:index % len(sizes)]:
            queries[size] += endpoint_queries(urls[size], size, calls, seed=index)
    cells = [(configs[size], conns, False) for size in sizes for conns in (1, 8)]
    http = measure(database_url, cells, rounds, duration, {configs[size]: size for size in sizes})
    rows = []
    for size in sizes:
        h1, h8 = summary(http[(configs[size], 1, False)]), summary(http[(configs[size], 8, False)])
        row = {"users": size, "db_p50_us": percentile(queries[size], 50) * 1e6,
               "db_p99_us": percentile(queries[size], 99) * 1e6, "bytes_per_user": bytes_per_user(urls[size]),
               "http1": h1, "http8": h8}
        rows.append(row)
        print(f"  {size:>9,d} users: endpoint queries p50 {row['db_p50_us']:5.0f} us p99 {row['db_p99_us']:5.0f} us"
              f" | HTTP 1 conn p50 {h1['p50_ms']:5.2f} ms p99 {h1['p99_ms']:5.2f} ms"
              f" | 8 conns {h8['rps']:5.0f} req/s p50 {h8['p50_ms']:5.2f} ms p99 {h8['p99_ms']:5.2f} ms"
              f" | {row['bytes_per_user']:.0f} B/user on disk", flush=True)
    return rows


def config_db(config: ServerConfig) -> str:
    return f"database {config.database}"


# --- 3. the revocation map ---------------------------------------------------------------------------------


def revocation_map(entries: int, rounds: int) -> dict[str, float] | None:
    """Memory per entry and view() time with ``entries`` live user entries (and as many sessions)."""
    try:
        from tokenversion.core.revocation_map import FeedEvent, RevocationMap
    except ImportError:
        print("  TODO(lead): tokenversion/core/revocation_map.py is not there yet: map not measured")
        return None
    issuer = BENCH_ISSUER
    now = time.time()
    subjects = [subject_of(i) for i in range(entries)]
    sessions = [f"{i:08x}-1111-4000-8000-{i:012x}" for i in range(entries)]
    try:
        users = [FeedEvent("user", issuer, now, subject=s, version=3) for s in subjects]
        session_events = [FeedEvent("session", issuer, now, session_id=s) for s in sessions]
        tracemalloc.start()
        empty = RevocationMap(window=3600 + 5 + 60)
        before = tracemalloc.get_traced_memory()[0]
        empty.apply_many(users)
        after_users = tracemalloc.get_traced_memory()[0]
        empty.apply_many(session_events)
        after_sessions = tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()
        revmap = empty
    except (TypeError, AttributeError) as exc:  # the map's interface moved under this script
        print(f"  TODO(lead): the revocation map's interface changed ({exc}): update bench/scale.py")
        return None
    # The strings (subjects, session ids) are the feed's, allocated before tracing: add what they cost.
    string_bytes = statistics.mean(sys.getsizeof(s) for s in subjects[:1000])
    per_user = (after_users - before) / entries + string_bytes
    per_session = (after_sessions - after_users) / entries + string_bytes

    rng = random.Random(1)
    present = [(issuer, subjects[rng.randrange(entries)], sessions[rng.randrange(entries)]) for _ in range(10_000)]
    absent = [(issuer, subject_of(entries + i), f"absent-{i}") for i in range(10_000)]
    from _setup import interleaved_rounds

    samples = interleaved_rounds({
        "view, subject and session in the map": lambda: timed_loop(lambda a: revmap.view(*a), present),
        "view, neither in the map": lambda: timed_loop(lambda a: revmap.view(*a), absent),
    }, rounds)
    result = {
        "entries": float(len(revmap)),
        "bytes_per_user_entry": per_user,
        "bytes_per_session_entry": per_session,
        **{name: statistics.median(values) * 1e6 for name, values in samples.items()},
    }
    print(f"  {len(revmap):,d} live entries ({entries:,d} users + {entries:,d} sessions): "
          f"{per_user:.0f} B per user entry, {per_session:.0f} B per session entry "
          f"(subject/sid strings included, {string_bytes:.0f} B each)")
    for name, values in samples.items():
        print(f"  {name:38s} {statistics.median(values) * 1e6:6.2f} us (median of {rounds} rounds of 10k)")
    return result


# --- driver --------------------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--part", choices=["all", "revoke", "users", "map"], default="all")
    parser.add_argument("--database-url", default=DEFAULT_DATABASE_URL)
    parser.add_argument("--sizes", default="", help="user counts (default 10000,100000,1000000)")
    parser.add_argument("--plot", type=Path, default=RESULTS / "scale.png")
    args = parser.parse_args(argv)
    seconds = 3.0 if args.quick else 8.0
    sizes = [int(s) for s in (args.sizes or ("10000,100000" if args.quick else "10000,100000,1000000")).split(",")]

    report: dict[str, Any] = {}
    if args.part in ("all", "revoke", "users"):
        ensure_database(args.database_url)
        os.environ.update(provider_env(args.database_url))  # production settings: DEBUG off, no query log
        setup_django(database_url=args.database_url, ISSUER=BENCH_ISSUER)
        print(f"database: PostgreSQL {args.database_url.rsplit('@', 1)[-1]} (the shared server: fsync off)")
    if args.part in ("all", "revoke"):
        print(f"revoke_user throughput ({seconds:g} s per case):")
        report["revoke"] = revoke_throughput(seconds, [1, 2, 4])
    if args.part in ("all", "users"):
        rounds = 3 if args.quick else 5
        print(f"claims endpoint against the user count ({TUNED.label()}; {rounds} rounds, wrk "
              f"{seconds / 2:g} s per cell, medians of rounds):")
        report["users"] = users_scale(args.database_url, sizes, 1000, rounds, seconds / 2)
    if args.part in ("all", "map"):
        print("revocation map:")
        report["map"] = revocation_map(100_000, 5 if args.quick else 15)
    print(f"load average at end: {load()}")
    if os.environ.get("TV_NO_PLOT") != "1":
        plot(report, args.plot)


def plot(report: dict[str, Any], path: Path) -> None:
    plt = pyplot()
    if plt is None or not report:
        return
    panels = [key for key in ("revoke", "users", "map") if report.get(key)]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.4), squeeze=False)
    for ax, key in zip(axes[0], panels, strict=True):
        if key == "revoke":
            labels = list(report["revoke"])
            ax.barh([label.replace(", ", "\n") for label in labels], list(report["revoke"].values()),
                    color="#2b8cd9")
            ax.invert_yaxis()
            ax.set_xlabel("revoke_user / s (PostgreSQL)")
            ax.tick_params(axis="y", labelsize=7)
        elif key == "users":
            rows = report["users"]
            sizes = [r["users"] for r in rows]
            ax.plot(sizes, [r["db_p50_us"] / 1000 for r in rows], "o-", label="endpoint queries p50")
            ax.plot(sizes, [r["db_p99_us"] / 1000 for r in rows], "o:", label="endpoint queries p99")
            ax.plot(sizes, [r["http1"]["p50_ms"] for r in rows], "s-", label="HTTP p50, 1 conn")
            ax.plot(sizes, [r["http8"]["p50_ms"] for r in rows], "^-", label="HTTP p50, 8 conns")
            ax.plot(sizes, [r["http8"]["p99_ms"] for r in rows], "^:", label="HTTP p99, 8 conns")
            ax.set_xscale("log")
            ax.set_xlabel("users in the database")
            ax.set_ylabel("ms")
            ax.set_ylim(bottom=0)
            ax.legend(fontsize=7)
            ax.set_title("claims endpoint vs user count", fontsize=9)
        else:
            data = report["map"]
            names = [n for n in data if n.startswith("view")]
            ax.barh([n.replace("view, ", "view:\n") for n in names], [data[n] for n in names], color="#7a52a3")
            ax.invert_yaxis()
            ax.set_xlabel("us per view()")
            ax.tick_params(axis="y", labelsize=7)
            ax.set_title(f"map, {int(data['entries']):,d} entries: {data['bytes_per_user_entry']:.0f} B/user entry",
                         fontsize=9)
    save(fig, path)


if __name__ == "__main__":
    sys.exit(run_reported(main))
