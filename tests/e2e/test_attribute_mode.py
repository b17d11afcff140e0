"""Attribute mode on the real Keycloak (issue 12 item 1; docs/keycloak.md#attribute-mode).

The realm is switched to attribute mode for this module (``keycloak_setup --attribute-mode``, the provider with
``ATTRIBUTE_SYNC`` on, the ``tokenversion_attribute_sync`` worker running) and back to the extension's mapper
after it, so the other modules keep their direct-call mapper.
"""

from __future__ import annotations

import statistics
import time
import uuid

import pytest
import requests

from tests.faultproxy import FaultProxy

from .conftest import call_api, report, seconds_until_refused
from .test_keycloak_edge_cases import claims_of, make_client

ATTRIBUTE = "token_version"
SCAN_INTERVAL = 2  # the worker's scan for users without the attribute, shortened for the tests


def set_attribute_env(stack, on: bool) -> None:
    env = {"TOKENVERSION_ATTRIBUTE_SYNC": "1", "TOKENVERSION_ATTRIBUTE_SCAN_INTERVAL": str(SCAN_INTERVAL)}
    for key, value in env.items():
        if on:
            stack.config.extra_provider_env[key] = value
        else:
            stack.config.extra_provider_env.pop(key, None)


@pytest.fixture(scope="module")
def attribute_mode(stack):
    set_attribute_env(stack, True)
    try:
        stack.stop_provider()
        stack.start_provider()  # bumps now queue their attribute write
        stack.setup_output = stack.keycloak_setup("--attribute-mode")
        stack.start_attribute_sync()
        yield stack
    finally:
        stack.stop_attribute_sync()
        set_attribute_env(stack, False)
        stack.stop_provider()
        stack.start_provider()
        stack.keycloak_setup()  # back to the extension's mapper for the other modules
        stack.warm_up()


def attribute(stack, subject: str, admin=None) -> list[str] | None:
    admin = admin or stack.keycloak_admin()
    return (admin.get_user(subject).get("attributes") or {}).get(ATTRIBUTE)


def wait_for_attribute(stack, subject: str, value: int, within: float) -> float:
    """Seconds until Keycloak holds ``value`` in the user's attribute; fails the test after ``within``."""
    admin = stack.keycloak_admin()  # one login: each poll is one GET
    start = time.monotonic()
    while True:
        if attribute(stack, subject, admin) == [str(value)]:
            return time.monotonic() - start
        if time.monotonic() - start > within:
            pytest.fail(f"attribute of {subject} is {attribute(stack, subject)}, not [{value!r}], after {within} s")
        time.sleep(0.01)


def worker_latencies(stack, subject: str) -> list[float]:
    """What the worker logged for ``subject``: milliseconds from the bump's queued row to Keycloak's answer."""
    lines = stack.attribute_sync.log_path.read_text(errors="replace").splitlines()
    return [float(line.split(", ")[-1].split(" ms")[0]) for line in lines
            if f"attribute sync: {subject} now holds v" in line]


def bump(stack, subject: str) -> str:
    return stack.manage("revoke", subject, "--reason", "compromise").stdout


def status(stack) -> str:
    return stack.manage("tokenversion_attribute_sync", "--status").stdout.strip()


def test_keycloak_setup_configures_attribute_mode_idempotently(attribute_mode):
    stack = attribute_mode
    assert "declare user attribute token_version in the user profile (admin-only)" in stack.setup_output
    assert "remove mapper 'token version' from client scope tokenversion" in stack.setup_output
    admin = stack.keycloak_admin()
    scope = admin.get_client_scope_by_name("tokenversion")["id"]
    mappers = {m["name"]: m for m in admin.get_mappers_from_client_scope(scope)}
    assert "token version" not in mappers  # no Java in the token path
    mapper = mappers["token version (user attribute)"]
    assert mapper["protocolMapper"] == "oidc-usermodel-attribute-mapper"
    assert mapper["config"]["lightweight.claim"] == "true"
    assert mapper["config"]["jsonType.label"] == "long"
    declared = {a["name"]: a for a in admin.get_realm_users_profile()["attributes"]}
    assert declared[ATTRIBUTE]["permissions"] == {"view": ["admin"], "edit": ["admin"]}

    deadline = time.monotonic() + 30
    while status(stack) != "attribute outbox: 0 pending":  # the backfill of existing users lands
        assert time.monotonic() < deadline, status(stack)
        time.sleep(0.2)
    again = stack.keycloak_setup("--attribute-mode")
    assert again.strip().startswith("No change"), again


def test_a_new_user_gets_the_initial_version_and_a_bump_lands_in_the_next_token(attribute_mode, person):
    """A user the provider never saw gets version 0 written by the worker's scan; each bump reaches the attribute
    within the propagation bound, printed at the end of the run, and the next token carries it."""
    stack = attribute_mode
    wait_for_attribute(stack, person.subject, 0, within=SCAN_INTERVAL + 10)
    tokens = stack.openid().token(person.username, person.password)
    assert claims_of(tokens["access_token"])["token_version"] == 0
    assert call_api(stack, tokens["access_token"]).status_code == 200

    bounds = []
    for version in range(1, 6):
        assert f"version {version - 1} -> {version}" in bump(stack, person.subject)
        (committed,) = stack.sql("SELECT created_at FROM tokenversion_server_revocationevent WHERE subject = %s "
                                 "AND new_version = %s", person.subject, version)[0]
        wait_for_attribute(stack, person.subject, version, within=10)
        landed = time.time()
        committed_at = committed.timestamp() if hasattr(committed, "timestamp") else _parse(committed)
        bounds.append(landed - committed_at)
    worker = worker_latencies(stack, person.subject)[-5:]
    assert len(worker) == 5
    report(f"attribute mode: bump commit -> attribute seen in Keycloak's admin API by the test: median "
           f"{statistics.median(bounds) * 1000:.0f} ms, max {max(bounds) * 1000:.0f} ms over {len(bounds)} bumps; "
           f"the worker's own figure (queued row -> Keycloak's PUT answered): median {statistics.median(worker):.0f}"
           f" ms, max {max(worker):.0f} ms (worker interval 0.1 s)")
    assert max(bounds) < 2.0  # generous: the issue names no figure; docs/keycloak.md has the measured one

    seconds_until_refused(stack, tokens["access_token"])
    refreshed = stack.openid().refresh_token(tokens["refresh_token"])
    assert claims_of(refreshed["access_token"])["token_version"] == 5
    assert call_api(stack, refreshed["access_token"]).status_code == 200


def _parse(text: str) -> float:
    from datetime import UTC, datetime

    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


def test_keycloak_unreachable_the_backlog_shows_then_drains(attribute_mode, person):
    stack = attribute_mode
    proxy = FaultProxy("127.0.0.1", stack.config.keycloak_port)
    try:
        stack.start_attribute_sync(KEYCLOAK_URL=f"http://127.0.0.1:{proxy.port}")
        wait_for_attribute(stack, person.subject, 0, within=SCAN_INTERVAL + 10)
        proxy.cut()
        assert "version 0 -> 1" in bump(stack, person.subject)
        deadline = time.monotonic() + 20
        while "1 failing" not in (line := status(stack)):
            assert time.monotonic() < deadline, line
            time.sleep(0.2)
        assert line.startswith("attribute outbox: 1 pending, 1 failing, oldest ")
        assert "failed" in line.split("last error: ", 1)[1]
        # Meanwhile Keycloak issues the old version, which services refuse (safe; a lockout until it lands)
        stale = stack.openid().token(person.username, person.password)
        assert claims_of(stale["access_token"])["token_version"] == 0
        assert call_api(stack, stale["access_token"]).status_code == 401
        time.sleep(3)
        proxy.restore()
        waited = wait_for_attribute(stack, person.subject, 1, within=40)
        report(f"attribute mode: after Keycloak's admin API came back, the pending write landed in {waited:.1f} s "
               f"(worker backoff)")
        assert status(stack) == "attribute outbox: 0 pending"
        fresh = stack.openid().token(person.username, person.password)
        assert claims_of(fresh["access_token"])["token_version"] == 1
        assert call_api(stack, fresh["access_token"]).status_code == 200
    finally:
        proxy.close()
        stack.start_attribute_sync()


def test_a_user_cannot_change_their_own_version_through_the_account_api(attribute_mode, person):
    stack = attribute_mode
    wait_for_attribute(stack, person.subject, 0, within=SCAN_INTERVAL + 10)
    tokens = stack.openid().token(person.username, person.password)
    headers = {"Authorization": f"Bearer {tokens['access_token']}", "Accept": "application/json"}
    account = f"{stack.config.issuer}/account"
    me = requests.get(account, headers=headers, timeout=10)
    assert me.status_code == 200, me.text
    assert ATTRIBUTE not in (me.json().get("attributes") or {})  # not even visible to the user
    body = {**me.json(), "attributes": {**(me.json().get("attributes") or {}), ATTRIBUTE: ["999"]}}
    attempt = requests.post(account, json=body, headers=headers, timeout=10)
    report(f"attribute mode: the account API's answer to a user writing {ATTRIBUTE}: {attempt.status_code} "
           f"{attempt.text[:120]}")
    assert attempt.status_code == 400, attempt.text
    assert attribute(stack, person.subject) == ["0"]
    again = stack.openid().token(person.username, person.password)
    assert claims_of(again["access_token"])["token_version"] == 0


def test_lightweight_access_tokens_carry_the_version(attribute_mode, person):
    stack = attribute_mode
    wait_for_attribute(stack, person.subject, 0, within=SCAN_INTERVAL + 10)
    bump(stack, person.subject)
    wait_for_attribute(stack, person.subject, 1, within=10)
    client = f"lightweight-{uuid.uuid4().hex[:8]}"
    make_client(stack, client, publicClient=True, directAccessGrantsEnabled=True,
                attributes={"client.use.lightweight.access.token.enabled": "true"})
    tokens = stack.openid(client).token(person.username, person.password)
    claims = claims_of(tokens["access_token"])
    assert "preferred_username" not in claims  # it is a lightweight token
    assert (claims["token_version"], claims["sub"]) == (1, person.subject)
    assert call_api(stack, tokens["access_token"]).status_code == 200


def test_the_provider_stopped_logins_still_carry_the_right_version(attribute_mode, person):
    """Keycloak never calls the provider in this mode: with the provider down, password and refresh grants carry
    the version of the last bump, and the service (its store still fresh) accepts them."""
    stack = attribute_mode
    wait_for_attribute(stack, person.subject, 0, within=SCAN_INTERVAL + 10)
    bump(stack, person.subject)
    wait_for_attribute(stack, person.subject, 1, within=10)
    stack.stop_provider()
    try:
        started = time.perf_counter()
        tokens = stack.openid().token(person.username, person.password)
        for _ in range(5):
            assert claims_of(tokens["access_token"])["token_version"] == 1
            assert call_api(stack, tokens["access_token"]).status_code == 200
            tokens = stack.openid().refresh_token(tokens["refresh_token"])
        report(f"attribute mode, provider stopped: a password grant and 5 refreshes took "
               f"{time.perf_counter() - started:.2f} s, every token with the right version and accepted")
    finally:
        stack.start_provider()


def test_bumps_interleaved_with_refreshes_never_go_down(attribute_mode, person):
    """Issue 12 item 2's race: refreshes run while the user is bumped ten times. The versions the tokens carry
    never go down, never exceed the provider's, and once the last write lands every new token carries it."""
    import threading

    stack = attribute_mode
    wait_for_attribute(stack, person.subject, 0, within=SCAN_INTERVAL + 10)
    oidc = stack.openid()
    tokens = oidc.token(person.username, person.password)
    seen: list[int] = []
    done = threading.Event()

    def refresh() -> None:
        nonlocal tokens
        while not done.is_set():
            tokens = oidc.refresh_token(tokens["refresh_token"])
            seen.append(claims_of(tokens["access_token"])["token_version"])

    refresher = threading.Thread(target=refresh)
    refresher.start()
    try:
        for version in range(1, 11):
            assert f"version {version - 1} -> {version}" in bump(stack, person.subject)
        wait_for_attribute(stack, person.subject, 10, within=10)
    finally:
        done.set()
        refresher.join(30)
    assert seen, "no refresh ran"
    assert seen == sorted(seen) and max(seen) <= 10, seen
    assert claims_of(oidc.refresh_token(tokens["refresh_token"])["access_token"])["token_version"] == 10
    report(f"attribute mode: {len(seen)} refreshes during 10 bumps carried versions {sorted(set(seen))}, "
           f"never going down")
