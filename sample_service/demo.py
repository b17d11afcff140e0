"""The live demo: the seed scenario played against a real Keycloak, the provider and the sample service.

    bash scripts/demo.sh            # or: .venv/bin/python -m sample_service.demo [--keep-running]

Prints a timeline a person can follow: login, API calls accepted, logout, the provider's receipt that every
service process enforces it (and how fast), the same token refused and recorded as a security event, with
times. Then the same for an account compromise handled from the provider's CLI.

The services: the sample service on the provider's database, one on the provider's HTTP feed and, when
``TOKENVERSION_TEST_REDIS_URL`` names a Redis (``scripts/services.sh env``), one on Redis; two gunicorn workers
each, every one reporting to the provider with its own service key.
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
# The services besides the stack's own ("service", on the provider's database): name -> (port, store).
REMOTE_SERVICES = {"service-feed": (18002, "feed"), "service-redis": (18003, "redis")}


class Timeline:
    def __init__(self) -> None:
        self.t0 = time.perf_counter()

    def say(self, what: str, result: str = "") -> None:
        elapsed = (time.perf_counter() - self.t0) * 1000
        line = f"  t+{elapsed:8.1f} ms  {what:<58}"
        print(f"{line} -> {result}" if result else line, flush=True)


def start_remote_services(stack: Stack) -> dict[str, str]:
    """Start the services that share nothing with the provider but its feed (Redis only when the stack has
    one); returns every service of the stack: name -> URL."""
    for name, (port, store) in REMOTE_SERVICES.items():
        if store == "redis" and not stack.config.redis_url:
            continue
        stack.start_service(name, port, **stack.remote_store_env(store))
    return {"service": stack.config.service_url,
            **{name: f"http://127.0.0.1:{port}" for name, (port, _) in REMOTE_SERVICES.items()
               if name in stack.services}}


def get_orders(stack: Stack, token: str, url: str | None = None, user_agent: str = "tokenversion-demo") \
        -> requests.Response:
    return requests.get(f"{url or stack.config.service_url}/api/orders", timeout=5,
                        headers={"Authorization": f"Bearer {token}", "User-Agent": user_agent})


def call_api(stack: Stack, token: str, url: str | None = None, user_agent: str = "tokenversion-demo") -> str:
    response = get_orders(stack, token, url, user_agent)
    if response.status_code == 200:
        return "200 OK"
    challenge = response.headers.get("WWW-Authenticate", "")
    return f"{response.status_code} {challenge}"


def wait_refused(stack: Stack, token: str) -> tuple[float, str]:
    """Seconds until every worker of the service refuses the token, and what it answers then."""
    took = seconds_until_refused(lambda: get_orders(stack, token).status_code,
                                 settle=2 * stack.config.service_cache_ttl + 0.1, within=5.0)
    return took, call_api(stack, token)


def security_event(stack: Stack, subject: str, user_agent: str, within: float = 10.0) -> tuple[int, str, str]:
    """(id, service, client address) of the provider's security event for the subject's revoked-token use made
    with ``user_agent``, polled until the service has reported it (the admin lists the same rows)."""
    deadline = time.monotonic() + within
    while True:
        found = stack.sql("SELECT id, service, client_address FROM tokenversion_server_revokedtokenuse "
                          "WHERE subject = %s AND user_agent = %s ORDER BY id", subject, user_agent)
        if found:
            return found[0]
        if time.monotonic() > deadline:
            raise StackError(f"no security event of {subject} after {within} s")
        time.sleep(0.05)


def play(stack: Stack, services: dict[str, str] | None = None) -> bool:
    """Play both scenarios; ``services`` (name -> URL) are the services that receive the calls, the stack's
    own by default."""
    services = services or {"service": stack.config.service_url}
    oidc = stack.openid()
    provider = stack.admin_session()
    print("\nScenario 1: the user logs out; the access token they had must stop working everywhere.\n")
    line = Timeline()
    tokens = oidc.token(USERNAME, PASSWORD)
    access = tokens["access_token"]
    claims = jwt.decode(access, options={"verify_signature": False})
    line.say(f"login as '{USERNAME}' (Keycloak password grant)",
             f"access token, token_version={claims.get('token_version')}, expires in {claims['exp'] - claims['iat']} s")
    accepted = [call_api(stack, access, url) for url in services.values()]
    # every worker of every service serves once, so the provider knows each process before the logout
    processes = stack.wait_every_worker_reporting(lambda: [get_orders(stack, access, url)
                                                           for url in services.values()])
    line.say(f"GET /api/orders with that token at {', '.join(services)}",
             f"{', '.join(sorted(set(accepted)))} ({processes} service processes report to the provider)")
    oidc.logout(tokens["refresh_token"])
    line.say("logout at Keycloak (it calls back-channel logout)", "done")
    (event_id,) = stack.sql("SELECT id FROM tokenversion_server_revocationevent WHERE session_id = %s",
                            claims["sid"])[0]
    answer = stack.wait_enforced(provider, event_id)
    enforced = f"enforced by {answer['enforced']}/{answer['live']} service processes in {answer['slowest_ms']:.0f} ms"
    line.say(f"provider: revocation #{event_id} (the logout)", enforced)
    name, url = next(iter(services.items()))
    replay, sent = "stolen-token-replay", time.monotonic()
    result = call_api(stack, access, url, user_agent=replay)
    line.say(f"GET /api/orders at {name} with the same token", result)
    use_id, used_at, client = security_event(stack, claims["sub"], replay)
    line.say("provider: security events",
             f"revoked token used at {used_at} from {client}: recorded as security event #{use_id} "
             f"({(time.monotonic() - sent) * 1000:.0f} ms after the call)")
    print(f"\n  The provider's receipts: every service process enforced the logout, the slowest "
          f"{answer['slowest_ms']:.0f} ms after it was committed (without tokenversion the token would work "
          f"{claims['exp'] - int(time.time())} s more). Its use afterwards is a security event in the admin "
          f"({stack.config.provider_url}/admin/tokenversion_server/revokedtokenuse/).")
    ok = "invalid_token" in result and used_at == name and answer["enforced"] == processes

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
                        help="leave Keycloak, the provider and the services running after the demo")
    args = parser.parse_args(argv)
    work = ROOT / "var" / "demo"
    stack = Stack(StackConfig(database_url=f"sqlite:///{Path(work, 'provider.sqlite3')}", work_dir=work))
    print("Starting Keycloak (first run downloads it from Maven Central), the provider and the sample services...",
          flush=True)
    try:
        stack.start()
        services = start_remote_services(stack)
        stack.ensure_user(USERNAME, PASSWORD)
        ok = play(stack, services)
    except StackError as exc:
        print(f"demo: {exc}", file=sys.stderr)
        stack.close()
        return 1
    if args.keep_running:
        c = stack.config
        print(f"\nStill running: Keycloak {c.keycloak_url} (admin/admin), provider {c.provider_url}/admin/ "
              f"(admin / {c.provider_admin_password}), services "
              f"{', '.join(f'{url}/api/orders' for url in services.values())}. "
              f"Stop: scripts/keycloak.sh stop, and the processes logged in {work}.")
    else:
        stack.close()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
