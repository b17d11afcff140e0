"""The cached mapper's propagation bound: how long after a version bump Keycloak still issues tokens with the old one.

Runs the end-to-end stack (``sample_service/stack.py``: Keycloak from scripts/keycloak.sh with the extension, the
provider under gunicorn, the realm set up by ``keycloak_setup`` in its default cached mode; the machine-wide stack
lock). One Keycloak user; a thread bumps its version through ``POST /tokenversion/revocations`` every
``--interval`` seconds, while the main thread runs refresh grants for it back to back (a password grant every tenth).

Per bump k, two figures, both counted from the instant the REST request was *sent* (the commit is later, so each
figure is an upper bound):

- **stale after**: the latest answer of a grant that still carried a version below k (0 when none did);
- **seen after**: the answer of the first grant sent after the bump that carried k or more.

The mapper's guarantee is that no token issued more than ``tokenversion.max.staleness.ms`` (2 s) after the commit
carries the old version; the figures show how far below that bound the feed keeps it in practice. Versions in the
issued tokens are checked never to go down.

    .venv/bin/python bench/mapper_propagation.py                     # 60 s, a bump every 0.5 s, PostgreSQL
    .venv/bin/python bench/mapper_propagation.py --duration 20 --database-url sqlite:////tmp/tv-bench/p.sqlite3

The end-to-end test ``tests/e2e/test_cached_mapper.py::test_bumps_racing_refresh_grants`` runs a 12 s version
of this and asserts the bound.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import threading
import time
import uuid
from collections.abc import Sequence

import jwt
import requests
from _report import run_reported
from _setup import percentile

from sample_service.stack import Stack, StackConfig

DEFAULT_DATABASE_URL = "postgresql://tokenversion:tokenversion@127.0.0.1:55432/tv_mapper_propagation"


def version_of(token: str) -> int:
    return jwt.decode(token, options={"verify_signature": False})["token_version"]


Bumps = list[tuple[int, float]]
Grants = list[tuple[float, float, int]]


def race(stack: Stack, duration: float, interval: float) -> tuple[Bumps, Grants]:
    """(bumps as (new version, REST request sent)), (grants as (sent, answered, version)), on the monotonic clock."""
    username, password = f"bench-{uuid.uuid4().hex[:8]}", f"pw-{uuid.uuid4().hex}"
    subject = stack.ensure_user(username, password)
    key = stack.manage("create_api_key", "admin", "--name", f"mapper propagation {time.time()}").stdout.strip()
    oidc = stack.openid()
    refresh = oidc.token(username, password)["refresh_token"]
    time.sleep(2)  # the new user provisioned off the token path
    bumps: list[tuple[int, float]] = []
    failures: list[str] = []
    stop = threading.Event()

    def bump() -> None:
        while not stop.wait(interval):
            sent = time.monotonic()
            response = requests.post(f"{stack.config.provider_url}/tokenversion/revocations", timeout=10,
                                     headers={"Authorization": f"Token {key}", "Content-Type": "application/json"},
                                     data=json.dumps({"scope": "user", "user": subject, "reason": "logout"}))
            if response.status_code != 201:
                failures.append(f"{response.status_code} {response.text[:200]}")
                return
            bumps.append((len(bumps) + 1, sent))

    grants: list[tuple[float, float, int]] = []
    thread = threading.Thread(target=bump)
    thread.start()
    try:
        started, i = time.monotonic(), 0
        while time.monotonic() - started < duration:
            sent = time.monotonic()
            answer = oidc.token(username, password) if i % 10 == 9 else oidc.refresh_token(refresh)
            grants.append((sent, time.monotonic(), version_of(answer["access_token"])))
            refresh, i = answer["refresh_token"], i + 1
    finally:
        stop.set()
        thread.join()
    if failures:
        raise SystemExit(f"a bump failed: {failures[0]}")
    return bumps, grants


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of racing (default %(default)s)")
    parser.add_argument("--interval", type=float, default=0.5, help="seconds between bumps (default %(default)s)")
    parser.add_argument("--database-url", default=DEFAULT_DATABASE_URL)
    args = parser.parse_args(argv)

    stack = Stack(StackConfig(database_url=args.database_url))
    try:
        stack.start()
        bumps, grants = race(stack, args.duration, args.interval)
    finally:
        stack.close()

    versions = [v for _, _, v in grants]
    stale_after, seen_after = [], []
    for version, sent in bumps:
        stale = [answered - sent for _, answered, v in grants if v < version and answered > sent]
        stale_after.append(max(stale, default=0.0))
        seen = [answered - sent for g_sent, answered, v in grants if g_sent > sent and v >= version]
        if seen:
            seen_after.append(min(seen))
    answer_ms = [(answered - sent) * 1000 for sent, answered, _ in grants]
    print(f"\n{len(bumps)} bumps (one every {args.interval:g} s) raced by {len(grants)} grants in {args.duration:g} s; "
          f"grant median {statistics.median(answer_ms):.1f} ms")
    print("versions in issued tokens never went down: "
          + ("yes" if versions == sorted(versions) else "NO (a token carried a lower version than an earlier one)"))
    for label, values in (("stale after (a token still had the old version)", stale_after),
                          ("seen after (first token with the new version)", seen_after)):
        ms = [v * 1000 for v in values]
        print(f"  {label:50s} p50 {percentile(ms, 50):7.1f} ms  p99 {percentile(ms, 99):7.1f} ms  "
              f"max {max(ms):7.1f} ms")
    print("bound (tokenversion.max.staleness.ms, as keycloak_setup sets it): 2000 ms: "
          + ("held" if max(stale_after) <= 2.0 else "EXCEEDED"))
    return 0 if versions == sorted(versions) and max(stale_after) <= 2.0 else 1


if __name__ == "__main__":
    sys.exit(run_reported(main, packages=("python-keycloak",)))
