"""The seed scenario through a gateway: a real Keycloak login, nginx (Debian's) with the forward-auth service
as its ``auth_request`` in front of a plain upstream, then a logout at Keycloak and the same token refused at
the gateway. The forward-auth service shares nothing with the provider but its HTTP feed."""

from __future__ import annotations

import json
import sys
import time

import pytest

from tests.remote_helpers import Process, free_port, wait_until
from tests.test_gateway_nginx import Upstream, get, start_nginx

from .conftest import report


@pytest.fixture(scope="module")
def gateway(stack):
    config = stack.config
    upstream = Upstream()
    check_port, nginx_port = free_port(), free_port()
    check = Process("forwardauth-e2e", [sys.executable, "-m", "tokenversion.forwardauth", "--port", str(check_port),
                                        "--issuer", config.issuer, "--audience", config.audience,
                                        "--feed-url", f"{config.provider_url}/tokenversion/feed"],
                    {"TOKENVERSION_FEED_SECRET": config.feed_secret}).start()
    nginx, _ = start_nginx(upstream.port, check_port, nginx_port)
    try:
        wait_until(lambda: check.running and nginx.running and _answers(f"http://127.0.0.1:{check_port}/-/ready"),
                   30, interval=0.1, what="the forward-auth service and nginx")
        yield f"http://127.0.0.1:{nginx_port}/api/orders"
    finally:
        nginx.stop()
        check.stop()
        upstream.close()


def _answers(url: str) -> bool:
    try:
        return get(url, {})[0] == 200
    except OSError:
        return False


def test_a_keycloak_logout_is_refused_at_the_gateway(stack, person, gateway):
    oidc = stack.openid()
    tokens = oidc.token(person.username, person.password)
    bearer = {"Authorization": f"Bearer {tokens['access_token']}", "X-Auth-Subject": "forged"}
    status, _, body = get(gateway, bearer)
    assert status == 200
    headers = json.loads(body)["headers"]
    assert headers["x-auth-subject"] == person.subject
    assert headers["x-auth-username"] == person.username
    oidc.logout(tokens["refresh_token"])
    logged_out = time.monotonic()
    status, headers, _ = wait_until(lambda: (a := get(gateway, bearer))[0] != 200 and a, 3,
                                    interval=0.01, what="the logout to reach the gateway")
    report(f"gateway (nginx + forward-auth, HTTP feed): refused {(time.monotonic() - logged_out) * 1000:.0f} ms "
           "after Keycloak's logout returned")
    assert status == 401
    assert 'error="invalid_token"' in headers["WWW-Authenticate"]
