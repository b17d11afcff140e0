"""What the two alternatives cost against a real Keycloak: introspection per request, and the mapper at issue.

1. **Per request.** Real Keycloak access tokens (with ``token_version``), validated in this process by
   ``TokenVersionAuthentication`` (first-seen and repeated token, revocation checked against the provider's
   database store) and by plain ``jwt.decode``, against Keycloak's introspection endpoint (one POST per request,
   keep-alive, the confidential audience client's credentials), on loopback. Target: the class >= 50x faster.
2. **At issue.** Keycloak's token endpoint for two clients identical but for the "token version" mapper
   (``tokenversion-app`` has it, ``bench-nomapper`` does not; both get the audience mapper): password grants
   and refresh grants, interleaved. Target: the mapper adds <= 10% to the median. Refresh grants are the
   sensitive case: they skip password hashing, so the mapper's call is a larger share of them.

Runs the same stack as the end-to-end tests (``sample_service/stack.py``: Keycloak from scripts/keycloak.sh, the
provider on runserver, SQLite unless ``--database-url``), so it needs a JDK and Maven.

    .venv/bin/python bench/keycloak_paths.py            # plot in bench/results/keycloak_paths.png
    .venv/bin/python bench/keycloak_paths.py --quick
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable, Sequence

import requests
from _report import run_reported
from _setup import RESULTS, interleaved_rounds, median_ratio, pyplot, save, setup_django, timed_loop

from sample_service.stack import Stack, StackConfig

PASSWORD = "bench-password-0123456789"
NO_MAPPER_CLIENT = "bench-nomapper"


def no_mapper_client(stack: Stack) -> None:
    """A login client like tokenversion-app, with the audience mapper but without the version mapper."""
    admin = stack.keycloak_admin()
    if admin.get_client_id(NO_MAPPER_CLIENT) is None:
        admin.create_client({"clientId": NO_MAPPER_CLIENT, "publicClient": True, "directAccessGrantsEnabled": True,
                             "standardFlowEnabled": False, "frontchannelLogout": False})
    client_id = admin.get_client_id(NO_MAPPER_CLIENT)
    if not any(m["name"] == "audience" for m in admin.get_mappers_from_client(client_id)):
        admin.add_mapper_to_client(client_id, {
            "name": "audience", "protocol": "openid-connect", "protocolMapper": "oidc-audience-mapper",
            "config": {"included.client.audience": stack.config.audience, "access.token.claim": "true"}})


def token_endpoint(stack: Stack, rounds: int, per_round: int) -> dict[str, list[float]]:
    users = [f"bench-{i}" for i in range(per_round)]
    for user in users:
        stack.ensure_user(user, PASSWORD)
    clients = {"with mapper": stack.openid(), "without mapper": stack.openid(NO_MAPPER_CLIENT)}
    refresh = {name: [oidc.token(u, PASSWORD)["refresh_token"] for u in users] for name, oidc in clients.items()}

    def password_round(name: str) -> Callable[[], float]:
        return lambda: timed_loop(lambda user: clients[name].token(user, PASSWORD), users)

    def refresh_round(name: str) -> Callable[[], float]:
        def run() -> float:
            tokens = refresh[name]
            start = time.perf_counter()
            for i, rt in enumerate(tokens):
                tokens[i] = clients[name].refresh_token(rt)["refresh_token"]
            return (time.perf_counter() - start) / len(tokens)
        return run

    cases = {f"password grant, {n}": password_round(n) for n in clients}
    cases.update({f"refresh grant, {n}": refresh_round(n) for n in clients})
    return interleaved_rounds(cases, rounds)


def per_request(stack: Stack, rounds: int, n_tokens: int) -> dict[str, list[float]]:
    import jwt
    from django.test import RequestFactory

    from tokenversion import authentication as auth
    from tokenversion.core.tokens import AccessTokenValidator
    from tokenversion.runtime import get_runtime

    users = [f"bench-{i}" for i in range(10)]
    oidc = stack.openid()
    tokens = []
    for user in users:
        rt = oidc.token(user, PASSWORD)["refresh_token"]
        for _ in range(n_tokens // len(users)):
            answer = oidc.refresh_token(rt)
            tokens.append(answer["access_token"])
            rt = answer["refresh_token"]
    assert all("token_version" in jwt.decode(t, options={"verify_signature": False}) for t in tokens)

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


def plot(token_samples: dict, request_samples: dict, path) -> None:
    plt = pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    for axis, samples, title in ((left, request_samples, "per request (log scale)"),
                                 (right, token_samples, "Keycloak token endpoint")):
        names = list(samples)
        medians = [statistics.median(samples[n]) * 1e3 for n in names]
        axis.barh(names, medians, color="#4477aa")
        axis.set_xlabel("median ms per call")
        axis.set_title(title)
        for y, value in enumerate(medians):
            axis.text(value, y, f" {value:.3g}", va="center", fontsize=8)
    left.set_xscale("log")
    fig.tight_layout()
    save(fig, path)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds and tokens")
    parser.add_argument("--database-url", default="sqlite:////tmp/tokenversion-bench/provider.sqlite3")
    args = parser.parse_args(argv)
    rounds, per_round, n_tokens = (5, 10, 100) if args.quick else (11, 20, 300)

    stack = Stack(StackConfig(database_url=args.database_url))
    try:
        stack.start()
        no_mapper_client(stack)
        token_samples = token_endpoint(stack, rounds, per_round)
        setup_django(args.database_url, ISSUER=stack.config.issuer, AUDIENCE=[stack.config.audience],
                     CACHE_TTL=3600.0)
        request_samples = per_request(stack, rounds, n_tokens)
    finally:
        stack.close()

    report(f"Keycloak token endpoint, {per_round} grants per case per round, {rounds} rounds:", token_samples, [
        ("password grant, with mapper", "password grant, without mapper", "<= 1.10x"),
        ("refresh grant, with mapper", "refresh grant, without mapper", "<= 1.10x"),
    ])
    report(f"Per request, {n_tokens} real Keycloak tokens, {rounds} rounds:", request_samples, [
        ("Keycloak introspection", "class, repeated token", ">= 50x"),
        ("Keycloak introspection", "class, first-seen token", ">= 50x"),
        ("class, first-seen token", "plain jwt.decode", "<= 1.2x"),
    ])
    plot(token_samples, request_samples, RESULTS / "keycloak_paths.png")
    return 0


if __name__ == "__main__":
    sys.exit(run_reported(main))
