"""Propagation: how long after a revocation each of 8 service processes refuses the old token, per feed.

    .venv/bin/python bench/propagation.py [--revocations 200] [--services 8] [--feeds http,redis]

Needs PostgreSQL and Redis (``bash scripts/services.sh start``). It starts, on loopback:

- the provider under gunicorn (production settings, its own database ``tv_propagation``), with the HTTP
  feed and Redis publication on;
- for the Redis feed, ``manage.py tokenversion_publisher``;
- ``--services`` DRF service processes with no database (``bench/_propagation_service.py``), each with an
  ``HttpFeedStore`` or a ``RedisStore`` (``poll_when_silent`` off: only Redis keeps it fresh).

For each revocation: a new user (claims endpoint, as Keycloak's mapper calls it), a token with version 0
that every service accepts, then ``POST /tokenversion/revocations`` (the REST API, a DRF token). The delay
is from just before that request is sent to the instant each service's authentication class first refuses
the token, as read by the service on the system-wide monotonic clock. So the REST call's own time is
included. Targets: p99 <= 100 ms with Redis, <= 1 s with the HTTP feed.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from contextlib import ExitStack, contextmanager
from typing import Any

from _provider import claims_call, ensure_database, free_port, provider_env, wait_ready
from _setup import ROOT, load, percentile, print_machine

from tests.jwks import JWKSServer

DATABASE_URL = os.environ.get("PROPAGATION_DATABASE_URL",
                              "postgres://tokenversion:tokenversion@127.0.0.1:55432/tv_propagation")
REDIS_URL = os.environ.get("TOKENVERSION_TEST_REDIS_URL", "redis://127.0.0.1:56379/0")
FEED_SECRET = "propagation-feed-secret-0123456789abcdef0123"
PYTHON = sys.executable


def get_json(url: str, headers: dict[str, str] | None = None, data: bytes | None = None,
             timeout: float = 15) -> tuple[int, Any]:
    request = urllib.request.Request(url, data=data, headers=headers or {}, method="POST" if data else "GET")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")


@contextmanager
def process(args: list[str], env: dict[str, str], ready: str | None = None, log_name: str = "proc"):
    """A process in its own session, stopped (only it and its children) on exit."""
    import signal

    log = open(f"/tmp/tv-propagation-{log_name}.log", "wb")
    proc = subprocess.Popen(args, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        if ready:
            wait_ready(ready, proc, timeout=60)
        yield proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        log.close()


def gunicorn_args(app: str, port: int, threads: int, extra: list[str] | None = None) -> list[str]:
    return [PYTHON, "-m", "gunicorn", app, "--bind", f"127.0.0.1:{port}", "--workers", "1", "--worker-class",
            "gthread", "--threads", str(threads), "--log-level", "warning", *(extra or [])]


def admin_token(env: dict[str, str]) -> str:
    code = ("from django.contrib.auth import get_user_model\n"
            "from rest_framework.authtoken.models import Token\n"
            "u, _ = get_user_model().objects.get_or_create(username='propagation-bench')\n"
            "u.is_superuser = u.is_staff = True\nu.save()\n"
            "print(Token.objects.get_or_create(user=u)[0].key)\n")
    out = subprocess.run([PYTHON, "manage.py", "shell", "-c", code], cwd=ROOT, env=env, check=True,
                         capture_output=True, text=True)
    return out.stdout.strip().splitlines()[-1]


def measure(feed: str, provider: str, token_key: str, jwks: JWKSServer, services: list[str], count: int,
            run: str) -> tuple[list[float], int, list[float]]:
    """Delays (s) from sending the revocation to each refusal; refusals never seen; the REST calls' durations."""
    delays: list[float] = []
    triggers: list[float] = []
    lost = 0
    for i in range(count):
        subject = f"prop-{run}-{feed}-{i:04d}"
        claims_call(provider, {"sub": subject, "username": subject})
        token = jwks.mint(sub=subject, token_version=0, exp=int(time.time()) + 600)
        for base in services:  # every service accepts it (and has verified its signature) before the revocation
            status, body = get_json(f"{base}/accepts?token={token}")
            if body.get("state") != "accepted":
                raise SystemExit(f"{base} does not accept a fresh token: {body}")
        results: list[dict[str, Any] | None] = [None] * len(services)

        def watch(j: int, base: str, token: str = token, results: list = results) -> None:
            results[j] = get_json(f"{base}/watch?token={token}&timeout=10")[1]

        watchers = [threading.Thread(target=watch, args=(j, base)) for j, base in enumerate(services)]
        for thread in watchers:
            thread.start()
        time.sleep(0.03)  # the watchers are looping
        sent = time.monotonic()
        status, body = get_json(f"{provider}/tokenversion/revocations",
                                {"Authorization": f"Token {token_key}", "Content-Type": "application/json"},
                                json.dumps({"scope": "user", "user": subject, "reason": "logout"}).encode())
        triggers.append(time.monotonic() - sent)
        if status != 201:
            raise SystemExit(f"revocation failed: {status} {body}")
        for thread in watchers:
            thread.join()
        for result in results:
            if not result or result.get("first") != "accepted" or result.get("refused_at") is None:
                lost += 1
                continue
            delays.append(result["refused_at"] - sent)
    return delays, lost, triggers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--revocations", type=int, default=200)
    parser.add_argument("--services", type=int, default=8)
    parser.add_argument("--feeds", default="redis,http")
    args = parser.parse_args()
    run = uuid.uuid4().hex[:8]
    channel = f"tokenversion:propagation:{run}"
    jwks = JWKSServer()
    env = provider_env(DATABASE_URL, TOKENVERSION_ISSUER=jwks.issuer, TOKENVERSION_FEED_SECRETS=FEED_SECRET,
                       TOKENVERSION_REDIS_URL=REDIS_URL, TOKENVERSION_REDIS_CHANNEL=channel)
    ensure_database(DATABASE_URL)
    key = admin_token(env)
    print_machine()
    print(f"{args.services} service processes, {args.revocations} revocations per feed")
    report = {}
    with ExitStack() as stack:
        port = free_port()
        provider = f"http://127.0.0.1:{port}"
        stack.enter_context(process(gunicorn_args("provider.wsgi:application", port, 4 + 2 * args.services),
                                    env, ready=provider, log_name="provider"))
        for feed in args.feeds.split(","):
            with ExitStack() as feed_stack:
                if feed == "redis":
                    feed_stack.enter_context(process([PYTHON, "manage.py", "tokenversion_publisher"], env,
                                                     log_name="publisher"))
                    store = "tokenversion.stores.redis.RedisStore"
                    options = {"redis_url": REDIS_URL, "channel": channel, "poll_when_silent": False}
                elif feed == "http":
                    store, options = "tokenversion.stores.feed.HttpFeedStore", {}
                else:
                    raise SystemExit(f"unknown feed {feed!r}")
                options.update(feed_url=f"{provider}/tokenversion/feed", secret=FEED_SECRET)
                service_env = {k: v for k, v in os.environ.items() if not k.startswith(("TOKENVERSION_", "DJANGO_"))}
                service_env.update(PROP_ISSUER=jwks.issuer, PROP_STORE=store, PROP_OPTIONS=json.dumps(options),
                                   PYTHONPATH=str(ROOT))
                services = []
                for n in range(args.services):
                    service_port = free_port()
                    base = f"http://127.0.0.1:{service_port}"
                    feed_stack.enter_context(process(
                        gunicorn_args("_propagation_service:application", service_port, 4,
                                      ["--pythonpath", str(ROOT / "bench")]),
                        service_env, ready=base, log_name=f"service-{feed}-{n}"))
                    services.append(base)
                started = time.monotonic()
                delays, lost, triggers = measure(feed, provider, key, jwks, services, args.revocations, run)
                elapsed = time.monotonic() - started
                stats = [get_json(f"{base}/health")[1] for base in services]
                report[feed] = (delays, lost, elapsed, stats, triggers)
    jwks.close()
    print(f"load average at the end (1/5/15 min): {load()}")
    targets = {"redis": 0.100, "http": 1.0}
    print("\nDelay from sending the revocation (REST) to each service's first refusal, in ms; the REST call's")
    print("own round trip (request to 201) is in the delay and shown on its own in the last columns.\n")
    print("| feed | samples | lost | p50 | p90 | p99 | max | target p99 | | REST p50 | REST p99 |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for feed, (delays, lost, _elapsed, _stats, triggers) in report.items():
        p50, p90, p99 = (percentile(delays, p) * 1000 for p in (50, 90, 99))
        target = targets.get(feed)
        verdict = "met" if target and p99 <= target * 1000 and not lost else "**missed**"
        print(f"| {feed} | {len(delays)} | {lost} | {p50:.1f} | {p90:.1f} | {p99:.1f} | "
              f"{max(delays) * 1000:.1f} | {target * 1000:.0f} | {verdict} | "
              f"{percentile(triggers, 50) * 1000:.1f} | {percentile(triggers, 99) * 1000:.1f} |")
    for feed, (_delays, _lost, elapsed, stats, _triggers) in report.items():
        keys = ("heartbeats", "gap_closes", "silent_polls", "rounds", "feed_errors", "stale_refusals")
        totals = {k: sum(s["stats"].get(k, 0) for s in stats if isinstance(s, dict)) for k in keys}
        print(f"{feed}: {elapsed:.0f} s; summed store stats: {totals}; "
              f"mean staleness at the end {statistics.mean(s['staleness'] for s in stats) * 1000:.0f} ms")


if __name__ == "__main__":
    main()
