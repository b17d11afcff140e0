"""The service's reporter against the real provider endpoint (``POST /tokenversion/reports`` served by
``live_server``): a DRF service process that accepted a token, then refused it after a logout, shows up on the
provider as enforcing the revocation (with its lag) and as a revoked-token use with its client address.

Service and provider share one process and database here (the database store); the end-to-end test with
Keycloak and separate processes is tests/e2e.
"""

from __future__ import annotations

import io
import os
import time
import uuid

import pytest
from django.core.management import call_command

from tests.test_front_doors import SID, actor
from tokenversion_server import services
from tokenversion_server.enforcement import enforcement
from tokenversion_server.models import RevocationEvent, RevokedTokenUse, ServiceInstance

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.urls("tests.reporting_urls")]


def eventually(condition, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.05)


def test_a_logout_is_enforced_and_the_old_token_s_use_is_a_security_event(client, live_server, jwks_server,
                                                                         tv_settings):
    out = io.StringIO()
    call_command("create_service_key", "orders-api", stdout=out, stderr=io.StringIO())
    tv_settings(REPORT_URL=f"{live_server.url}/tokenversion/reports", REPORT_KEY=out.getvalue().strip(),
                REPORT_INTERVAL=0.2, CACHE_TTL=0)
    sub = str(uuid.uuid4())
    token = jwks_server.mint(sub=sub, sid=SID, jti="jti-9")
    headers = {"HTTP_AUTHORIZATION": f"Bearer {token}", "REMOTE_ADDR": "203.0.113.9", "HTTP_USER_AGENT": "curl/8.0"}
    assert client.get("/drf/whoami", **headers).status_code == 200  # starts this process's reporter
    assert eventually(lambda: ServiceInstance.objects.filter(service="orders-api", pid=os.getpid()).exists())

    services.revoke_user(sub, reason="logout", actor=actor())
    event = RevocationEvent.objects.filter(subject=sub).latest("created_at")
    refused = client.get("/drf/whoami", **headers)
    assert refused.status_code == 401 and refused.json()["code"] == "token_revoked"

    use = eventually(lambda: RevokedTokenUse.objects.filter(subject=sub).first(), timeout=2.0)
    assert use is not None, "the use reached the provider within 2 s"
    assert (use.service, use.client_address, use.user_agent, use.hit, use.session_id, use.jti, use.path) == (
        "orders-api", "203.0.113.9", "curl/8.0", "version", SID, "jti-9", "/drf/whoami")
    assert use.revocation_id == event.pk
    result = eventually(lambda: (e := enforcement(event)).enforcing and e)
    assert result, enforcement(event).summary()
    assert len(result.live) == len(result.enforcing) == 1
    assert result.slowest_ms is not None and 0 <= result.slowest_ms < 2000
    assert result.summary().startswith("enforced by 1 of 1 live service process")


def test_odd_request_values_are_cleaned_so_the_provider_takes_the_report(live_server, jwks_server):
    """Whatever a client sends (control characters, a path too long, a method that is no token, a peer that is
    no IP address), the report stays one the provider takes: the provider refuses a whole report over one bad
    member, and the uses of a refused report are lost."""
    from tokenversion.core.errors import TokenRevoked
    from tokenversion.reporting import Reporter

    out = io.StringIO()
    call_command("create_service_key", "odd-api", stdout=out, stderr=io.StringIO())
    reporter = Reporter(f"{live_server.url}/tokenversion/reports", out.getvalue().strip(), interval=0.2)
    sub = str(uuid.uuid4())
    error = TokenRevoked("token version revoked", hit="version")
    error.claims = {"iss": jwks_server.issuer, "sub": sub, "sid": "s", "jti": 12345, "token_version": True}
    try:
        reporter.revoked_use(error, client_address="testclient", user_agent="evil\x00agent\n\x85" + "x" * 400,
                             method="GET /x", path="/a\x00b\r\n" + "p" * 600)
        use = eventually(lambda: RevokedTokenUse.objects.filter(subject=sub).first(), timeout=5.0)
    finally:
        reporter.close(bound=1.0)
    assert use is not None, f"refused: {reporter.stats}"
    assert (use.client_address, use.method, use.jti, use.token_version) == ("", "", "12345", None)
    assert use.user_agent.startswith("evil?agent??") and len(use.user_agent) == 256
    assert use.path.startswith("/a?b??") and len(use.path) == 512
    assert reporter.stats["uses_refused"] == 0
