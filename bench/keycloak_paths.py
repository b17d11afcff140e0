"""Token issue by mapper mode, and introspection against local validation, on a real Keycloak.

1. **At issue** (issue 12 item 4). Keycloak's token endpoint, password grants and refresh grants, for one client
   per mode in the same realm, identical but for how ``token_version`` gets into the token:

   - ``without``: no version mapper (the audience and subject mappers only): the baseline;
   - ``direct``: the extension's mapper calls the provider's claims endpoint at every grant (for comparison);
   - ``cached``: the extension's mapper answers from its in-Keycloak map, kept current by the provider's feed;
   - ``attribute``: Keycloak's built-in user-attribute mapper embeds the attribute the provider writes.

   Every mode's mappers are copied from the client scope ``keycloak_setup`` configures for that mode, so each
   is measured as a user would configure it. The cases run in interleaved rounds (the order rotated each
   round) after untimed warm-up rounds; each grant is timed, a round's figure is its median grant, and each
   mode is compared with ``without`` round by round (the median of the per-round ratios, with their middle half
   and range). Target: **each new mode (cached, attribute) adds at most 10% to the median of both grants.** A
   mode this tree cannot configure (its ``keycloak_setup`` option is missing) is listed as not measured.

   The provider is served as the issue asks for the direct mode: gthread workers with keep-alive (the mapper's
   HTTP client reuses its pooled connections) and persistent database connections (``CONN_MAX_AGE``). The
   script checks both and prints them: the claims calls and the client ports they came from, per mode (from
   the provider's access log), the connections open to the provider (``ss``), and the database sessions
   opened and closed during the measurement (PostgreSQL's ``pg_stat_activity``, before and after).

2. **Per request.** Real Keycloak access tokens (with ``token_version``), validated in this process by
   ``TokenVersionAuthentication`` (first-seen and repeated token, revocation checked against the provider's
   database store) and by plain ``jwt.decode``, against Keycloak's introspection endpoint (one POST per request,
   keep-alive, the confidential audience client's credentials), on loopback. Target: the class >= 50x faster.

Runs the same stack as the end-to-end tests (``sample_service/stack.py``: Keycloak from scripts/keycloak.sh,
restarted so that it runs this tree's extension, the provider under gunicorn), so it needs a JDK and Maven, and
takes the machine-wide stack lock.

    eval "$(bash scripts/services.sh env)"
    .venv/bin/python bench/keycloak_paths.py --database-url postgresql://tokenversion:tokenversion@127.0.0.1:55432/tv_kcpaths
    .venv/bin/python bench/keycloak_paths.py --quick          # 6 rounds of 10 grants; plot in /tmp
"""

from __future__ import annotations

import argparse
import copy
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
from _report import cpu_label, load_average, run_reported
from _setup import RESULTS, interleaved_rounds, median_ratio, pyplot, save, setup_django, timed_loop

from sample_service.stack import Stack, StackConfig

PASSWORD = "bench-password-0123456789"
CLAIM = "token_version"
SCOPE = "tokenversion"  # the client scope keycloak_setup fills with the mappers (RealmSpec.scope_name)
TARGET = 1.10  # each new mode: at most +10% on the median of both grants
# Persistent database connections for the provider (its default age is 60 s; a long run reconnects less)
CONN_MAX_AGE = 600
NO_MAPPER_CLIENT = "bench-nomapper"


@dataclass(frozen=True)
class Mode:
    """One way of putting ``token_version`` into tokens, measured through a Keycloak client of its own."""

    name: str
    client: str
    what: str
    new: bool  # held to the target against "without"
    # keycloak_setup's arguments that configure this mode in the client scope; None: no version mapper at all
    setup_args: tuple[str, ...] | None
    # the keycloak_setup option this mode needs; the mode is left out when this tree's command lacks it
    needs_option: str | None = None
    # what must be true of a user before a grant carries the claim in this mode (e.g. an attribute written)
    prepare_users: Callable[[Stack, Sequence[str]], None] | None = None


def prepare_attribute_users(stack: Stack, users: Sequence[str]) -> None:
    """Attribute mode: the provider's worker writes each user's version into the Keycloak attribute. The bench's
    users are new to the provider: its scan queues version 0 for each, and one pass writes them (what the
    running worker does every ``ATTRIBUTE_SCAN_INTERVAL``)."""
    stack.manage("tokenversion_attribute_sync", "--scan")
    stack.manage("tokenversion_attribute_sync", "--once")


MODES: tuple[Mode, ...] = (
    Mode("without", NO_MAPPER_CLIENT, "no version mapper (audience and subject mappers only)", False, None),
    Mode("direct", "bench-direct", "the mapper calls the claims endpoint at every grant", False,
         ("--mapper-mode", "direct")),
    Mode("cached", "bench-cached", "the mapper answers from its map, fed by the provider's feed", True,
         ("--mapper-mode", "cached"), needs_option="--mapper-mode"),
    Mode("attribute", "bench-attribute", "Keycloak's user-attribute mapper, the attribute written by the provider",
         True, ("--attribute-mode",), needs_option="--attribute-mode", prepare_users=prepare_attribute_users),
)


# Keycloak clients, one per mode ------------------------------------------------------------------------------

def setup_options(stack: Stack) -> str:
    """``keycloak_setup --help``: which modes this tree's command can configure."""
    return stack.manage("keycloak_setup", "--help").stdout


def available_modes(stack: Stack, wanted: Iterable[str]) -> tuple[list[Mode], dict[str, str]]:
    """The modes this tree can configure, and for each other one why not."""
    help_text = setup_options(stack)
    modes, missing = [], {}
    for mode in MODES:
        if mode.name not in wanted:
            continue
        if mode.needs_option and not re.search(rf"(^|\s){re.escape(mode.needs_option)}\b", help_text):
            missing[mode.name] = f"keycloak_setup has no {mode.needs_option} option in this tree"
        else:
            modes.append(mode)
    return modes, missing


def setup_args_for(mode: Mode, help_text: str) -> tuple[str, ...]:
    """``--mapper-mode direct`` only where the command has the option (before the cached mode, direct was all)."""
    args = mode.setup_args or ()
    if args and not re.search(rf"(^|\s){re.escape(args[0])}\b", help_text):
        return ()
    return args


def scope_mappers(stack: Stack, setup_args: Sequence[str]) -> list[dict[str, Any]]:
    """Run keycloak_setup with ``setup_args`` and return the mappers it put in the tokenversion client scope."""
    stack.keycloak_setup(*setup_args)
    admin = stack.keycloak_admin()
    scope = admin.get_client_scope_by_name(SCOPE)
    if scope is None:
        raise SystemExit(f"keycloak_setup {' '.join(setup_args)} made no client scope {SCOPE!r}")
    return admin.get_mappers_from_client_scope(scope["id"])


def is_version_mapper(mapper: dict[str, Any]) -> bool:
    """The mapper that writes ``token_version`` (the extension's, or Keycloak's attribute mapper)."""
    config = mapper.get("config") or {}
    return config.get("claim.name") == CLAIM or mapper.get("protocolMapper") == "tokenversion-mapper"


def mode_client(stack: Stack, mode: Mode, mappers: Sequence[dict[str, Any]]) -> None:
    """A public login client like ``tokenversion-app``, with exactly ``mappers`` on the client itself.

    Made fresh each run (deleted first), so no mapper of an earlier run or another mode is left on it."""
    admin = stack.keycloak_admin()
    existing = admin.get_client_id(mode.client)
    if existing is not None:
        admin.delete_client(existing)
    admin.create_client({"clientId": mode.client, "publicClient": True, "directAccessGrantsEnabled": True,
                         "standardFlowEnabled": False, "frontchannelLogout": False})
    client_id = admin.get_client_id(mode.client)
    for mapper in mappers:
        wanted = {k: copy.deepcopy(mapper[k]) for k in ("name", "protocol", "protocolMapper", "config") if k in mapper}
        admin.add_mapper_to_client(client_id, wanted)


def describe_mapper(mapper: dict[str, Any]) -> str:
    """``name (type)``, and the extension's mode key when it has one (absent: direct)."""
    mode = (mapper.get("config") or {}).get("tokenversion.mode")
    return f"{mapper['name']} ({mapper['protocolMapper']}{f', tokenversion.mode={mode}' if mode else ''})"


def configure_modes(stack: Stack, modes: Sequence[Mode]) -> dict[str, list[str]]:
    """One client per mode; returns each client's mapper names (printed, so the run says what it measured).

    keycloak_setup is run once per mode to read what it configures; it is run last with its defaults, so the
    realm's own login client is left as the end-to-end stack has it."""
    help_text = setup_options(stack)
    configured: dict[str, list[str]] = {}
    mapper_sets: dict[str, list[dict[str, Any]]] = {}
    for mode in modes:
        if mode.setup_args is not None:
            mapper_sets[mode.name] = scope_mappers(stack, setup_args_for(mode, help_text))
    baseline = [m for m in scope_mappers(stack, ()) if not is_version_mapper(m)]
    for mode in modes:
        mappers = mapper_sets.get(mode.name, baseline)
        mode_client(stack, mode, mappers)
        configured[mode.name] = [describe_mapper(m) for m in mappers]
    return configured


def check_claims(stack: Stack, modes: Sequence[Mode], user: str) -> None:
    """Every mode's token carries the claim, and the baseline's does not: else the run would measure nothing."""
    import jwt

    values = {}
    for mode in modes:
        token = stack.openid(mode.client).token(user, PASSWORD)["access_token"]
        claims = jwt.decode(token, options={"verify_signature": False})
        if (CLAIM in claims) != (mode.setup_args is not None):
            raise SystemExit(f"mode {mode.name}: client {mode.client} issued a token "
                             f"{'with' if CLAIM in claims else 'without'} {CLAIM}; nothing to measure")
        if CLAIM in claims:
            values[mode.name] = claims[CLAIM]
    if len(set(values.values())) > 1:
        raise SystemExit(f"the modes disagree on {user}'s version: {values}")
    print(f"{user}'s tokens: {CLAIM} {values or 'absent'} by mode; without: absent")


# What the provider saw -------------------------------------------------------------------------------------------

CLAIMS_LINE = re.compile(r'"POST /tokenversion/claims[^"]*" (\d{3}) .* port=(\d+) us=(\d+)')


@dataclass
class ClaimsCalls:
    """The claims calls in a stretch of the provider's access log."""

    calls: int = 0
    ports: set[str] = field(default_factory=set)
    statuses: dict[str, int] = field(default_factory=dict)
    server_us: list[int] = field(default_factory=list)

    def add(self, text: str) -> None:
        for status, port, micros in CLAIMS_LINE.findall(text):
            self.calls += 1
            self.ports.add(port)
            self.statuses[status] = self.statuses.get(status, 0) + 1
            self.server_us.append(int(micros))


class ProviderLog:
    """Reads the provider's access log by byte offsets: which claims calls a case caused."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def offset(self) -> int:
        return self.path.stat().st_size

    def read(self, start: int, end: int) -> str:
        with open(self.path, "rb") as handle:
            handle.seek(start)
            return handle.read(end - start).decode(errors="replace")


def open_connections(port: int) -> int:
    """TCP connections established to ``port`` on loopback now (``ss``), -1 when ss is missing."""
    try:
        out = subprocess.run(["ss", "-Htn", "state", "established", f"( sport = :{port} )"], capture_output=True,
                             text=True, check=True, timeout=5).stdout
    except (OSError, subprocess.SubprocessError):
        return -1
    return len([line for line in out.splitlines() if line.strip()])


def database_backends(stack: Stack) -> set[int] | None:
    """Backend pids connected to the provider's PostgreSQL database now, this query's own excluded (None on
    SQLite). Compared before and after the timed rounds: the connections opened and closed meanwhile."""
    if stack.config.database_url.startswith("sqlite:"):
        return None
    rows = stack.sql("SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()")
    return {int(row[0]) for row in rows}


# At issue --------------------------------------------------------------------------------------------------------

@dataclass
class IssueRun:
    samples: dict[str, list[float]]  # per case, each round's median grant (seconds)
    grants: dict[str, list[float]]  # per case, every timed grant (seconds)
    claims: dict[str, ClaimsCalls]
    grant_count: dict[str, int]  # per mode, both grants
    open_connections: int
    db_before: set[int] | None  # backends connected to the provider's database before the timed rounds
    db_after: set[int] | None


def case_name(grant: str, mode: str) -> str:
    return f"{grant} grant, {mode}"


def token_endpoint(stack: Stack, modes: Sequence[Mode], rounds: int, per_round: int, warmup: int) -> IssueRun:
    users = [f"bench-{i}" for i in range(per_round)]
    for user in users:
        stack.ensure_user(user, PASSWORD)
    for mode in modes:
        if mode.prepare_users is not None:
            mode.prepare_users(stack, users)
    check_claims(stack, modes, users[0])
    clients = {mode.name: stack.openid(mode.client) for mode in modes}
    refresh = {name: [oidc.token(u, PASSWORD)["refresh_token"] for u in users] for name, oidc in clients.items()}
    grants: dict[str, list[float]] = {}  # every timed grant's seconds, by case

    def password_round(name: str) -> Callable[[], list[float]]:
        oidc = clients[name]

        def run() -> list[float]:
            times = []
            for user in users:
                start = time.perf_counter()
                oidc.token(user, PASSWORD)
                times.append(time.perf_counter() - start)
            return times
        return run

    def refresh_round(name: str) -> Callable[[], list[float]]:
        oidc, tokens = clients[name], refresh[name]

        def run() -> list[float]:
            times = []
            for i, rt in enumerate(tokens):
                start = time.perf_counter()
                tokens[i] = oidc.refresh_token(rt)["refresh_token"]
                times.append(time.perf_counter() - start)
            return times
        return run

    cases = {case_name("password", n): password_round(n) for n in clients}
    cases.update({case_name("refresh", n): refresh_round(n) for n in clients})
    for _ in range(warmup):  # untimed rounds: every path warm (the JIT, connection pools, the cached mode's map)
        for run in cases.values():
            run()

    log = ProviderLog(stack.config.work_dir / "provider.log")
    claims = {mode.name: ClaimsCalls() for mode in modes}

    def timed_case(name: str, run: Callable[[], list[float]]) -> Callable[[], float]:
        """One round of a case: its grants' median (a round's figure, robust to one stalled grant), every grant
        kept, and the claims calls it caused."""
        mode = name.rsplit(", ", 1)[1]

        def case() -> float:
            start = log.offset()
            times = run()
            # gunicorn writes the line once it has answered, while Keycloak still signs the token: nearly always
            # before the grant ends (a line written later counts in the next case; the totals stay exact)
            claims[mode].add(log.read(start, log.offset()))
            grants.setdefault(name, []).extend(times)
            return statistics.median(times)
        return case

    timed = {name: timed_case(name, run) for name, run in cases.items()}
    db_before = database_backends(stack)
    samples = interleaved_rounds(timed, rounds)
    db_after = database_backends(stack)
    return IssueRun(
        samples=samples, grants=grants, claims=claims, grant_count={m.name: 2 * rounds * per_round for m in modes},
        open_connections=open_connections(stack.config.provider_port),
        db_before=db_before, db_after=db_after,
    )


def round_ratios(samples: dict[str, list[float]], case: str, base: str) -> list[float]:
    """``case / base`` per round (both measured in the same round)."""
    return [a / b for a, b in zip(samples[case], samples[base], strict=True)]


def issue_report(run: IssueRun, modes: Sequence[Mode], missing: dict[str, str], rounds: int,
                 per_round: int) -> list[str]:
    """The table: the median grant per mode, each mode against ``without`` (the median over rounds of the ratio of
    the round's median grants, with the middle half and the whole range of rounds), met/missed for the new modes;
    then what the provider saw."""
    print(f"\nKeycloak token endpoint, {per_round} grants per case per round, {rounds} interleaved rounds "
          "(ms; ratio: median over rounds of mode / without in the same round):")
    print(f"  {'grant':<9} {'mode':<10} {'median':>8} {'p90':>8}   {'ratio':>6}  {'middle half':<13} "
          f"{'all rounds':<13} target")
    verdicts = []
    for grant in ("password", "refresh"):
        base = case_name(grant, "without")
        for mode in modes:
            case = case_name(grant, mode.name)
            every = sorted(run.grants[case])
            p90 = every[min(len(every) - 1, int(0.9 * len(every)))]
            line = f"  {grant:<9} {mode.name:<10} {statistics.median(every) * 1e3:8.2f} {p90 * 1e3:8.2f}   "
            if mode.name != "without":
                ratios = round_ratios(run.samples, case, base)
                mid = statistics.median(ratios)
                q1, _, q3 = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else (mid, mid, mid)
                line += f"{mid:5.3f}x  {q1:.3f}-{q3:.3f}   {min(ratios):.3f}-{max(ratios):.3f}   "
                if mode.new:
                    verdict = f"<= {TARGET:.2f}x: {'met' if mid <= TARGET else 'MISSED'}"
                    verdicts.append(f"{mode.name}, {grant} grant: {mid:.3f}x (middle half of rounds {q1:.3f}-"
                                    f"{q3:.3f}), target {verdict}")
                    line += verdict
                else:
                    line += "(for comparison)"
            print(line)
    for name, why in missing.items():
        print(f"  {name:<10} not measured: {why}")
    print("\nClaims calls at the provider during the timed rounds (its access log), per mode:")
    for mode in modes:
        seen = run.claims[mode.name]
        count = run.grant_count[mode.name]
        line = f"  {mode.name:<10} {seen.calls:>5} calls for {count} grants ({seen.calls / count:.2f} per grant)"
        if seen.calls:
            line += (f" over {len(seen.ports)} client port(s), i.e. connections;"
                     f" statuses {seen.statuses}; server time median {statistics.median(seen.server_us) / 1e3:.2f} ms")
        print(line)
    print(f"  connections established to the provider at the end (ss): {run.open_connections}")
    if run.db_before is not None and run.db_after is not None:
        print(f"  connections to the provider's database (pg_stat_activity, every process of the stack): "
              f"{len(run.db_before)} before the timed rounds, {len(run.db_after)} after; "
              f"{len(run.db_after - run.db_before)} opened and {len(run.db_before - run.db_after)} closed meanwhile")
    print("\nTarget, each new mode against without:")
    for line in verdicts or ["no new mode measured in this tree"]:
        print(f"  {line}")
    return verdicts


# Per request -----------------------------------------------------------------------------------------------------

def per_request(stack: Stack, rounds: int, n_tokens: int) -> dict[str, list[float]]:
    import jwt
    from django.test import RequestFactory

    from tokenversion import authentication as auth
    from tokenversion.core.tokens import AccessTokenValidator
    from tokenversion.runtime import get_runtime

    users = [f"bench-{i}" for i in range(10)]
    for user in users:
        stack.ensure_user(user, PASSWORD)
    oidc = stack.openid()
    tokens = []
    for user in users:
        rt = oidc.token(user, PASSWORD)["refresh_token"]
        for _ in range(n_tokens // len(users)):
            answer = oidc.refresh_token(rt)
            tokens.append(answer["access_token"])
            rt = answer["refresh_token"]
    assert all(CLAIM in jwt.decode(t, options={"verify_signature": False}) for t in tokens)

    admin = stack.keycloak_admin()
    secret = admin.get_client_secrets(admin.get_client_id(stack.config.audience))["value"]
    introspect_url = f"{stack.config.issuer}/protocol/openid-connect/token/introspect"
    session = requests.Session()

    def introspect(token: str) -> None:
        answer = session.post(introspect_url, data={"token": token},
                              auth=(stack.config.audience, secret), timeout=5)
        assert answer.status_code == 200 and answer.json()["active"] is True

    cls = auth.TokenVersionAuthentication()
    factory = RequestFactory()
    reqs = [factory.get("/api", HTTP_AUTHORIZATION=f"Bearer {t}") for t in tokens]
    for r in reqs:
        assert cls.authenticate(r) is not None  # warm: keys fetched, store cache filled
    warm = auth.get_validator()
    key = warm.jwk_client.get_signing_key_from_jwt(tokens[0]).key

    def plain(token: str) -> None:
        jwt.decode(token, key, algorithms=["RS256"], audience=stack.config.audience, issuer=stack.config.issuer)

    def first_seen_round() -> float:
        get_runtime().use_validator(AccessTokenValidator(warm.policy, jwk_client=warm.jwk_client))
        try:
            return timed_loop(cls.authenticate, reqs)
        finally:
            get_runtime().use_validator(warm)

    cases = {
        "plain jwt.decode": lambda: timed_loop(plain, tokens),
        "class, first-seen token": first_seen_round,
        "class, repeated token": lambda: timed_loop(cls.authenticate, reqs),
        "Keycloak introspection": lambda: timed_loop(introspect, tokens),
    }
    return interleaved_rounds(cases, rounds)


def report(title: str, samples: dict[str, list[float]], pairs: Sequence[tuple[str, str, str]]) -> list[str]:
    print(f"\n{title}")
    for name, values in samples.items():
        print(f"  {name:<34} median {statistics.median(values) * 1e3:9.3f} ms per call")
    lines = []
    for case, base, target in pairs:
        mid, low, high = median_ratio(samples, case, base)
        line = f"  {case} / {base}: {mid:.3f}x (rounds {low:.3f}-{high:.3f}); target {target}"
        print(line)
        lines.append(line)
    return lines


def plot(token_samples: dict | None, request_samples: dict | None, path: Path) -> None:
    """Medians: of every grant per case (as the table), of the rounds per request."""
    plt = pyplot()
    panels = [(s, t, log) for s, t, log in ((request_samples, "per request (log scale)", True),
                                            (token_samples, "Keycloak token endpoint, by mode", False)) if s]
    if plt is None or not panels:
        return
    fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4.5), squeeze=False)
    for axis, (samples, title, log_scale) in zip(axes[0], panels, strict=True):
        names = list(samples)
        medians = [statistics.median(samples[n]) * 1e3 for n in names]
        axis.barh(names, medians, color="#4477aa")
        axis.set_xlabel("median ms per call")
        axis.set_title(title)
        for y, value in enumerate(medians):
            axis.text(value, y, f" {value:.3g}", va="center", fontsize=8)
        if log_scale:
            axis.set_xscale("log")
    fig.suptitle(f"{cpu_label()}; load average {load_average()} (1/5/15 min) at the end", fontsize=9)
    fig.tight_layout()
    save(fig, path)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="Modes: " + "; ".join(f"{m.name}: {m.what}" for m in MODES))
    parser.add_argument("--quick", action="store_true", help="6 rounds of 10 grants, 100 tokens; plot in /tmp")
    parser.add_argument("--rounds", type=int, help="interleaved rounds (default: 30, --quick 6)")
    parser.add_argument("--warmup", type=int, help="untimed rounds first (default: 3, --quick 1)")
    parser.add_argument("--database-url", default="sqlite:////tmp/tokenversion-bench/provider.sqlite3",
                        help="the provider's database, created fresh (default: %(default)s)")
    parser.add_argument("--keep-alive", type=int, default=StackConfig.provider_keep_alive,
                        help="seconds gunicorn keeps the mapper's idle connections open (default: %(default)s; "
                             "gunicorn's own default is 2)")
    parser.add_argument("--part", choices=("issue", "request", "both"), default="both",
                        help="token issue by mode, per-request validation, or both (default: %(default)s)")
    parser.add_argument("--modes", default=",".join(m.name for m in MODES),
                        help="comma-separated modes at issue (default: %(default)s; 'without' is always measured)")
    args = parser.parse_args(argv)
    rounds, warmup, per_round, n_tokens = (6, 1, 10, 100) if args.quick else (30, 3, 20, 300)
    rounds = args.rounds or rounds
    warmup = args.warmup if args.warmup is not None else warmup
    wanted = {"without", *(m.strip() for m in args.modes.split(",") if m.strip())}
    unknown = wanted - {m.name for m in MODES}
    if unknown:
        parser.error(f"unknown mode(s): {', '.join(sorted(unknown))}")

    separator = "&" if "?" in args.database_url else "?"
    provider_database = f"{args.database_url}{separator}conn_max_age={CONN_MAX_AGE}"
    config = StackConfig(database_url=args.database_url, restart_keycloak=True, provider_keep_alive=args.keep_alive,
                         work_dir=Path("/tmp/tokenversion-bench"),
                         # attribute mode: bumps queue their attribute write (read by that mode's code only)
                         extra_provider_env={"DATABASE_URL": provider_database, "TOKENVERSION_ATTRIBUTE_SYNC": "1"})
    stack = Stack(config)
    issue: IssueRun | None = None
    request_samples = None
    try:
        stack.start()
        print(f"provider: gunicorn, 2 gthread workers x {config.provider_threads} threads, keep-alive "
              f"{config.provider_keep_alive} s; DATABASE_URL ...{separator}conn_max_age={CONN_MAX_AGE}")
        if args.part in ("issue", "both"):
            modes, missing = available_modes(stack, wanted)
            for name, mappers in configure_modes(stack, modes).items():
                print(f"mode {name}: {', '.join(mappers)}")
            issue = token_endpoint(stack, modes, rounds, per_round, warmup)
        if args.part in ("request", "both"):
            setup_django(args.database_url, ISSUER=stack.config.issuer, AUDIENCE=[stack.config.audience],
                         CACHE_TTL=3600.0)
            request_samples = per_request(stack, rounds, n_tokens)
    finally:
        stack.close()

    if issue is not None:
        issue_report(issue, modes, missing, rounds, per_round)
    if request_samples is not None:
        report(f"Per request, {n_tokens} real Keycloak tokens, {rounds} rounds:", request_samples, [
            ("Keycloak introspection", "class, repeated token", ">= 50x"),
            ("Keycloak introspection", "class, first-seen token", ">= 50x"),
            ("class, first-seen token", "plain jwt.decode", "<= 1.2x"),
        ])
    plot(issue.grants if issue else None, request_samples,
         Path("/tmp/keycloak_paths.png") if args.quick else RESULTS / "keycloak_paths.png")
    return 0


if __name__ == "__main__":
    sys.exit(run_reported(main))
