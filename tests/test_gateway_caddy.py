"""Caddy (Debian's) in front of a plain upstream, with ``python -m tokenversion.forwardauth`` as its
``forward_auth``: the site block of ``docs/gateways.md`` *read from the docs*, ports changed, run as our own
process (admin endpoint off, storage in a temporary directory). The provider, the forward-auth service and
the upstream are those of tests/test_gateway_nginx.py."""

from __future__ import annotations

import json
import re
import shutil
import sys
import tempfile
import uuid
from pathlib import Path

import pytest
from django.db import connection

from tests.feed_settings import FEED_SECRET
from tests.jwks import DROP
from tests.remote_helpers import ROOT, Process, WebProcess, django_env, free_port, wait_until
from tests.report_recorder import ReportRecorder
from tests.test_gateway_nginx import Upstream, assert_use_reported_as_the_gateway_saw_it, bearer, get
from tokenversion_server import services

pytestmark = pytest.mark.django_db(transaction=True)


def caddy_binary() -> str:
    found = shutil.which("caddy")
    if not found:
        pytest.fail("caddy is missing: `apt-get install caddy` (scripts/test.sh installs it)")
    return found


def doc_site_block() -> str:
    text = (ROOT / "docs" / "gateways.md").read_text()
    start = text.index("### Caddy forward_auth (tested)")
    (block,) = re.findall(r"```caddyfile\n(.*?)```", text[start:text.index("\n### ", start + 1)], flags=re.S)
    return block


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
    with django_db_blocker.unblock():
        db_name = connection.settings_dict["NAME"]
    provider = WebProcess("provider", "provider.wsgi:application",
                          django_env("tests.feed_settings", db_name, jwks_server.issuer)).start()
    upstream = Upstream()
    check_port, caddy_port = free_port(), free_port()
    check = Process("forwardauth", [sys.executable, "-m", "tokenversion.forwardauth", "--port", str(check_port),
                                    "--issuer", jwks_server.issuer, "--audience", "tokenversion-api",
                                    "--feed-url", f"{provider.url}/tokenversion/feed", "--max-staleness", "1"],
                    {"TOKENVERSION_FEED_SECRET": FEED_SECRET, "TOKENVERSION_REPORT_URL": recorder.url,
                     "TOKENVERSION_REPORT_KEY": REPORT_KEY, "TOKENVERSION_REPORT_INTERVAL": "0.2"}).start()
    home = Path(tempfile.mkdtemp(prefix="tv-caddy-"))
    site = (doc_site_block().replace("127.0.0.1:8000", f"127.0.0.1:{upstream.port}")
            .replace("127.0.0.1:9180", f"127.0.0.1:{check_port}")
            .replace("http://127.0.0.1:8080", f"http://127.0.0.1:{caddy_port}"))
    (home / "Caddyfile").write_text(f"{{\n\tadmin off\n\tauto_https off\n"
                                    f"\tstorage file_system {home}/data\n}}\n\n{site}")
    caddy = Process("caddy", [caddy_binary(), "run", "--config", str(home / "Caddyfile"), "--adapter", "caddyfile"],
                    {"HOME": str(home), "XDG_DATA_HOME": str(home / "data"), "XDG_CONFIG_HOME": str(home / "config")})
    caddy.start()
    url = f"http://127.0.0.1:{caddy_port}/orders?x=1"

    def serving() -> bool:
        for process in (check, caddy):
            if not process.running:
                raise AssertionError(f"{process.name} exited:\n{process.output()}")
        try:
            return get(url, {})[0] == 401
        except OSError:
            return False

    try:
        wait_until(serving, 30, interval=0.1, what="caddy and the forward-auth service")
        wait_until(lambda: get(f"http://127.0.0.1:{check_port}/-/ready", {})[0] == 200, 10,
                   what="the forward-auth service's first snapshot")
        yield url, provider
    finally:
        caddy.stop()
        check.stop()
        upstream.close()
        provider.kill()


def test_a_valid_token_reaches_the_upstream_with_the_identity_and_no_forged_headers(gateway, jwks_server):
    url, _ = gateway
    subject = str(uuid.uuid4())
    token = jwks_server.mint(sub=subject, preferred_username="erin", sid=DROP, realm_access={"roles": ["staff"]})
    status, _, body = get(url, {**bearer(token), "X-Auth-Subject": "someone-else", "X-Auth-Session": "forged"})
    assert status == 200
    headers = json.loads(body)["headers"]
    assert (headers["x-auth-subject"], headers["x-auth-username"], headers["x-auth-roles"]) == (subject, "erin",
                                                                                                 "staff")
    assert headers["x-auth-session"] == ""  # the token has no sid: empty, and the client's own value is gone


def test_a_revoked_token_is_refused_with_the_checks_own_answer(gateway, jwks_server):
    url, _ = gateway
    subject = str(uuid.uuid4())
    token = jwks_server.mint(sub=subject)
    assert get(url, bearer(token))[0] == 200
    services.revoke_user(subject, reason="logout", actor=services.Actor.system("caddy test"))
    status, headers, body = wait_until(lambda: (a := get(url, bearer(token)))[0] != 200 and a, 5,
                                       what="the revocation to reach the gateway")
    assert (status, json.loads(body)["code"]) == (401, "token_revoked")
    assert headers["WWW-Authenticate"] == ('Bearer realm="api", error="invalid_token", '
                                           'error_description="token version revoked"')


def test_the_gateway_answers_503_while_the_feed_cannot_prove_freshness(gateway, jwks_server):
    url, provider = gateway
    token = jwks_server.mint(sub=str(uuid.uuid4()))
    assert get(url, bearer(token))[0] == 200
    provider.pause()
    try:
        status, headers, body = wait_until(lambda: (a := get(url, bearer(token)))[0] != 200 and a, 10,
                                           what="the stale map to be refused")
        assert (status, headers["Retry-After"], json.loads(body)["code"]) == (503, "1", "revocation_store_unavailable")
    finally:
        provider.resume()
    wait_until(lambda: get(url, bearer(token))[0] == 200, 15, what="the service to recover")


def test_a_revoked_token_s_use_is_reported_with_the_client_the_gateway_saw(gateway, jwks_server, recorder):
    assert_use_reported_as_the_gateway_saw_it(gateway, jwks_server, recorder, "caddy")
