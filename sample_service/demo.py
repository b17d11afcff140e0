"""The live demo: the seed scenario played against a real Keycloak, the provider and the sample service.

    bash scripts/demo.sh            # or: .venv/bin/python -m sample_service.demo [--keep-running]

Prints a timeline a person can follow: login, API call accepted, logout, the same token refused, with times.
Then the same for an account compromise handled from the provider's CLI.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import jwt
import requests

from .stack import ROOT, Stack, StackConfig, StackError, seconds_until_refused

USERNAME, PASSWORD = "demo", "demo-password-change-me"


class Timeline:
    def __init__(self) -> None:
        self.t0 = time.perf_counter()

    def say(self, what: str, result: str = "") -> None:
        elapsed = (time.perf_counter() - self.t0) * 1000
        line = f"  t+{elapsed:8.1f} ms  {what:<58}"
        print(f"{line} -> {result}" if result else line, flush=True)


def get_orders(stack: Stack, token: str) -> requests.Response:
    return requests.get(f"{stack.config.service_url}/api/orders",
                        headers={"Authorization": f"Bearer {token}"}, timeout=5)


def call_api(stack: Stack, token: str) -> str:
    response = get_orders(stack, token)
    if response.status_code == 200:
        return "200 OK"
    challenge = response.headers.get("WWW-Authenticate", "")
    return f"{response.status_code} {challenge}"


def wait_refused(stack: Stack, token: str) -> tuple[float, str]:
    """Seconds until every worker of the service refuses the token, and what it answers then."""
    took = seconds_until_refused(lambda: get_orders(stack, token).status_code,
                                 settle=2 * stack.config.service_cache_ttl + 0.1, within=5.0)
    return took, call_api(stack, token)


def play(stack: Stack) -> bool:
    oidc = stack.openid()
    print("\nScenario 1: the user logs out; the access token they had must stop working everywhere.\n")
    line = Timeline()
    tokens = oidc.token(USERNAME, PASSWORD)
    claims = jwt.decode(tokens["access_token"], options={"verify_signature": False})
    line.say(f"login as '{USERNAME}' (Keycloak password grant)",
             f"access token, token_version={claims.get('token_version')}, expires in {claims['exp'] - claims['iat']} s")
    line.say("GET /api/orders with that token", call_api(stack, tokens["access_token"]))
    oidc.logout(tokens["refresh_token"])
    line.say("logout at Keycloak (it calls back-channel logout)", "done")
    took, result = wait_refused(stack, tokens["access_token"])
    # printed after the refusal has held for the settle time; `took` says when it began
    line.say("GET /api/orders with the same token", f"{result} ({took * 1000:.0f} ms after the revocation)")
    print(f"\n  Every worker of the service refused the old token {took * 1000:.0f} ms after Keycloak's logout "
          f"returned "
          f"(without tokenversion it would work {claims['exp'] - int(time.time())} s more).")
    ok = "invalid_token" in result

    print("\nScenario 2: the account is compromised; support revokes it from the provider's CLI.\n")
    line = Timeline()
    tokens = oidc.token(USERNAME, PASSWORD)
    line.say("login again", "new access token")
    line.say("GET /api/orders", call_api(stack, tokens["access_token"]))
    stack.manage("revoke", USERNAME, "--reason", "compromise", "--note", "demo")
    line.say(f"python manage.py revoke {USERNAME} --reason compromise", "version bumped")
    took, result = wait_refused(stack, tokens["access_token"])
    line.say("GET /api/orders with the token from before", f"{result} ({took * 1000:.0f} ms after the revocation)")
    fresh = oidc.token(USERNAME, PASSWORD)
    line.say("login once more: a token with the new version", call_api(stack, fresh["access_token"]))
    return ok and "invalid_token" in result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep-running", action="store_true",
                        help="leave Keycloak, the provider and the service running after the demo")
    args = parser.parse_args(argv)
    work = ROOT / "var" / "demo"
    stack = Stack(StackConfig(database_url=f"sqlite:///{Path(work, 'provider.sqlite3')}", work_dir=work))
    print("Starting Keycloak (first run downloads it from Maven Central), the provider and the sample service...",
          flush=True)
    try:
        stack.start()
        stack.ensure_user(USERNAME, PASSWORD)
        ok = play(stack)
    except StackError as exc:
        print(f"demo: {exc}", file=sys.stderr)
        stack.close()
        return 1
    if args.keep_running:
        c = stack.config
        print(f"\nStill running: Keycloak {c.keycloak_url} (admin/admin), provider {c.provider_url}/admin/ "
              f"(admin / {c.provider_admin_password}), service {c.service_url}/api/orders. "
              f"Stop: scripts/keycloak.sh stop, and the processes logged in {work}.")
    else:
        stack.close()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
