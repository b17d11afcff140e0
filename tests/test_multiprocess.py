"""A revocation made by another process (the CLI, here) reaches this one within the documented bound."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.db import connection

from tokenversion_server import services

SUB = "5b7f0b36-8d0e-4a35-9f49-7a5ad1b0c001"
ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.django_db(transaction=True)


def revoke_in_another_process(issuer: str, subject: str) -> float:
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "TOKENVERSION_TEST_ISSUER": issuer,
        # the database this test process is using (pytest-django's test database)
        "TOKENVERSION_TEST_SQLITE": connection.settings_dict["NAME"],
        "TOKENVERSION_TEST_PG_NAME": connection.settings_dict["NAME"],
    }
    result = subprocess.run(
        [sys.executable, "manage.py", "revoke", subject, "--reason", "compromise"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "version 0 -> 1" in result.stdout
    return time.monotonic()


def test_cli_bump_in_another_process_bites_within_cache_ttl(api, jwks_server, tv_settings):
    tv_settings(CACHE_TTL=1.0)
    services.current_version(SUB)
    token = jwks_server.mint(token_version=0)
    auth = {"HTTP_AUTHORIZATION": f"Bearer {token}"}
    assert api.get("/api/whoami", **auth).status_code == 200  # the state is now cached here

    committed = revoke_in_another_process(jwks_server.issuer, SUB)
    while api.get("/api/whoami", **auth).status_code == 200:
        assert time.monotonic() - committed < 1.0 + 0.2, "still accepted past CACHE_TTL"
        time.sleep(0.02)
    response = api.get("/api/whoami", **auth)
    assert response.status_code == 401 and response.json()["code"] == "token_revoked"
    seen_after = time.monotonic() - committed
    print(f"refused {seen_after * 1000:.0f} ms after the other process's commit (bound: 1000 ms)")
    assert api.get("/api/whoami", HTTP_AUTHORIZATION=f"Bearer {jwks_server.mint(token_version=1)}").status_code == 200
