"""A load run against the sample service with revocations interleaved: the figure behind docs/reliability.md.

Several client threads call ``GET /api/orders`` with real Keycloak tokens of many users, round robin, while a
revoker logs users out through Keycloak (back-channel logout) at a steady pace and logs them in again. Every
request is recorded; afterwards the run checks:

- no 5xx at all;
- no revoked token accepted after the propagation bound (a request *sent* more than ``bound`` seconds after
  Keycloak's logout returned must get 401);
- throughput and latency (p50, p99) of the service under that load.

    .venv/bin/python -m sample_service.load --duration 60        # the documented run
    (tests/e2e/test_load.py runs a shorter variant in CI)
"""

from __future__ import annotations

import argparse
import http.client
import random
import sys
import threading
import time
from dataclasses import dataclass, field

from .stack import Stack, StackConfig

PASSWORD = "load-password-0123456789"


@dataclass
class Credential:
    user: str
    token: str
    refresh_token: str
    revoked_at: float | None = None  # perf_counter() when Keycloak's logout returned


@dataclass
class LoadReport:
    duration: float
    requests: int
    statuses: dict[int, int]
    latencies: list[float]
    revocations: int
    revoked_requests_after_bound: int  # requests with a revoked token, sent after the bound
    late_acceptances: list[tuple[str, float]]  # (user, seconds after the logout) of accepted revoked tokens
    errors: list[str] = field(default_factory=list)

    @property
    def throughput(self) -> float:
        return self.requests / self.duration

    def percentile(self, pct: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(len(ordered) * pct / 100))] if ordered else float("nan")

    def server_errors(self) -> int:
        return sum(count for status, count in self.statuses.items() if status >= 500)

    def lines(self) -> list[str]:
        return [
            f"{self.requests} requests in {self.duration:.1f} s: {self.throughput:.0f} req/s; "
            f"latency p50 {self.percentile(50) * 1000:.1f} ms, p99 {self.percentile(99) * 1000:.1f} ms",
            f"statuses: {dict(sorted(self.statuses.items()))}; 5xx: {self.server_errors()}",
            f"{self.revocations} logouts; {self.revoked_requests_after_bound} requests with a revoked token after "
            f"the bound; accepted: {len(self.late_acceptances)}",
        ]


def run_load(stack: Stack, duration: float, users: int = 20, threads: int = 4, revoke_every: float = 0.5,
             bound: float = 1.0) -> LoadReport:
    oidc = stack.openid()
    names = [f"load-{i}" for i in range(users)]
    for name in names:
        stack.ensure_user(name, PASSWORD)
    pool = []
    for name in names:
        tokens = oidc.token(name, PASSWORD)
        pool.append(Credential(name, tokens["access_token"], tokens["refresh_token"]))
    revoked: list[Credential] = []
    lock = threading.Lock()
    records: list[tuple[float, float, int, Credential]] = []  # (sent, latency, status, credential)
    errors: list[str] = []
    stop = threading.Event()
    host, port = "127.0.0.1", stack.config.service_port

    def client(seed: int) -> None:
        rng = random.Random(seed)
        conn = http.client.HTTPConnection(host, port, timeout=10)
        local = []
        try:
            while not stop.is_set():
                with lock:
                    # two requests in three with a live token, one with a revoked one (when there is one)
                    cred = rng.choice(revoked) if revoked and rng.random() < 0.33 else rng.choice(pool)
                sent = time.perf_counter()
                try:
                    conn.request("GET", "/api/orders", headers={"Authorization": f"Bearer {cred.token}"})
                    response = conn.getresponse()
                    response.read()
                    status = response.status
                except (OSError, http.client.HTTPException) as exc:
                    errors.append(f"{type(exc).__name__}: {exc}")
                    conn.close()
                    conn = http.client.HTTPConnection(host, port, timeout=10)
                    continue
                local.append((sent, time.perf_counter() - sent, status, cred))
        finally:
            conn.close()
            with lock:
                records.extend(local)

    def revoker() -> None:
        rng = random.Random(0)
        while not stop.wait(revoke_every):
            with lock:
                victim = rng.choice(pool)
            oidc.logout(victim.refresh_token)
            victim.revoked_at = time.perf_counter()
            fresh = oidc.token(victim.user, PASSWORD)
            with lock:
                revoked.append(victim)
                pool[pool.index(victim)] = Credential(victim.user, fresh["access_token"], fresh["refresh_token"])

    workers = [threading.Thread(target=client, args=(i,)) for i in range(threads)]
    workers.append(threading.Thread(target=revoker))
    start = time.perf_counter()
    for worker in workers:
        worker.start()
    time.sleep(duration)
    stop.set()
    for worker in workers:
        worker.join()
    elapsed = time.perf_counter() - start

    statuses: dict[int, int] = {}
    late, after_bound = [], 0
    for sent, _latency, status, cred in records:
        statuses[status] = statuses.get(status, 0) + 1
        if cred.revoked_at is not None and sent > cred.revoked_at + bound:
            after_bound += 1
            if status == 200:
                late.append((cred.user, sent - cred.revoked_at))
    return LoadReport(elapsed, len(records), statuses, [r[1] for r in records], len(revoked), after_bound, late,
                      errors)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=60.0)
    parser.add_argument("--users", type=int, default=20)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--service-workers", type=int, default=2)
    parser.add_argument("--database-url", default="sqlite:////tmp/tokenversion-load/provider.sqlite3")
    args = parser.parse_args(argv)
    stack = Stack(StackConfig(database_url=args.database_url))
    try:
        stack.start()
        stack.services.pop("service").stop()
        stack.start_service(workers=args.service_workers)
        report = run_load(stack, args.duration, users=args.users, threads=args.threads)
    finally:
        stack.close()
    print(f"load run: {args.duration:.0f} s, {args.threads} client threads, {args.users} users, sample service with "
          f"{args.service_workers} gunicorn workers (4 threads each), a logout every 0.5 s")
    for line in report.lines():
        print("  " + line)
    if report.errors:
        print(f"  client errors: {len(report.errors)}, e.g. {report.errors[:3]}")
    ok = report.server_errors() == 0 and not report.late_acceptances and not report.errors
    print("  verdict:", "OK" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

