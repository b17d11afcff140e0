"""The live demo's scenarios (``sample_service/demo.py``, ``bash scripts/demo.sh``) on the test session's stack:
the timeline prints what the README and docs/keycloak.md show, with the provider's enforcement receipt and the
security event of the old token's use (issue 14).

``demo.main`` starts a stack of its own under the same machine-wide lock the session's stack holds, so this runs
``play`` on the session's stack with the services ``main`` starts."""

from __future__ import annotations

import re

import pytest

from sample_service import demo

from .conftest import report


@pytest.fixture
def demo_services(stack):
    services = demo.start_remote_services(stack)
    yield services
    for name in services:
        if name != "service":
            stack.services.pop(name).stop()


def test_the_demo_timeline_shows_enforcement_and_the_security_event(stack, demo_services, capsys):
    stack.ensure_user(demo.USERNAME, demo.PASSWORD)
    assert demo.play(stack, demo_services)
    out = capsys.readouterr().out

    workers = 2 * len(demo_services)
    assert len(demo_services) == 3, demo_services  # the database, HTTP feed and Redis stores (Redis is in CI)
    assert f"-> 200 OK ({workers} service processes report to the provider)" in out, out
    enforced = re.search(r"provider: revocation #\d+ \(the logout\) +-> enforced by (\d+)/(\d+) service processes "
                         r"in (\d+) ms", out)
    assert enforced, out
    assert int(enforced[1]) == int(enforced[2]) == workers
    assert 0 < int(enforced[3]) < 10_000
    assert re.search(r"GET /api/orders at service with the same token +-> 401 .*error=\"invalid_token\"", out), out
    event = re.search(r"-> revoked token used at service from 127\.0\.0\.1: recorded as security event #(\d+) "
                      r"\((\d+) ms after the call\)", out)
    assert event, out
    (recorded,) = stack.sql("SELECT service, client_address, user_agent FROM tokenversion_server_revokedtokenuse "
                            "WHERE id = %s", int(event[1]))
    assert recorded == ("service", "127.0.0.1", "stolen-token-replay")
    assert int(event[2]) <= 2000
    report(f"demo: enforced by {enforced[1]}/{enforced[2]} service processes in {enforced[3]} ms; security event "
           f"#{event[1]} recorded {event[2]} ms after the call")
