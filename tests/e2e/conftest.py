"""End-to-end tests: a real Keycloak with the extension, the provider and the sample service as processes.

Marked ``keycloak``. The ``stack`` fixture starts whatever is missing (Keycloak through scripts/keycloak.sh,
which downloads it from Maven Central once) and fails, never skips, when something cannot start.
"""

from __future__ import annotations

import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from sample_service.stack import Stack, StackConfig, StackError
from sample_service.stack import seconds_until_refused as stack_seconds_until_refused


def pytest_collection_modifyitems(items):
    here = Path(__file__).parent
    for item in items:
        if here in Path(item.fspath).parents:
            item.add_marker(pytest.mark.keycloak)


MEASUREMENTS: list[str] = []


def report(line: str) -> None:
    """A figure printed at the end of the run (e.g. how long after a logout a token was refused)."""
    MEASUREMENTS.append(line)


def pytest_terminal_summary(terminalreporter):
    if MEASUREMENTS:
        terminalreporter.section("end-to-end measurements")
        for line in MEASUREMENTS:
            terminalreporter.write_line(line)


def _database_url() -> str:
    if os.environ.get("TOKENVERSION_TEST_DB") == "postgres":
        host, port = os.environ.get("PGHOST", "127.0.0.1"), os.environ.get("PGPORT", "5432")
        user, password = os.environ.get("PGUSER", "tokenversion"), os.environ.get("PGPASSWORD", "tokenversion")
        return f"postgresql://{user}:{password}@{host}:{port}/tv_e2e"
    return "sqlite:////tmp/tokenversion-e2e/provider.sqlite3"


@pytest.fixture(scope="session")
def stack():
    stack = Stack(StackConfig(database_url=_database_url()))
    try:
        stack.start()
        yield stack
    finally:
        stack.close()


@pytest.fixture(autouse=True)
def _default_keycloak_version(request):
    """Every test on the stack's default Keycloak, except the version matrix (test_versions.py), which switches
    it and leaves it switched: a run that ends with the matrix then does not start Keycloak once more."""
    if "stack" in request.fixturenames and "old_keycloak" not in request.fixturenames:
        stack = request.getfixturevalue("stack")
        if stack.config.keycloak_version != stack.default_keycloak_version:
            stack.switch_keycloak(None)


@dataclass
class Person:
    username: str
    password: str
    subject: str


@pytest.fixture
def person(stack) -> Person:
    """A fresh Keycloak user for one test."""
    username = f"user-{uuid.uuid4().hex[:10]}"
    password = f"pw-{uuid.uuid4().hex}"
    return Person(username, password, stack.ensure_user(username, password))


def call_api(stack, access_token: str) -> requests.Response:
    return requests.get(f"{stack.config.service_url}/api/orders",
                        headers={"Authorization": f"Bearer {access_token}"}, timeout=5)


def seconds_until_refused(stack, access_token: str, within: float = 3.0) -> float:
    """Seconds until the sample service refuses the token on every worker (see ``stack.seconds_until_refused``);
    fails the test when it still accepts it after ``within`` seconds."""
    def status() -> int:
        response = call_api(stack, access_token)
        if response.status_code == 401:
            assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]
        return response.status_code

    try:
        return stack_seconds_until_refused(status, settle=2 * stack.config.service_cache_ttl + 0.1, within=within)
    except StackError as exc:
        pytest.fail(str(exc))


# The version mapper's max staleness in cached mode as keycloak_setup configures it (--max-staleness-ms 2000): a
# bump committed longer ago than this is in every token Keycloak issues (keycloak/README.md).
MAPPER_MAX_STALENESS = 2.0


# The services' TOKENVERSION["LEEWAY"] (the default): tokens issued up to this long after a realm revocation are
# refused too, since Keycloak's clock may run ahead of the provider's (docs/authentication.md).
LEEWAY = 5


def next_second() -> None:
    """Sleep into the next whole second: Keycloak's own not-before counts whole seconds, so a token issued in
    the second of a Keycloak sign-out would survive it."""
    time.sleep(1.05 - (time.time() % 1.0))


def past_the_leeway() -> None:
    """Sleep until a login is accepted again after a revocation made before this call: the realm rule refuses
    every token whose whole-second ``iat`` is at most floor(T + LEEWAY)."""
    time.sleep(LEEWAY + 1.05 - (time.time() % 1.0))
