"""What the forward-auth check adds at a gateway: nginx with the check against nginx alone, same upstream.

One nginx (Debian's, our own process, one worker) serves three things on loopback: the upstream (a static
``return 200``), a plain proxy to it, and the server block of ``docs/gateways.md`` (``auth_request`` to
``python -m tokenversion.forwardauth``, then the same proxy). The forward-auth service keeps its state from
a real provider (gunicorn, SQLite, the HTTP feed); the token is RS256, signed by ``tests/jwks.py``'s issuer
over loopback. wrk (one thread, ``--connections`` connections, closed loop) alternates the two cases for
``--rounds`` rounds of ``--duration`` seconds; each round's median latency is read from wrk's ``--latency``
table, and the figure is the median over rounds of (checked - plain).

With ``--keycloak``, the end-to-end stack (``sample_service/stack.py``: a real Keycloak under the machine-wide
lock, the provider) replaces the loopback issuer and provider, the token is a real Keycloak access token, and
a third case is measured: nginx calling Keycloak's token introspection (RFC 7662, one POST per request, the
confidential audience client's credentials, kept-alive connections). That case measures the cost only: nginx's
``auth_request`` takes introspection's ``200 {"active": false}`` as a yes, so using it for real needs a shim
(njs or a small service) that the figure does not include.

    .venv/bin/python bench/gateway.py                 # 5 rounds of 5 s, 1 connection (latency)
    .venv/bin/python bench/gateway.py --keycloak      # also nginx + Keycloak introspection
    .venv/bin/python bench/gateway.py --connections 8 # throughput: the check is one Python process
    .venv/bin/python bench/gateway.py --quick         # 3 rounds of 3 s
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from _report import run_reported  # noqa: E402

from tests.feed_settings import FEED_SECRET  # noqa: E402
from tests.jwks import JWKSServer  # noqa: E402
from tests.remote_helpers import Process, WebProcess, free_port, wait_until  # noqa: E402


def docs_server_block() -> str:
    text = (ROOT / "docs" / "gateways.md").read_text()
    start = text.index("### nginx (tested)")
    (block,) = re.findall(r"```nginx\n(.*?)```", text[start:text.index("\n### ", start + 1)], flags=re.S)
    return block


def wrk_median_ms(url: str, token: str, connections: int, duration: float) -> tuple[float, float]:
    out = subprocess.run(["wrk", "-t1", f"-c{connections}", f"-d{duration:g}s", "--latency", "-H",
                          f"Authorization: Bearer {token}", url], capture_output=True, text=True, check=True).stdout
    match = re.search(r"^\s+50%\s+([\d.]+)(us|ms|s)\s*$", out, flags=re.M)
    rps = re.search(r"^Requests/sec:\s+([\d.]+)", out, flags=re.M)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if not match or not rps or non2xx:
        raise SystemExit(f"wrk: no median, or refused requests:\n{out}")
    value = float(match.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[match.group(2)]
    return value, float(rps.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--connections", type=int, default=1)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--keycloak", action="store_true", help="the real stack, and the introspection case")
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.duration = 3, 3.0
    nginx_bin = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin")
    if not nginx_bin or not shutil.which("wrk"):
        raise SystemExit("needs nginx and wrk from Debian's packages: apt-get install -y nginx wrk")

    with contextlib.ExitStack() as cleanup:
        if args.keycloak:
            issuer, audience, feed_url, feed_secret, token, introspection = keycloak_parts(cleanup)
        else:
            issuer, audience, feed_url, feed_secret, token = local_parts(cleanup)
            introspection = None
        measure(args, nginx_bin, issuer, audience, feed_url, feed_secret, token, introspection, cleanup)


def local_parts(cleanup: contextlib.ExitStack) -> tuple[str, str, str, str, str]:
    """The loopback issuer of the tests and a provider (gunicorn, SQLite) of our own."""
    home = Path(tempfile.mkdtemp(prefix="tv-bench-gateway-"))
    jwks = JWKSServer()
    cleanup.callback(jwks.close)
    env = {"DJANGO_SETTINGS_MODULE": "tests.feed_settings", "TOKENVERSION_TEST_DB": "sqlite",
           "TOKENVERSION_TEST_SQLITE": str(home / "provider.sqlite3"), "TOKENVERSION_TEST_ISSUER": jwks.issuer,
           "PYTHONUNBUFFERED": "1"}
    subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env={**os.environ, **env}, check=True)
    provider = WebProcess("provider", "provider.wsgi:application", env).start()
    cleanup.callback(provider.kill)
    token = jwks.mint(sub="5b7f0b36-8d0e-4a35-9f49-7a5ad1b0c0ff")
    return jwks.issuer, "tokenversion-api", f"{provider.url}/tokenversion/feed", FEED_SECRET, token


def keycloak_parts(cleanup: contextlib.ExitStack) -> tuple[str, str, str, str, str, dict[str, str]]:
    """The end-to-end stack (real Keycloak, under the machine-wide lock), a real user and access token."""
    from sample_service.stack import Stack, StackConfig

    stack = Stack(StackConfig(database_url="sqlite:////tmp/tokenversion-bench-gateway/provider.sqlite3"))
    Path("/tmp/tokenversion-bench-gateway").mkdir(exist_ok=True)
    cleanup.callback(stack.close)
    stack.start()
    config = stack.config
    password = "bench-gateway-password-0123456789"
    stack.ensure_user("bench-gateway", password)
    token = stack.openid().token("bench-gateway", password)["access_token"]
    admin = stack.keycloak_admin()
    secret = admin.get_client_secrets(admin.get_client_id(config.audience))["value"]
    introspection = {"host": f"127.0.0.1:{config.keycloak_port}",
                     "path": f"/realms/{config.realm}/protocol/openid-connect/token/introspect",
                     "basic": base64.b64encode(f"{config.audience}:{secret}".encode()).decode()}
    return (config.issuer, config.audience, f"{config.provider_url}/tokenversion/feed", config.feed_secret, token,
            introspection)


def measure(args: argparse.Namespace, nginx_bin: str, issuer: str, audience: str, feed_url: str, feed_secret: str,
            token: str, introspection: dict[str, str] | None, cleanup: contextlib.ExitStack) -> None:
    home = Path(tempfile.mkdtemp(prefix="tv-bench-gateway-nginx-"))
    upstream_port, check_port, plain_port, checked_port, introspected_port = (free_port() for _ in range(5))
    check = Process("forwardauth", [sys.executable, "-m", "tokenversion.forwardauth", "--port", str(check_port),
                                    "--issuer", issuer, "--audience", audience, "--feed-url", feed_url],
                    {"TOKENVERSION_FEED_SECRET": feed_secret}).start()
    cleanup.callback(check.stop)
    (home / "tmp").mkdir()
    checked = (docs_server_block().replace("127.0.0.1:8000", f"127.0.0.1:{upstream_port}")
               .replace("127.0.0.1:9180", f"127.0.0.1:{check_port}")
               .replace("listen 127.0.0.1:8080", f"listen 127.0.0.1:{checked_port}"))
    introspected = ""
    if introspection is not None:
        introspected = f"""
map $http_authorization $tv_bearer {{ "~^Bearer\\s+(?<t>\\S+)$" $t; default ""; }}
upstream keycloak {{ server {introspection["host"]}; keepalive 16; }}
server {{
    listen 127.0.0.1:{introspected_port};
    location / {{ auth_request /_introspect; proxy_pass http://orders; }}
    location = /_introspect {{
        internal;
        proxy_method POST;
        proxy_pass_request_headers off;
        proxy_pass_request_body off;
        proxy_set_header Host {introspection["host"]};
        proxy_set_header Content-Type application/x-www-form-urlencoded;
        proxy_set_header Authorization "Basic {introspection["basic"]}";
        proxy_set_body "token=$tv_bearer";
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        proxy_pass http://keycloak{introspection["path"]};
    }}
}}
"""
    temp_paths = "".join(f"{kind}_temp_path {home}/tmp;\n" for kind in ("client_body", "proxy", "fastcgi", "uwsgi",
                                                                           "scgi"))
    (home / "nginx.conf").write_text(
        f"daemon off;\nworker_processes 1;\npid {home}/nginx.pid;\nerror_log {home}/error.log;\nevents {{}}\n"
        f"http {{\naccess_log off;\n{temp_paths}"
        f"server {{ listen 127.0.0.1:{upstream_port}; location / {{ return 200 'ok'; }} }}\n"
        f"server {{ listen 127.0.0.1:{plain_port}; location / {{ proxy_pass http://orders; "
        f"proxy_http_version 1.1; proxy_set_header Connection \"\"; }} }}\n{checked}\n{introspected}}}\n")
    nginx = Process("nginx", [nginx_bin, "-c", str(home / "nginx.conf"), "-p", str(home)]).start()
    cleanup.callback(nginx.stop)
    urls = {"nginx alone": f"http://127.0.0.1:{plain_port}/orders",
            "nginx + tokenversion check": f"http://127.0.0.1:{checked_port}/orders"}
    if introspection is not None:
        urls["nginx + Keycloak introspection"] = f"http://127.0.0.1:{introspected_port}/orders"

    def ok(url: str) -> bool:
        try:
            request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
            with urllib.request.urlopen(request, timeout=2) as response:
                return response.status == 200
        except OSError:
            return False

    wait_until(lambda: all(ok(url) for url in urls.values()), 60, interval=0.2, what="nginx and the checks")
    for url in urls.values():
        wrk_median_ms(url, token, args.connections, 1.0)  # warm-up
    rows: dict[str, list[tuple[float, float]]] = {name: [] for name in urls}
    for _ in range(args.rounds):
        for name, url in urls.items():
            rows[name].append(wrk_median_ms(url, token, args.connections, args.duration))
    print(f"\n{args.rounds} rounds of {args.duration:g} s, wrk -t1 -c{args.connections}, medians over rounds")
    print(f"{'case':<34}{'median latency':>16}{'requests/s':>14}")
    for name, samples in rows.items():
        print(f"{name:<34}{statistics.median(s[0] for s in samples):>13.3f} ms"
              f"{statistics.median(s[1] for s in samples):>14.0f}")

    def added(name: str) -> list[float]:
        return [c[0] - p[0] for p, c in zip(rows["nginx alone"], rows[name], strict=True)]

    check_added = statistics.median(added("nginx + tokenversion check"))
    print(f"\nadded by the check at the median: {check_added:.3f} ms (target: at most 1 ms)")
    if introspection is not None:
        introspection_added = statistics.median(added("nginx + Keycloak introspection"))
        print(f"added by Keycloak introspection at the median: {introspection_added:.3f} ms; "
              f"the check is {introspection_added / check_added:.1f}x cheaper (target: at least 10x)")
    else:
        print("nginx + Keycloak introspection: not measured (run with --keycloak)")


if __name__ == "__main__":
    sys.exit(run_reported(main, packages=("fastapi", "starlette", "uvicorn")))
