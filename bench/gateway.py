"""What the forward-auth check adds at a gateway: nginx with the check against nginx alone, same upstream.

One nginx (Debian's, our own process, one worker) serves three things on loopback: the upstream (a static
``return 200``), a plain proxy to it, and the server block of ``docs/gateways.md`` (``auth_request`` to
``python -m tokenversion.forwardauth``, then the same proxy). The forward-auth service keeps its state from
a real provider (gunicorn, SQLite, the HTTP feed); the token is RS256, signed by ``tests/jwks.py``'s issuer
over loopback. wrk (one thread, ``--connections`` connections, closed loop) alternates the two cases for
``--rounds`` rounds of ``--duration`` seconds; each round's median latency is read from wrk's ``--latency``
table, and the figure is the median over rounds of (checked - plain).

Not measured here: nginx calling Keycloak's token introspection (it needs a running Keycloak, under the
machine-wide lock, and a shim that turns introspection's ``{"active": false}`` into a 401).

    .venv/bin/python bench/gateway.py                 # 5 rounds of 5 s, 1 connection (latency)
    .venv/bin/python bench/gateway.py --connections 8 # throughput: the check is one Python process
    .venv/bin/python bench/gateway.py --quick         # 3 rounds of 3 s
"""

from __future__ import annotations

import argparse
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
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.duration = 3, 3.0
    nginx_bin = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin")
    if not nginx_bin or not shutil.which("wrk"):
        raise SystemExit("needs nginx and wrk from Debian's packages: apt-get install -y nginx wrk")

    home = Path(tempfile.mkdtemp(prefix="tv-bench-gateway-"))
    jwks = JWKSServer()
    env = {"DJANGO_SETTINGS_MODULE": "tests.feed_settings", "TOKENVERSION_TEST_DB": "sqlite",
           "TOKENVERSION_TEST_SQLITE": str(home / "provider.sqlite3"), "TOKENVERSION_TEST_ISSUER": jwks.issuer,
           "PYTHONUNBUFFERED": "1"}
    subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env={**os.environ, **env}, check=True)
    provider = WebProcess("provider", "provider.wsgi:application", env).start()
    upstream_port, check_port, plain_port, checked_port = (free_port() for _ in range(4))
    check = Process("forwardauth", [sys.executable, "-m", "tokenversion.forwardauth", "--port", str(check_port),
                                    "--issuer", jwks.issuer, "--audience", "tokenversion-api",
                                    "--feed-url", f"{provider.url}/tokenversion/feed"],
                    {"TOKENVERSION_FEED_SECRET": FEED_SECRET}).start()
    (home / "tmp").mkdir()
    checked = (docs_server_block().replace("127.0.0.1:8000", f"127.0.0.1:{upstream_port}")
               .replace("127.0.0.1:9180", f"127.0.0.1:{check_port}")
               .replace("listen 127.0.0.1:8080", f"listen 127.0.0.1:{checked_port}"))
    temp_paths = "".join(f"{kind}_temp_path {home}/tmp;\n" for kind in ("client_body", "proxy", "fastcgi", "uwsgi",
                                                                           "scgi"))
    (home / "nginx.conf").write_text(
        f"daemon off;\nworker_processes 1;\npid {home}/nginx.pid;\nerror_log {home}/error.log;\nevents {{}}\n"
        f"http {{\naccess_log off;\n{temp_paths}"
        f"server {{ listen 127.0.0.1:{upstream_port}; location / {{ return 200 'ok'; }} }}\n"
        f"server {{ listen 127.0.0.1:{plain_port}; location / {{ proxy_pass http://orders; "
        f"proxy_http_version 1.1; proxy_set_header Connection \"\"; }} }}\n{checked}\n}}\n")
    nginx = Process("nginx", [nginx_bin, "-c", str(home / "nginx.conf"), "-p", str(home)]).start()
    try:
        token = jwks.mint(sub="5b7f0b36-8d0e-4a35-9f49-7a5ad1b0c0ff")
        plain_url, checked_url = f"http://127.0.0.1:{plain_port}/orders", f"http://127.0.0.1:{checked_port}/orders"

        def ok(url: str) -> bool:
            try:
                request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
                with urllib.request.urlopen(request, timeout=2) as response:
                    return response.status == 200
            except OSError:
                return False

        wait_until(lambda: ok(plain_url) and ok(checked_url), 60, interval=0.2, what="nginx and the check")
        wrk_median_ms(checked_url, token, args.connections, 1.0)  # warm-up
        rows: dict[str, list[tuple[float, float]]] = {"nginx alone": [], "nginx + tokenversion check": []}
        for _ in range(args.rounds):
            rows["nginx alone"].append(wrk_median_ms(plain_url, token, args.connections, args.duration))
            rows["nginx + tokenversion check"].append(wrk_median_ms(checked_url, token, args.connections,
                                                                    args.duration))
        print(f"\n{args.rounds} rounds of {args.duration:g} s, wrk -t1 -c{args.connections}, medians over rounds")
        print(f"{'case':<30}{'median latency':>16}{'requests/s':>14}")
        for name, samples in rows.items():
            print(f"{name:<30}{statistics.median(s[0] for s in samples):>13.3f} ms"
                  f"{statistics.median(s[1] for s in samples):>14.0f}")
        added = statistics.median(c[0] - p[0] for p, c in zip(rows["nginx alone"], rows["nginx + tokenversion check"],
                                                              strict=True))
        print(f"\nadded by the check at the median: {added:.3f} ms (target: at most 1 ms)")
        print("nginx + Keycloak introspection: not measured (see the docstring)")
    finally:
        nginx.stop()
        check.stop()
        provider.kill()
        jwks.close()


if __name__ == "__main__":
    sys.exit(run_reported(main, packages=("fastapi", "starlette", "uvicorn")))
