"""Races on PostgreSQL between processes: concurrent bumps, and tokens issued while a bump commits."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from django.db import connection, connections
from django.test import Client

from tests.conftest import MAPPER_SECRET
from tokenversion_server import services
from tokenversion_server.models import RevocationEvent, SubjectVersion

ROOT = Path(__file__).resolve().parent.parent
SHARED = "0d3c2b1a-0000-4000-8000-0000000a11ce"
pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

BUMPER = """
import os, sys, time
import django
django.setup()
from tokenversion_server import services
start_at, worker, bumps, shared = float(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
time.sleep(max(0.0, start_at - time.time()))  # every process starts bumping at the same instant
for i in range(bumps):
    subject = shared if i % 2 == 0 else f"own-{worker}"
    services.revoke_user(subject, reason="compromise", actor=services.Actor.cli(f"race-{worker}"))
"""


def test_processes_bumping_the_same_and_different_users_lose_nothing():
    assert connection.vendor == "postgresql", "run with TOKENVERSION_TEST_DB=postgres (scripts/test.sh does)"
    processes, bumps = 6, 40
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings",
           "TOKENVERSION_TEST_PG_NAME": connection.settings_dict["NAME"]}
    start_at = time.time() + 4.0  # time for every interpreter to import Django
    children = [subprocess.Popen([sys.executable, "-c", BUMPER, str(start_at), str(n), str(bumps), SHARED],
                                 cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True) for n in range(processes)]
    for child in children:
        _, err = child.communicate(timeout=120)
        assert child.returncode == 0, err

    shared = processes * bumps // 2
    assert SubjectVersion.objects.get(subject=SHARED).token_version == shared
    for n in range(processes):
        assert SubjectVersion.objects.get(subject=f"own-{n}").token_version == bumps // 2
    audit = RevocationEvent.objects.filter(subject=SHARED).order_by("new_version")
    assert [(a.old_version, a.new_version) for a in audit] == [(v - 1, v) for v in range(1, shared + 1)]
    assert {a.actor for a in audit} == {f"race-{n}" for n in range(processes)}  # they really interleaved
    assert RevocationEvent.objects.count() == processes * bumps


def test_no_token_with_an_old_version_is_accepted_once_the_bump_has_committed(jwks_server, tv_settings):
    """Keycloak asks for the version (claims endpoint) while bumps commit; every token is minted with what
    the endpoint answered. Once a bump has returned, a token with a lower version must be refused, whenever
    that token was issued."""
    from rest_framework.test import APIClient

    tv_settings(CACHE_TTL=0)
    stop = threading.Event()
    issued: dict[int, str] = {}  # version -> the latest token minted with it (same version, same verdict)
    failures: list[str] = []

    def keycloak_issuing() -> None:
        client = Client()
        try:
            while not stop.is_set():
                answer = client.post("/tokenversion/claims", {"sub": SHARED}, content_type="application/json",
                                     headers={"X-TokenVersion-Secret": MAPPER_SECRET})
                if answer.status_code != 200:
                    failures.append(f"claims answered {answer.status_code}")
                    continue
                version = answer.json()["token_version"]
                issued[version] = jwks_server.mint(sub=SHARED, token_version=version)
        finally:
            connections.close_all()

    def check(token: str) -> int:
        return APIClient().get("/api/whoami", headers={"Authorization": f"Bearer {token}"}).status_code

    issuers = [threading.Thread(target=keycloak_issuing) for _ in range(3)]
    for thread in issuers:
        thread.start()
    try:
        for _ in range(15):
            time.sleep(0.05)
            committed = services.revoke_user(SHARED, reason="logout", actor=services.Actor.system("race")).new_version
            # Everything issued so far, including tokens minted from an answer read just before this commit:
            for version, token in list(issued.items()):
                status = check(token)
                if version < committed and status != 401:
                    failures.append(f"version {version} accepted after bump to {committed}: {status}")
    finally:
        stop.set()
        for thread in issuers:
            thread.join()
    final = SubjectVersion.objects.get(subject=SHARED).token_version
    assert final == 15
    assert not failures, failures[:5]
    assert len(issued) > 5  # tokens really were issued across many versions
    answer = Client().post("/tokenversion/claims", {"sub": SHARED}, content_type="application/json",
                           headers={"X-TokenVersion-Secret": MAPPER_SECRET})
    assert answer.json()["token_version"] == final
    assert check(jwks_server.mint(sub=SHARED, token_version=final)) == 200
