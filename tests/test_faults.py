"""Faults injected into real processes: the database cut under a running service, a read-only database under
the provider, and Keycloak down while the provider starts. (JWKS outages: tests/test_authentication.py; the
provider down while Keycloak issues tokens: tests/e2e/test_provider_down.py; Redis: tests of the remote stores.)
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
import requests
from django.db import connection

from sample_service.stack import Process, gunicorn
from tests.conftest import MAPPER_SECRET
from tests.faultproxy import FaultProxy
from tests.remote_helpers import free_port
from tokenversion_server import services

SUB = "0d3c2b1a-0000-4000-8000-00000000fa17"
ROOT = Path(__file__).resolve().parent.parent


def poll(call, until, timeout: float = 5.0, interval: float = 0.02) -> list:
    """Call until ``until(result)`` holds; returns every result seen (the test checks none was wrong)."""
    seen = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        seen.append(call())
        if until(seen[-1]):
            return seen
        time.sleep(interval)
    pytest.fail(f"condition not reached in {timeout} s; last results: {seen[-5:]}")


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_service_refuses_with_503_while_its_database_is_cut_and_recovers_without_restart(jwks_server, tmp_path):
    if connection.vendor != "postgresql":
        pytest.fail("run with TOKENVERSION_TEST_DB=postgres (scripts/test.sh does)")
    db = connection.settings_dict
    proxy = FaultProxy(db["HOST"], int(db["PORT"]))
    port = free_port()
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "sample_service.settings",
        "SAMPLE_STORE": "db",
        "DATABASE_URL": f"postgresql://{db['USER']}:{db['PASSWORD']}@127.0.0.1:{proxy.port}/{db['NAME']}",
        "TOKENVERSION_ISSUER": jwks_server.issuer,
        "TOKENVERSION_CACHE_TTL": "0.25",
    }
    service = Process("service", gunicorn("sample_service.wsgi", port, workers=2), env, tmp_path / "service.log")
    token = jwks_server.mint(sub=SUB, token_version=0)

    def call() -> tuple[int, str]:
        response = requests.get(f"http://127.0.0.1:{port}/api/orders", timeout=10,
                                headers={"Authorization": f"Bearer {token}"})
        return response.status_code, response.headers.get("Retry-After", "")

    try:
        service.wait_http(f"http://127.0.0.1:{port}/health")
        assert call()[0] == 200

        proxy.cut()
        outage = poll(call, lambda r: r[0] == 503)
        assert outage[-1] == (503, "1")
        time.sleep(0.6)  # longer than every worker's cache: from now on nothing may be served from memory
        assert all(call() == (503, "1") for _ in range(10))

        # Revoked while the service cannot see the database: it must never accept the token again.
        services.revoke_user(SUB, reason="compromise", actor=services.Actor.system("fault test"))
        proxy.restore()
        after = poll(call, lambda r: r[0] == 401, timeout=10)
        assert all(status in (503, 401) for status, _ in after), after
        assert all(call()[0] == 401 for _ in range(10))  # recovered, no restart, revocation in force
        assert service.alive()
    finally:
        service.stop()
        proxy.close()


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_read_only_database_gives_503_and_writes_nothing(api, jwks_server, tv_settings):
    """A primary failed over to a read-only replica: the provider's writes fail cleanly, reads keep working."""
    if connection.vendor != "postgresql":
        pytest.fail("run with TOKENVERSION_TEST_DB=postgres (scripts/test.sh does)")
    from accounts.models import KeycloakUser
    from tokenversion_server.models import RevocationEvent, SubjectVersion

    services.revoke_user(SUB, reason="admin", actor=services.Actor.system("setup"))
    with connection.cursor() as cursor:
        cursor.execute("SET default_transaction_read_only = on")
    try:
        claims = api.post("/tokenversion/claims", {"sub": SUB}, format="json",
                          headers={"X-TokenVersion-Secret": MAPPER_SECRET})
        # A user the provider has not seen yet must be written: the mapper gets a 503 and uses its fallback.
        assert claims.status_code == 503 and claims.json()["error"] == "unavailable", claims.content
        tv_settings(CACHE_TTL=0)
        token = jwks_server.mint(sub=SUB, token_version=1)
        assert api.get("/api/whoami", headers={"Authorization": f"Bearer {token}"}).status_code == 200
        with pytest.raises(Exception) as failed:
            services.revoke_user(SUB, reason="admin", actor=services.Actor.system("read-only"))
        assert "read-only" in str(failed.value)
    finally:
        with connection.cursor() as cursor:
            cursor.execute("SET default_transaction_read_only = off")
    assert SubjectVersion.objects.get(subject=SUB).token_version == 1
    assert RevocationEvent.objects.count() == 1
    assert not KeycloakUser.objects.exists()


def test_provider_starts_and_serves_while_keycloak_is_down(jwks_server, tmp_path):
    """Nothing at start-up calls Keycloak: the provider serves its machine endpoints; APIs answer 503."""
    port = free_port()
    database = tmp_path / "provider.sqlite3"
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "provider.settings",
        "DJANGO_DEBUG": "0",
        "DJANGO_SECRET_KEY": "fault-test-" + "k" * 50,
        "DJANGO_SSL_REDIRECT": "0",  # plain HTTP on loopback
        "DATABASE_URL": f"sqlite:///{database}",
        "TOKENVERSION_ISSUER": f"http://127.0.0.1:{free_port()}/realms/down",  # nothing listens there
        "TOKENVERSION_MAPPER_SECRETS": MAPPER_SECRET,
        "TOKENVERSION_EVENT_SECRETS": "event-secret-for-the-fault-test-0123456789",
    }
    import subprocess
    import sys

    subprocess.run([sys.executable, "manage.py", "migrate", "-v", "0"], cwd=ROOT, env=env, check=True, timeout=120)
    provider = Process("provider", gunicorn("provider.wsgi", port, workers=1), env, tmp_path / "provider.log")
    base = f"http://127.0.0.1:{port}"
    try:
        provider.wait_http(f"{base}/health")
        claims = requests.post(f"{base}/tokenversion/claims", json={"sub": SUB}, timeout=5,
                               headers={"X-TokenVersion-Secret": MAPPER_SECRET})
        assert claims.status_code == 200 and claims.json()["token_version"] == 0
        assert requests.get(f"{base}/admin/login/", timeout=5).status_code == 200
        # A well-formed token of that issuer: its keys cannot be fetched, so the provider's API refuses with 503.
        token = jwks_server.mint(iss=env["TOKENVERSION_ISSUER"], sub=SUB)
        api = requests.get(f"{base}/api/whoami", headers={"Authorization": f"Bearer {token}"}, timeout=10)
        assert api.status_code == 503 and api.headers["Retry-After"] == "1"
    finally:
        provider.stop()
