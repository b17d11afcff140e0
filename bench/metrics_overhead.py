"""Per-request cost of the authentication class with Prometheus metrics on (``TOKENVERSION["METRICS"]``) vs off.

Cases, timed round by round (order rotated each round, the same tokens for every case of a round):

- **off**: ``TokenVersionAuthentication.authenticate`` with no observer (the verifier's one ``is None`` test);
- **on**: the same class and runtime with the ``ServiceMetrics`` observer (one labelled counter increment
  per request; the store and cache figures are copied by a background thread, once a second).

Both on repeated tokens (the verified-claims cache answers, the database store's cache is warm): the
cheapest path, so the largest relative cost. The headline figure is the median over rounds of on / off
measured in the same round. prometheus-client picks its value storage when imported, so the multi-process
mode (``PROMETHEUS_MULTIPROC_DIR``: values in memory-mapped files, as under gunicorn with several workers) is
measured by a second run of this script in a child process, which prints its own ratio. The provider's
claims histogram is timed as a bare ``observe`` in both modes too.

    .venv/bin/python bench/metrics_overhead.py           # 1000 tokens, 200 rounds of 100, both modes
    .venv/bin/python bench/metrics_overhead.py --quick   # 300 tokens, 40 rounds
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence

from _setup import interleaved_rounds, median_ratio, print_machine, setup_django, timed_loop

SUBJECTS = 50
REPEAT = 20


def observe_cost(n: int = 200_000) -> float:
    """Seconds per ``observe`` of the claims histogram (label child looked up once, as the wrapper does)."""
    from tokenversion_server.metrics import CLAIMS_SECONDS

    child = CLAIMS_SECONDS.labels("200")
    clock = time.perf_counter
    start = clock()
    for _ in range(n):
        child.observe(0.0012)
    return (clock() - start) / n


def measure(n_tokens: int, rounds: int, chunk: int, mode: str) -> None:
    from tests.jwks import JWKSServer

    issuer = JWKSServer()
    setup_django(ISSUER=issuer.issuer, AUDIENCE=["tokenversion-api"], CACHE_TTL=3600, METRICS=True)

    from django.test import RequestFactory
    from rest_framework.request import Request

    import tokenversion.authentication as auth
    from tokenversion.runtime import get_runtime
    from tokenversion_server import services

    subjects = [f"5b7f0b36-8d0e-4a35-9f49-{i:012d}" for i in range(SUBJECTS)]
    tokens = [issuer.mint(sub=subjects[i % SUBJECTS], sid=f"sid-{i % SUBJECTS}") for i in range(n_tokens)]
    factory = RequestFactory()
    requests = [Request(factory.get("/", HTTP_AUTHORIZATION=f"Bearer {t}")) for t in tokens]
    for subject in subjects:
        services.current_version(subject)
    cls = auth.TokenVersionAuthentication()
    verifier = get_runtime().verifier
    observer = verifier.observer
    assert observer is not None, "METRICS is on: the runtime must have built the observer"
    for request in requests:  # keys fetched, every subject's state cached, every token's claims cached
        assert cls.authenticate(request) is not None

    current: dict[str, list] = {}
    offsets = iter(range(0, 10**9, chunk))

    def next_chunk() -> None:
        start = next(offsets) % (n_tokens - chunk + 1) if n_tokens > chunk else 0
        # Each case runs the chunk REPEAT times, so a round lasts milliseconds, not a scheduler slice.
        current["requests"] = requests[start:start + chunk] * REPEAT

    def run(with_metrics: bool):
        def case() -> float:
            verifier.observer = observer if with_metrics else None
            try:
                return timed_loop(cls.authenticate, current["requests"])
            finally:
                verifier.observer = observer

        return case

    samples = interleaved_rounds({"off": run(False), "on": run(True)}, rounds, before_round=next_chunk)
    ratio, low, high = median_ratio(samples, "on", "off")
    off_us = statistics.median(samples["off"]) * 1e6
    on_us = statistics.median(samples["on"]) * 1e6
    print(f"[{mode}] class, repeated token: off {off_us:.2f} us, on {on_us:.2f} us per request "
          f"(medians of {rounds} rounds of {chunk} x {REPEAT})")
    print(f"[{mode}] on / off, median of per-round ratios: {ratio:.3f} (min {low:.3f}, max {high:.3f}); "
          f"cost of metrics ~{on_us - off_us:.2f} us per request")
    print(f"[{mode}] provider claims histogram: {observe_cost() * 1e6:.2f} us per observe")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="300 tokens, 40 rounds")
    parser.add_argument("--rounds", type=int, help="rounds (default 200)")
    parser.add_argument("--chunk", type=int, default=100, help="requests per case per round")
    parser.add_argument("--child", choices=["multiprocess"], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    n_tokens = 300 if args.quick else 1000
    rounds = args.rounds or (40 if args.quick else 200)
    chunk = min(args.chunk, n_tokens)
    if args.child:
        measure(n_tokens, rounds, chunk, "multi-process files")
        return
    if run_reported is None:
        print_machine()  # the minimal header; bench/_report.py's, when present, is printed around main
    measure(n_tokens, rounds, chunk, "in-process values")
    sys.stdout.flush()
    directory = tempfile.mkdtemp(prefix="tv-bench-prom-")
    try:
        child = [sys.executable, __file__, "--child", "multiprocess", "--rounds", str(rounds), "--chunk", str(chunk)]
        if args.quick:
            child.append("--quick")
        subprocess.run(child, check=True, env={**os.environ, "PROMETHEUS_MULTIPROC_DIR": directory})
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    if run_reported is None:
        print(f"load average at end (1/5/15 min): {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


try:
    from _report import run_reported  # the shared header and footer of every bench script, where present
except ImportError:
    run_reported = None

if __name__ == "__main__":
    if run_reported is None or "--child" in sys.argv:
        main()
    else:
        sys.exit(run_reported(main, packages=("prometheus-client",)))
