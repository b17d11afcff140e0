"""Fleet visibility (issue 14) against the real Keycloak: after a logout the provider says which service processes
enforce the revocation, and the old token's next use is a security event in the admin.

Three services with no shared state but the provider, two gunicorn workers each, every one reporting with its
own service key (``create_service_key``): the database store (the default sample service), the HTTP feed and
Redis. The test never presents the revoked token before the provider says every process enforces the
revocation, so the one use it then makes is the only security event of that token: what appears in the admin
can only come from that call.
"""

from __future__ import annotations

import html
import re
import time

import jwt
import pytest
import requests

from .conftest import report

PORTS = {"fleet-feed": 18012, "fleet-redis": 18013}
STORES = {"fleet-feed": "feed", "fleet-redis": "redis"}
# A report goes out every REPORT_INTERVAL (1 s by default) and a feed or Redis store proves itself fresh at least
# that often: a lag of seconds would be a bug, a minute is a hang. Generous on purpose (a loaded CI machine).
LAG_BOUND_MS = 10_000
# The figure: the old token's use shows up as a security event in the admin within 2 s.
SECURITY_EVENT_WITHIN = 2.0


@pytest.fixture(scope="module")
def fleet(stack):
    """The stack's database-store service and one HTTP-feed and one Redis service, each reporting: name -> URL."""
    for name, port in PORTS.items():
        stack.start_service(name, port, **stack.remote_store_env(STORES[name]))
    yield {"service": stack.config.service_url, **{name: f"http://127.0.0.1:{port}" for name, port in PORTS.items()}}
    for name in PORTS:
        process = stack.services.pop(name, None)
        if process is not None:
            process.stop()


def get_orders(url: str, token: str, user_agent: str = "fleet-e2e") -> requests.Response:
    return requests.get(f"{url}/api/orders", timeout=5,
                        headers={"Authorization": f"Bearer {token}", "User-Agent": user_agent})


def test_logout_is_enforced_by_every_process_and_the_old_token_is_a_security_event(stack, person, fleet):
    oidc = stack.openid()
    tokens = oidc.token(person.username, person.password)
    access = tokens["access_token"]
    sid = jwt.decode(access, options={"verify_signature": False})["sid"]
    session = stack.admin_session()

    def call_every_service() -> None:
        for url in fleet.values():
            assert get_orders(url, access).status_code == 200

    processes = stack.wait_every_worker_reporting(call_every_service)
    assert processes == 2 * len(fleet)  # two workers per service, each its own instance at the provider

    oidc.logout(tokens["refresh_token"])  # Keycloak calls the provider's back-channel logout before answering
    (event_id,) = stack.sql("SELECT id FROM tokenversion_server_revocationevent WHERE session_id = %s", sid)[0]

    # Without touching the old token: the provider's receipts alone say when every process enforces it.
    answer = stack.wait_enforced(session, event_id)
    assert answer["enforced"] == answer["live"] == processes, answer
    assert answer["behind"] == []
    lag_ms = answer["slowest_ms"]
    assert lag_ms is not None and 0 < lag_ms < LAG_BOUND_MS, answer
    assert all(i["lag_ms"] is not None and 0 < i["lag_ms"] <= lag_ms for i in answer["instances"]
               if i["state"] == "enforcing"), answer
    assert answer["summary"] == f"enforced by {processes} of {processes} live service processes, " \
                                f"the slowest after {lag_ms:.0f} ms"
    lags: dict[str, list[float]] = {}
    for i in answer["instances"]:
        if i["state"] == "enforcing":
            lags.setdefault(f"{i['service']} ({i['store']})", []).append(i["lag_ms"])
    report(f"fleet visibility: {answer['summary']} (the provider's receipts for the logout); per process: "
           + "; ".join(f"{name} {', '.join(f'{lag:.0f}' for lag in sorted(values))} ms"
                       for name, values in sorted(lags.items())))

    # Every service refuses the old token now; each refusal is a security event, in the admin within 2 s.
    user_agent = "stolen-token-replay"
    for name, url in fleet.items():
        used_at = time.monotonic()  # before the call: the time to appear includes the call itself
        refused = get_orders(url, access, user_agent)
        assert refused.status_code == 401, f"{name} accepted a token its receipt says it enforces: {refused.text}"
        row = wait_for_security_event_in_admin(session, stack, name, person.username, used_at)
        appeared = time.monotonic() - used_at
        report(f"fleet visibility: the old token's use at {name} was in the admin's revoked-token uses "
               f"{appeared * 1000:.0f} ms after the call (target {SECURITY_EVENT_WITHIN * 1000:.0f} ms)")
        # the row as support staff read it: who, where, from which address, what refused it
        assert person.username in row and "127.0.0.1" in row and "session" in row, row
        assert appeared <= SECURITY_EVENT_WITHIN

    # The events as recorded: one per service, with the client's address and user agent, the session the logout
    # revoked, and that revocation as the one they hit.
    recorded = stack.sql("SELECT service, client_address, user_agent, session_id, hit, revocation_id "
                         "FROM tokenversion_server_revokedtokenuse WHERE subject = %s", person.subject)
    assert sorted(recorded) == sorted((name, "127.0.0.1", user_agent, sid, "session", event_id) for name in fleet)


def admin_rows(session: requests.Session, stack, username: str) -> list[str]:
    """The rows of the admin's list of revoked-token uses, searched by username as support staff do, as text."""
    page = session.get(f"{stack.config.provider_url}/admin/tokenversion_server/revokedtokenuse/",
                       params={"q": username}, timeout=5)
    assert page.status_code == 200, page.text[:500]
    body = re.search(r'<tbody>(.*?)</tbody>', page.text, re.S)
    rows = re.findall(r"<tr[^>]*>(.*?)</tr>", body[1], re.S) if body else []
    return [" ".join(html.unescape(re.sub(r"<[^>]+>", " ", row)).split()) for row in rows]


def wait_for_security_event_in_admin(session: requests.Session, stack, service: str, username: str,
                                     since: float) -> str:
    """The admin row of the user's revoked-token use at ``service``, polled until it appears (fails after
    10 s; the caller asserts the 2 s)."""
    while True:
        rows = [row for row in admin_rows(session, stack, username) if f" {service} " in f" {row} "]
        if rows:
            assert len(rows) == 1, rows
            return rows[0]
        assert time.monotonic() - since < 10, f"no revoked-token use of {username} at {service} in the admin"
        time.sleep(0.05)
