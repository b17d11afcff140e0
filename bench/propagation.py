"""Propagation: how long after a logout (or a REST revocation) each of 8 service processes refuses the old token.

    .venv/bin/python bench/propagation.py                     # Keycloak logouts, 200 per feed, 8 services
    .venv/bin/python bench/propagation.py --quick             # 20 logouts per feed, 4 services
    .venv/bin/python bench/propagation.py --trigger rest      # REST revocations, tokens from a test issuer
    .venv/bin/python bench/propagation.py --sweep             # REST, N = 2..24 services, Redis / stream / long-poll

``--sweep`` runs the REST trigger at N = 2, 4, 8, 16 and 24 service processes on one provider process, for Redis,
the HTTP feed's stream (``http``) and its long-poll (``http-poll``), 60 revocations per feed and N unless
``--revocations`` says otherwise, and prints and plots (``bench/results/propagation_sweep.png``) the p99 and the
provider's CPU per revocation (its process group's user + system time over the counted rounds) against N.

Needs PostgreSQL and Redis (``bash scripts/services.sh start``; ``eval "$(bash scripts/services.sh env)"``).
Per feed (``--feeds redis,http[,http-poll]``) it starts ``--services`` DRF service processes with no database
(``bench/_propagation_service.py``, each under its own gunicorn), each with a ``RedisStore`` (``poll_when_silent``
off: only Redis and the publisher keep it fresh) or an ``HttpFeedStore``.

``--trigger keycloak`` (default): the whole product, ``sample_service.stack.Stack`` on its own database
(``tv_propagation_kc``): a real Keycloak (``scripts/keycloak.sh``; started only if none runs), the realm set up
by ``keycloak_setup``, the provider under gunicorn, ``tokenversion_publisher``. The stack takes the machine-wide
lock ``/tmp/tokenversion-stack.lock``, so this waits for a running end-to-end test session and vice versa. For
each logout: a password-grant login of one of a pool of Keycloak users (the token mapper calls the provider's
claims endpoint), a wait until every service accepts the access token, then the refresh-token logout at
Keycloak's end-session endpoint. Keycloak calls the provider's back-channel logout before it answers, and its
event listener reports the LOGOUT as well; the session (``sid``) is revoked by whichever arrives first.

``--trigger rest``: the provider alone (gunicorn, database ``tv_propagation``), tokens minted by a loopback
JWKS issuer for a new user each time, revoked with ``POST /tokenversion/revocations`` (a DRF token).

The delay runs from just before the trigger request is sent to the instant each service's authentication class
first refuses the token. Each service checks every millisecond in process and reports the instant on the
system-wide monotonic clock, so there is no HTTP polling in the measurement. The trigger call's own round trip
is part of the delay and is reported on its own. A service that has not refused after ``--lost-after`` seconds
counts as a lost refusal. Targets: p99 <= 100 ms with Redis, <= 1 s with the HTTP feed.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from _provider import claims_call, ensure_database, free_port, provider_env, wait_ready
from _report import run_reported
from _setup import RESULTS, ROOT, load, percentile, pyplot, save

from tokenversion.core.feed_protocol import generate_signing_key

REST_DATABASE_URL = os.environ.get("PROPAGATION_DATABASE_URL",
                                   "postgres://tokenversion:tokenversion@127.0.0.1:55432/tv_propagation")
KC_DATABASE_URL = os.environ.get("PROPAGATION_KC_DATABASE_URL",
                                 "postgresql://tokenversion:tokenversion@127.0.0.1:55432/tv_propagation_kc")
REDIS_URL = os.environ.get("TOKENVERSION_TEST_REDIS_URL", "redis://127.0.0.1:56379/0")
FEED_SECRET = "propagation-feed-secret-0123456789abcdef0123"
KC_PASSWORD = "propagation-bench-password-0123456789"
PYTHON = sys.executable
TARGETS = {"redis": 0.100, "http": 1.0, "http-poll": 1.0}
LABELS = {"redis": "Redis", "http": "HTTP feed (stream)", "http-poll": "HTTP feed (long-poll)"}
STACK_KIND = {"redis": "redis", "http": "feed", "http-poll": "feed"}  # the stack's name (Stack.remote_store_env)
TRANSPORT = {"http": "stream", "http-poll": "poll"}  # HttpFeedStore's transport option per HTTP feed
SWEEP = (2, 4, 8, 16, 24)
CLOCK_TICK = os.sysconf("SC_CLK_TCK")


@dataclass
class FeedResult:
    """One feed's measurements: per refusal, per trigger, and the machine's state while they were taken."""

    delays: list[float] = field(default_factory=list)  # s from sending the trigger to each service's refusal
    lost: int = 0  # services that never refused within --lost-after
    # logouts with a lost refusal: (sid, whether the provider's database has the session revoked) - tells a
    # logout the provider refused from a revocation the feed did not deliver
    lost_logouts: list[tuple[str, bool]] = field(default_factory=list)
    triggers: list[float] = field(default_factory=list)  # the trigger call's round trip, s
    early: int = 0  # refusals seen before the trigger call returned
    logins: list[float] = field(default_factory=list)  # Keycloak password grants, s (keycloak trigger only)
    loads: list[float] = field(default_factory=list)  # 1-minute load average after each trigger
    unavailable: int = 0  # checks answered 503 (store not provably fresh) while watching
    elapsed: float = 0.0
    stats: list[Any] = field(default_factory=list)  # each service's /health at the end
    provider_cpu: float = 0.0  # s of CPU used by the provider's processes during the counted rounds (REST)


def get_json(url: str, headers: dict[str, str] | None = None, data: bytes | None = None,
             timeout: float = 15) -> tuple[int, Any]:
    request = urllib.request.Request(url, data=data, headers=headers or {}, method="POST" if data else "GET")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")


@contextmanager
def process(args: list[str], env: dict[str, str], ready: str | None = None, log_name: str = "proc") -> Iterator[Any]:
    """A process in its own session, stopped (only it and its children) on exit."""
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


def start_services(stack: ExitStack, feed: str, count: int, issuer: str, audience: str, store: str,
                   options: dict[str, Any]) -> list[str]:
    """``count`` service processes on free ports (not the stack's 18000-18003), stopped when ``stack`` closes."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TOKENVERSION_", "DJANGO_"))}
    env.update(PROP_ISSUER=issuer, PROP_AUDIENCE=audience, PROP_STORE=store, PROP_OPTIONS=json.dumps(options),
               PYTHONPATH=str(ROOT))
    services = []
    for n in range(count):
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        stack.enter_context(process(gunicorn_args("_propagation_service:application", port, 4,
                                                  ["--pythonpath", str(ROOT / "bench")]),
                                    env, ready=base, log_name=f"service-{feed}-{n}"))
        services.append(base)
    return services


def wait_accepted(services: list[str], token: str, timeout: float = 15) -> None:
    """Every service accepts the token (and has verified its signature). A service that just started answers
    "unavailable" until its map is provably fresh, so this waits for that rather than failing."""
    deadline = time.monotonic() + timeout
    for base in services:
        while True:
            _status, body = get_json(f"{base}/accepts?token={token}")
            state = body.get("state") if isinstance(body, dict) else body
            if state == "accepted":
                break
            if state != "unavailable" or time.monotonic() > deadline:
                raise SystemExit(f"{base} does not accept a fresh token: {body}")
            time.sleep(0.05)


def revoke_and_watch(services: list[str], token: str, trigger: Callable[[], None], lost_after: float,
                     result: FeedResult) -> int:
    """Start every service watching ``token``, run ``trigger`` (the logout or the REST call), and record, per
    service, the delay from just before the trigger to its first refusal. Returns the refusals lost."""
    answers: list[Any] = [None] * len(services)

    def watch(j: int, base: str) -> None:
        answers[j] = get_json(f"{base}/watch?token={token}&timeout={lost_after}", timeout=lost_after + 15)[1]

    # daemon threads: a Ctrl-C does not wait for their answers (the services are stopped anyway)
    watchers = [threading.Thread(target=watch, args=(j, base), daemon=True) for j, base in enumerate(services)]
    for thread in watchers:
        thread.start()
    deadline = time.monotonic() + 15
    for base in services:  # every watch has made its first check (on a loaded host a request can start late)
        while not get_json(f"{base}/watching?token={token}")[1].get("watching"):
            if time.monotonic() > deadline:
                raise SystemExit(f"{base} did not start watching")
            time.sleep(0.002)
    sent = time.monotonic()
    trigger()
    returned = time.monotonic()
    result.triggers.append(returned - sent)
    for thread in watchers:
        thread.join()
    result.loads.append(os.getloadavg()[0])
    lost = 0
    for answer in answers:
        if not isinstance(answer, dict) or answer.get("first") != "accepted":
            raise SystemExit(f"a service did not accept the token when the watch began: {answer}")
        result.unavailable += answer.get("unavailable", 0)
        if answer.get("refused_at") is None:
            lost += 1
            continue
        result.delays.append(answer["refused_at"] - sent)
        result.early += answer["refused_at"] < returned
    result.lost += lost
    return lost


def progress(feed: str, done: int, total: int, result: FeedResult) -> None:
    if done % 50 == 0 or done == total:
        p99 = percentile(result.delays, 99) * 1000
        print(f"  {feed}: {done}/{total} (p99 so far {p99:.1f} ms, lost {result.lost}, load {load()})",
              file=sys.stderr, flush=True)


def service_health(services: list[str]) -> list[Any]:
    return [get_json(f"{base}/health")[1] for base in services]


# REST trigger ----------------------------------------------------------------------------------------------


def group_cpu(pgid: int) -> float:
    """CPU seconds (user + system) used so far by the live processes of process group ``pgid``: the provider's
    gunicorn master and worker (started in a session of their own, so the group is theirs alone)."""
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # gone meanwhile
        if int(fields[2]) == pgid:
            total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of proc(5))
    return total / CLOCK_TICK


def admin_token(env: dict[str, str]) -> str:
    code = ("from django.contrib.auth import get_user_model\n"
            "from tokenversion_server.models import ApiKey\n"
            "u, _ = get_user_model().objects.get_or_create(username='propagation-bench')\n"
            "u.is_superuser = u.is_staff = True\nu.save()\n"
            "print(ApiKey.issue(u, 'propagation bench', created_by='bench')[1])\n")
    out = subprocess.run([PYTHON, "manage.py", "shell", "-c", code], cwd=ROOT, env=env, check=True,
                         capture_output=True, text=True)
    return out.stdout.strip().splitlines()[-1]


def run_rest(args: argparse.Namespace) -> dict[str, FeedResult]:
    """The provider alone; tokens from a loopback JWKS issuer; revocations through the REST API."""
    return run_rest_sweep(args, [args.services])[args.services]


def run_rest_sweep(args: argparse.Namespace, counts: list[int]) -> dict[int, dict[str, FeedResult]]:
    """``run_rest`` at each number of service processes in ``counts``, on one provider (threads for the
    largest count: one per open stream or waiting long-poll, plus room for the REST and claims calls)."""
    from tests.jwks import JWKSServer

    run = uuid.uuid4().hex[:8]
    channel = f"tokenversion:propagation:{run}"  # private: nothing else publishes here
    sweep: dict[int, dict[str, FeedResult]] = {}
    with ExitStack() as stack:
        jwks = JWKSServer()
        stack.callback(jwks.close)
        signing_key, verify_key = generate_signing_key()  # this run's Redis signing key pair, never written down
        # Threads: one per open stream or waiting long-poll, plus room for the REST and claims calls.
        threads = 4 + 2 * max(counts)
        env = provider_env(REST_DATABASE_URL, TOKENVERSION_ISSUER=jwks.issuer, TOKENVERSION_FEED_SECRETS=FEED_SECRET,
                           TOKENVERSION_REDIS_URL=REDIS_URL, TOKENVERSION_REDIS_CHANNEL=channel,
                           TOKENVERSION_FEED_SIGNING_KEY=signing_key,
                           TOKENVERSION_FEED_MAX_STREAMS=str(max(counts) + 2))
        ensure_database(REST_DATABASE_URL)
        key = admin_token(env)
        port = free_port()
        provider = f"http://127.0.0.1:{port}"
        provider_proc = stack.enter_context(process(
            gunicorn_args("provider.wsgi:application", port, threads), env, ready=provider,
            log_name="provider"))
        for count in counts:
            report = sweep[count] = {}
            for feed in args.feeds:
                with ExitStack() as feed_stack:
                    if feed == "redis":
                        feed_stack.enter_context(process([PYTHON, "manage.py", "tokenversion_publisher"], env,
                                                         log_name="publisher"))
                        store = "tokenversion.stores.redis.RedisStore"
                        options = {"redis_url": REDIS_URL, "channel": channel, "poll_when_silent": False,
                                   "verify_keys": [verify_key]}
                    else:
                        store, options = "tokenversion.stores.feed.HttpFeedStore", {"transport": TRANSPORT[feed]}
                    options.update(feed_url=f"{provider}/tokenversion/feed", secret=FEED_SECRET)
                    services = start_services(feed_stack, feed, count, jwks.issuer, "tokenversion-api", store,
                                              options)
                    report[feed] = rest_rounds(args, feed, services, provider, key, jwks, run, count,
                                               provider_proc.pid)
    return sweep


def rest_rounds(args: argparse.Namespace, feed: str, services: list[str], provider: str, key: str, jwks: Any,
                run: str, count: int, provider_pgid: int) -> FeedResult:
    result = FeedResult()
    started = time.monotonic()
    cpu_before = 0.0
    for i in range(args.warmup + args.count):
        if i == args.warmup:
            cpu_before = group_cpu(provider_pgid)
        subject = f"prop-{run}-{feed}-{count}-{i:04d}"
        claims_call(provider, {"sub": subject, "username": subject})
        token = jwks.mint(sub=subject, token_version=0, exp=int(time.time()) + 600)
        wait_accepted(services, token)

        def revoke(subject: str = subject) -> None:
            status, body = get_json(
                f"{provider}/tokenversion/revocations",
                {"Authorization": f"Token {key}", "Content-Type": "application/json"},
                json.dumps({"scope": "user", "user": subject, "reason": "logout"}).encode())
            if status != 201:
                raise SystemExit(f"revocation failed: {status} {body}")

        target = result if i >= args.warmup else FeedResult()  # warm-up rounds are not counted
        revoke_and_watch(services, token, revoke, args.lost_after, target)
        if i >= args.warmup:
            progress(f"{feed} N={count}", i + 1 - args.warmup, args.count, result)
    result.provider_cpu = group_cpu(provider_pgid) - cpu_before
    print(f"  {feed} N={count}: p99 {ms(percentile(result.delays, 99))} ms, provider CPU "
          f"{result.provider_cpu / args.count * 1000:.1f} ms per revocation", file=sys.stderr, flush=True)
    result.elapsed = time.monotonic() - started
    result.stats = service_health(services)
    return result


# Keycloak trigger ------------------------------------------------------------------------------------------


def run_keycloak(args: argparse.Namespace) -> dict[str, FeedResult]:
    """The whole stack: real Keycloak logins and logouts; the provider learns of them from Keycloak itself."""
    import jwt

    from sample_service.stack import Stack, StackConfig

    # Threads per provider worker: one per waiting long-poll (HTTP-feed services), plus room for Keycloak's
    # claims and back-channel calls, so neither waits behind a long-poll.
    # Streams on (FEED_MAX_STREAMS), below the threads, so "http" measures the stream there too.
    config = StackConfig(database_url=KC_DATABASE_URL, redis_url=REDIS_URL, provider_threads=4 + 2 * args.services,
                         extra_provider_env={"TOKENVERSION_FEED_MAX_STREAMS": str(args.services + 2)})
    report: dict[str, FeedResult] = {}
    with ExitStack() as stack:
        kc = Stack(config)
        stack.callback(kc.close)  # stops what it started (Keycloak only if it started it) and frees the lock
        print("starting the stack (waits while another run holds /tmp/tokenversion-stack.lock)", flush=True)
        began = time.monotonic()
        kc.start()
        print(f"stack ready in {time.monotonic() - began:.0f} s: Keycloak {config.keycloak_url}, "
              f"provider {config.provider_url} (2 workers x {config.provider_threads} threads)", flush=True)
        users = [f"propagation-{n:02d}" for n in range(args.users)]
        for username in users:
            kc.ensure_user(username, KC_PASSWORD)
        oidc = kc.openid()
        for feed in args.feeds:
            with ExitStack() as feed_stack:
                env = kc.remote_store_env(STACK_KIND[feed])
                store, options = env["TOKENVERSION_STORE"], json.loads(env["TOKENVERSION_STORE_OPTIONS"])
                if feed == "redis":
                    options["poll_when_silent"] = False  # measure Redis alone, not an HTTP poll standing in for it
                else:
                    options["transport"] = TRANSPORT[feed]
                services = start_services(feed_stack, feed, args.services, config.issuer, config.audience, store,
                                          options)
                result = report[feed] = FeedResult()
                started = time.monotonic()
                for i in range(args.warmup + args.count):
                    target = result if i >= args.warmup else FeedResult()  # warm-up rounds are not counted
                    began = time.monotonic()
                    tokens = oidc.token(users[i % len(users)], KC_PASSWORD)
                    target.logins.append(time.monotonic() - began)
                    wait_accepted(services, tokens["access_token"])

                    def logout(refresh: str = tokens["refresh_token"]) -> None:
                        oidc.logout(refresh)  # raises on an error answer

                    if revoke_and_watch(services, tokens["access_token"], logout, args.lost_after, target):
                        sid = jwt.decode(tokens["access_token"], options={"verify_signature": False})["sid"]
                        revoked = bool(kc.sql("SELECT 1 FROM tokenversion_server_revokedsession "
                                              "WHERE session_id = %s", sid))
                        target.lost_logouts.append((sid, revoked))
                        print(f"  {feed}: logout of session {sid!r} lost refusals; the provider "
                              f"{'revoked it' if revoked else 'never revoked it'}", file=sys.stderr, flush=True)
                    if i >= args.warmup:
                        progress(feed, i + 1 - args.warmup, args.count, result)
                result.elapsed = time.monotonic() - started
                result.stats = service_health(services)
    return report


# Report ----------------------------------------------------------------------------------------------------


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}"


def print_report(trigger: str, report: dict[str, FeedResult], args: argparse.Namespace) -> None:
    call = "Keycloak logout" if trigger == "keycloak" else "REST revocation"
    print(f"\nDelay from sending the {call} to each service's first refusal, in ms ({args.services} service "
          f"processes, {args.count} {'logouts' if trigger == 'keycloak' else 'revocations'} per feed after "
          f"{args.warmup} warm-up). The call's own round trip is inside the delay and shown on its own; "
          f"'early' = refusals seen before the call returned.\n")
    print(f"| feed | samples | lost | p50 | p90 | p99 | max | target p99 | {call} p50 / p99 / max | early |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for feed, r in report.items():
        p99 = percentile(r.delays, 99)
        verdict = "met" if p99 <= TARGETS[feed] and not r.lost else "**missed**"
        early = r.early / len(r.delays) * 100 if r.delays else 0.0
        print(f"| {LABELS[feed]} | {len(r.delays)} | {r.lost} | {ms(percentile(r.delays, 50))} | "
              f"{ms(percentile(r.delays, 90))} | {ms(p99)} | {ms(max(r.delays, default=float('nan')))} | "
              f"{TARGETS[feed] * 1000:.0f} ms: {verdict} | {ms(percentile(r.triggers, 50))} / "
              f"{ms(percentile(r.triggers, 99))} / {ms(max(r.triggers))} | {early:.0f}% |")
    print()
    for feed, r in report.items():
        if r.lost_logouts:
            refused = [sid for sid, revoked in r.lost_logouts if not revoked]
            print(f"{LABELS[feed]}: {r.lost} refusals lost, from {len(r.lost_logouts)} logouts; the provider "
                  f"never revoked {len(refused)} of those sessions ({', '.join(refused)}): they were lost before "
                  f"any feed; {len(r.lost_logouts) - len(refused)} were revoked but not delivered in time")
    for feed, r in report.items():
        keys = ("heartbeats", "gap_closes", "silent_polls", "rounds", "feed_errors", "stale_refusals")
        totals = {k: sum(s["stats"].get(k, 0) for s in r.stats if isinstance(s, dict)) for k in keys}
        staleness = [s["staleness"] for s in r.stats if isinstance(s, dict)]
        line = (f"{LABELS[feed]}: {r.elapsed:.0f} s; 1-min load during the run min/median/max "
                f"{min(r.loads):.2f}/{statistics.median(r.loads):.2f}/{max(r.loads):.2f}; "
                f"503 answers while watching {r.unavailable}")
        if r.provider_cpu:
            line += f"; provider CPU {r.provider_cpu / args.count * 1000:.1f} ms per revocation"
        if r.logins:
            line += f"; login (password grant) p50/p99 {ms(percentile(r.logins, 50))}/{ms(percentile(r.logins, 99))} ms"
        print(line)
        print(f"  summed store stats: {totals}; mean staleness at the end "
              f"{statistics.mean(staleness) * 1000 if staleness else float('nan'):.0f} ms")


def plot(trigger: str, report: dict[str, FeedResult], services: int, path: Path) -> None:
    """Cumulative distributions of the refusal delay per feed (lost refusals in the denominator, so the curve
    stops short of 1), with the trigger call's round trip beside them."""
    plt = pyplot()
    if plt is None:
        return
    call = "Keycloak logout" if trigger == "keycloak" else "REST revocation"
    colors = {"redis": "#c0392b", "http": "#2e6da4"}
    fig, ax = plt.subplots(figsize=(7, 3.8))
    for feed, r in report.items():
        refusal = f"{LABELS[feed]}: refusal (p99 {ms(percentile(r.delays, 99))} ms, lost {r.lost})"
        for values, style, label, extra in ((r.delays, "-", refusal, r.lost),
                                            (r.triggers, ":", f"{LABELS[feed]} run: {call} call", 0)):
            ordered = sorted(v * 1000 for v in values)
            if ordered:
                ax.step(ordered, [(k + 1) / (len(ordered) + extra) for k in range(len(ordered))], style,
                        where="post", color=colors[feed], label=label)
        ax.axvline(TARGETS[feed] * 1000, color=colors[feed], linestyle="--", linewidth=0.8)
    ax.axhline(0.99, color="grey", linewidth=0.5)
    ax.set_xscale("log")
    ax.set_xlabel("ms from sending the call (dashed: p99 targets)")
    ax.set_ylabel("fraction refused")
    count = len(next(iter(report.values())).triggers)
    ax.set_title(f"{call} -> refusal by each of {services} service processes ({count} per feed; "
                 f"load at the end {load()})", fontsize=9)
    ax.legend(fontsize=7, loc="lower right")
    save(fig, path)


def print_sweep(sweep: dict[int, dict[str, FeedResult]], args: argparse.Namespace) -> None:
    """p99 and provider CPU per revocation against the number of service processes, with the ratios the
    issue's targets are about: CPU at N over CPU at the smallest N, HTTP p99 over Redis p99 at the same N."""
    counts = sorted(sweep)
    feeds = list(next(iter(sweep.values())))
    print(f"\nSweep: REST revocation -> refusal by every one of N service processes, one provider process "
          f"(gunicorn gthread x{4 + 2 * max(counts)}), {args.count} revocations per feed and N after "
          f"{args.warmup} warm-up. CPU = the provider's processes (master + worker), user + system, during the "
          f"counted rounds, divided by the revocations (it includes each round's claims call and REST call).\n")
    print("| N | feed | samples | lost | p50 ms | p99 ms | p99 / Redis p99 | provider CPU ms / revocation | "
          "CPU / CPU at N=" + str(counts[0]) + " | load (1 min) |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for count in counts:
        for feed in feeds:
            r = sweep[count][feed]
            p99 = percentile(r.delays, 99)
            redis = sweep[count].get("redis")
            ratio = f"{p99 / percentile(redis.delays, 99):.2f}" if redis and feed != "redis" else "-"
            cpu = r.provider_cpu / args.count * 1000
            base = sweep[counts[0]][feed].provider_cpu / args.count * 1000
            print(f"| {count} | {LABELS[feed]} | {len(r.delays)} | {r.lost} | {ms(percentile(r.delays, 50))} | "
                  f"{ms(p99)} | {ratio} | {cpu:.1f} | {cpu / base if base else float('nan'):.2f} | "
                  f"{statistics.median(r.loads):.2f} |")
    print()
    for count in counts:
        for feed in feeds:
            r = sweep[count][feed]
            keys = ("rounds", "streams", "frames", "feed_errors", "stale_refusals", "heartbeats")
            totals = {k: sum(s["stats"].get(k, 0) for s in r.stats if isinstance(s, dict)) for k in keys}
            print(f"N={count} {LABELS[feed]}: {r.elapsed:.0f} s, 503 while watching {r.unavailable}, "
                  f"store stats {totals}")


def plot_sweep(sweep: dict[int, dict[str, FeedResult]], args: argparse.Namespace, path: Path) -> None:
    plt = pyplot()
    if plt is None:
        return
    counts = sorted(sweep)
    feeds = list(next(iter(sweep.values())))
    colors = {"redis": "#c0392b", "http": "#2e6da4", "http-poll": "#7f8c8d"}
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8))
    for feed in feeds:
        p99 = [percentile(sweep[n][feed].delays, 99) * 1000 for n in counts]
        cpu = [sweep[n][feed].provider_cpu / args.count * 1000 for n in counts]
        left.plot(counts, p99, "o-", color=colors[feed], label=LABELS[feed])
        right.plot(counts, cpu, "o-", color=colors[feed], label=LABELS[feed])
    left.set_ylabel("p99 revocation -> refusal (ms)")
    right.set_ylabel("provider CPU per revocation (ms)")
    for ax in (left, right):
        ax.set_xlabel("service processes")
        ax.set_xticks(counts)
        ax.set_ylim(bottom=0)
        ax.legend(fontsize=7)
    fig.suptitle(f"REST revocations, {args.count} per feed and N, one provider process, 2 shared cores "
                 f"(load at the end {load()})", fontsize=9)
    save(fig, path)


def uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return f"load average: {load()}"


def _interrupt(signum: int, frame: Any) -> None:
    """SIGTERM unwinds like Ctrl-C, so every process started here (and the stack's) is stopped."""
    raise KeyboardInterrupt


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trigger", choices=("keycloak", "rest"), default="keycloak")
    parser.add_argument("--logouts", "--revocations", dest="count", type=int, help="per feed (default 200)")
    parser.add_argument("--services", type=int, help="service processes per feed (default 8)")
    parser.add_argument("--feeds", help="comma-separated: redis, http (the stream), http-poll (long-poll); "
                        "default redis,http (--sweep: redis,http,http-poll)")
    parser.add_argument("--sweep", action="store_true",
                        help=f"REST trigger at N = {', '.join(map(str, SWEEP))} service processes: p99 and provider "
                             "CPU per revocation against N (default 60 revocations per feed and N)")
    parser.add_argument("--warmup", type=int, default=3, help="uncounted rounds per feed first (cold JWKS caches)")
    parser.add_argument("--users", type=int, default=10, help="Keycloak users logged in and out in turn")
    parser.add_argument("--lost-after", type=float, default=5.0, help="seconds after which a refusal is lost")
    parser.add_argument("--quick", action="store_true", help="20 per feed, 4 services, plot in /tmp")
    parser.add_argument("--plot", type=Path, help="PNG path (default bench/results/propagation_<trigger>.png)")
    args = parser.parse_args()
    if args.sweep and args.trigger != "rest":
        if "--trigger" in sys.argv:
            parser.error("--sweep runs the REST trigger (Keycloak logins would dominate a 24-service round)")
        args.trigger = "rest"
    args.count = args.count or (20 if args.quick else 60 if args.sweep else 200)
    args.services = args.services or (4 if args.quick else 8)
    args.feeds = [f.strip() for f in (args.feeds or ("redis,http,http-poll" if args.sweep else "redis,http"))
                  .split(",") if f.strip()]
    unknown = [f for f in args.feeds if f not in TARGETS]
    if unknown:
        parser.error(f"unknown feed(s) {unknown}: use redis, http, http-poll")
    default_dir = Path("/tmp") if args.quick else RESULTS  # a quick check does not overwrite the committed plot
    path = args.plot or default_dir / ("propagation_sweep.png" if args.sweep else f"propagation_{args.trigger}.png")

    signal.signal(signal.SIGTERM, _interrupt)
    print(f"uptime at start: {uptime()}")
    if args.sweep:
        counts = [2, 4] if args.quick else list(SWEEP)
        print(f"sweep: N = {', '.join(map(str, counts))} service processes; {args.count} REST revocations per feed "
              f"and N (+{args.warmup} warm-up); feeds {', '.join(args.feeds)}", flush=True)
        sweep = run_rest_sweep(args, counts)
        print(f"uptime at the end: {uptime()}")
        print_sweep(sweep, args)
        plot_sweep(sweep, args, path)
        return
    print(f"trigger {args.trigger}; {args.services} service processes per feed; {args.count} per feed "
          f"(+{args.warmup} warm-up); feeds {', '.join(args.feeds)}", flush=True)
    report = run_keycloak(args) if args.trigger == "keycloak" else run_rest(args)
    print(f"uptime at the end: {uptime()}")
    print_report(args.trigger, report, args)
    plot(args.trigger, report, args.services, path)


if __name__ == "__main__":
    run_reported(main)
