"""nginx in front of a plain upstream, with ``python -m tokenversion.forwardauth`` as its ``auth_request``.

All real: nginx from Debian's packages (``scripts/test.sh`` installs it when missing) run as our own process
(``daemon off``, pid, logs and temp files in a temporary directory, loopback ports), the server block of
``docs/gateways.md`` *read from the docs* with the ports changed, the forward-auth service under uvicorn with
its state from a real provider's HTTP feed, signed tokens from ``tests/jwks.py``, and an upstream that knows
nothing of tokens and echoes the headers it was sent (so the test sees what a service behind the gateway sees).
"""

from __future__ import annotations

import json
import re
import shutil
import sys
import tempfile
import threading
import urllib.error
import urllib.request
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from django.db import connection

from tests.feed_settings import FEED_SECRET
from tests.jwks import DROP
from tests.remote_helpers import ROOT, Process, WebProcess, django_env, free_port, wait_until
from tests.report_recorder import ReportRecorder
from tokenversion_server import services

pytestmark = pytest.mark.django_db(transaction=True)

DOC = ROOT / "docs" / "gateways.md"


def nginx_binary() -> str:
    found = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/usr/local/sbin")
    if not found:
        pytest.fail("nginx is missing: `apt-get install nginx-light` (scripts/test.sh installs it)")
    return found


def doc_server_block() -> str:
    text = DOC.read_text()
    start = text.index("### nginx (tested)")
    (block,) = re.findall(r"```nginx\n(.*?)```", text[start:text.index("\n### ", start + 1)], flags=re.S)
    return block


class Upstream:
    """A plain HTTP service: answers every GET with the request headers it got, as JSON."""

    def __init__(self) -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = json.dumps({"path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()}})
                data = body.encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def get(url: str, headers: dict[str, str]) -> tuple[int, Any, bytes]:
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as exc:
        body = exc.read()
        exc.close()
        return exc.code, exc.headers, body


def start_nginx(upstream_port: int, check_port: int, nginx_port: int) -> tuple[Process, Path]:
    """nginx as our own process with the docs' server block (ports changed); its home holds pid, logs, temp."""
    home = Path(tempfile.mkdtemp(prefix="tv-nginx-"))
    (home / "tmp").mkdir()
    server = (doc_server_block().replace("127.0.0.1:8000", f"127.0.0.1:{upstream_port}")
              .replace("127.0.0.1:9180", f"127.0.0.1:{check_port}")
              .replace("listen 127.0.0.1:8080", f"listen 127.0.0.1:{nginx_port}"))
    temp_paths = "".join(f"{kind}_temp_path {home}/tmp;\n" for kind in
                         ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    (home / "nginx.conf").write_text(f"daemon off;\npid {home}/nginx.pid;\nerror_log {home}/error.log;\n"
                                     f"events {{}}\nhttp {{\naccess_log off;\n{temp_paths}{server}\n}}\n")
    return Process("nginx", [nginx_binary(), "-c", str(home / "nginx.conf"), "-p", str(home)]).start(), home


REPORT_KEY = "tvs_gateway-test-key"


@pytest.fixture(scope="module")
def recorder():
    """Where the forward-auth service sends its service reports (a loopback recording server)."""
    server = ReportRecorder(REPORT_KEY)
    yield server
    server.stop()


# Per test: each test's teardown empties the tables (transaction=True), which a running provider sees as a
# restored database; a gateway per test keeps that out of the next test (a pause racing the re-sync).
@pytest.fixture
def gateway(django_db_setup, django_db_blocker, jwks_server, recorder):
    """The provider, the forward-auth service, the upstream and nginx; yields nginx's URL and the provider."""
    with django_db_blocker.unblock():
        db_name = connection.settings_dict["NAME"]
    provider = WebProcess("provider", "provider.wsgi:application",
                          django_env("tests.feed_settings", db_name, jwks_server.issuer)).start()
    upstream = Upstream()
    check_port, nginx_port = free_port(), free_port()
    check = Process("forwardauth", [sys.executable, "-m", "tokenversion.forwardauth", "--port", str(check_port),
                                    "--issuer", jwks_server.issuer, "--audience", "tokenversion-api",
                                    "--feed-url", f"{provider.url}/tokenversion/feed", "--max-staleness", "1"],
                    {"TOKENVERSION_FEED_SECRET": FEED_SECRET, "TOKENVERSION_REPORT_URL": recorder.url,
                     "TOKENVERSION_REPORT_KEY": REPORT_KEY, "TOKENVERSION_REPORT_INTERVAL": "0.2"}).start()
    nginx, home = start_nginx(upstream.port, check_port, nginx_port)
    url = f"http://127.0.0.1:{nginx_port}/orders?x=1"

    def serving() -> bool:
        for process in (check, nginx):
            if not process.running:
                raise AssertionError(f"{process.name} exited:\n{process.output()}")
        try:
            return get(url, {})[0] == 401  # nginx up, and the check answering
        except OSError:
            return False

    try:
        wait_until(serving, 30, interval=0.1, what="nginx and the forward-auth service")
        wait_until(lambda: get(f"http://127.0.0.1:{check_port}/-/ready", {})[0] == 200, 10,
                   what="the forward-auth service's first snapshot")
        yield url, provider
    finally:
        nginx.stop()
        check.stop()
        upstream.close()
        provider.kill()
        print((home / "error.log").read_text()[-2000:] if (home / "error.log").exists() else "")


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_a_valid_token_reaches_the_upstream_with_the_identity_and_no_forged_headers(gateway, jwks_server):
    url, _ = gateway
    subject = str(uuid.uuid4())
    token = jwks_server.mint(sub=subject, preferred_username="dana, admin", sid=DROP,
                             realm_access={"roles": ["orders:read", "staff"]})
    status, _, body = get(url, {**bearer(token), "X-Auth-Subject": "someone-else", "X-Auth-Roles": "admin",
                                "X-Auth-Session": "forged"})
    assert status == 200
    seen = json.loads(body)
    assert seen["path"] == "/orders?x=1"
    headers = seen["headers"]
    assert headers["x-auth-subject"] == subject
    assert headers["x-auth-username"] == "dana%2C%20admin"  # percent-encoded: a comma never splits it
    assert headers["x-auth-roles"] == "orders%3Aread,staff"
    assert "x-auth-session" not in headers  # the token has no sid: the client's own value is gone too
    with_sid = jwks_server.mint(sub=subject, sid="c1d2e3f4-0000-4000-8000-00000000abcd")
    seen = json.loads(get(url, {**bearer(with_sid), "X-Auth-Session": "forged"})[2])["headers"]
    assert seen["x-auth-session"] == "c1d2e3f4-0000-4000-8000-00000000abcd"


def test_a_revoked_token_is_refused_at_the_gateway(gateway, jwks_server):
    url, _ = gateway
    subject = str(uuid.uuid4())
    token = jwks_server.mint(sub=subject)
    assert get(url, bearer(token))[0] == 200
    services.revoke_user(subject, reason="logout", actor=services.Actor.system("gateway test"))
    status, headers, _ = wait_until(lambda: (a := get(url, bearer(token)))[0] != 200 and a, 5,
                                    what="the revocation to reach the gateway")
    assert status == 401
    assert headers["WWW-Authenticate"] == ('Bearer realm="api", error="invalid_token", '
                                           'error_description="token version revoked"')


def test_no_token_and_a_malformed_header(gateway):
    url, _ = gateway
    status, headers, _ = get(url, {})
    assert (status, headers["WWW-Authenticate"]) == (401, 'Bearer realm="api"')
    status, headers, _ = get(url, {"Authorization": "Bearer"})
    assert status == 400


def test_the_gateway_answers_503_while_the_feed_cannot_prove_freshness(gateway, jwks_server):
    url, provider = gateway
    token = jwks_server.mint(sub=str(uuid.uuid4()))
    assert get(url, bearer(token))[0] == 200
    provider.pause()  # the provider hangs: the forward-auth service's map goes stale
    try:
        status, headers, _ = wait_until(lambda: (a := get(url, bearer(token)))[0] != 200 and a, 10,
                                        what="the stale map to be refused")
        assert (status, headers["Retry-After"]) == (503, "1")
    finally:
        provider.resume()
    wait_until(lambda: get(url, bearer(token))[0] == 200, 15, what="the service to recover")


def assert_use_reported_as_the_gateway_saw_it(gateway, jwks_server, recorder, name: str) -> None:
    """The check reports the refusal with the gateway's view of the request (docs/gateways.md): the client's
    address as the gateway saw it (a client's own X-Forwarded-For does not count), its method, URI and user
    agent. Shared by the nginx and Caddy tests."""
    url, _ = gateway
    subject = str(uuid.uuid4())
    token = jwks_server.mint(sub=subject)
    services.revoke_user(subject, reason="logout", actor=services.Actor.system(f"{name} report test"))
    forged = {**bearer(token), "X-Forwarded-For": "6.6.6.6", "User-Agent": "stolen-token/1.0"}
    wait_until(lambda: get(url, forged)[0] == 401, 5, what="the revocation to reach the gateway")
    assert recorder.wait_for(lambda r: any(u["sub"] == subject for u in r.uses()), timeout=5)
    use = next(u for u in recorder.uses() if u["sub"] == subject)
    assert (use["client_address"], use["method"], use["path"], use["user_agent"], use["hit"]) == (
        "127.0.0.1", "GET", "/orders?x=1", "stolen-token/1.0", "version")


def test_a_revoked_token_s_use_is_reported_with_the_client_the_gateway_saw(gateway, jwks_server, recorder):
    assert_use_reported_as_the_gateway_saw_it(gateway, jwks_server, recorder, "nginx")
