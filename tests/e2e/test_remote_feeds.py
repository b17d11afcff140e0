"""Services that share nothing with the provider but a feed: a Keycloak logout reaches them within the targets
(Redis: 100 ms; HTTP feed: 1 s). Each service is a gunicorn process with no database at all."""

from __future__ import annotations

import statistics
import threading
import time

import pytest
import requests

from sample_service.stack import StackError, seconds_until_refused

from .conftest import report

PORTS = {"redis": 18003, "feed": 18002}
TARGETS = {"redis": 0.1, "feed": 1.0}


@pytest.fixture(scope="module")
def remote_services(stack):
    started = {kind: stack.start_service(f"service-{kind}", port, **stack.remote_store_env(kind))
               for kind, port in PORTS.items()}
    yield started
    for kind, process in started.items():
        process.stop()
        stack.services.pop(f"service-{kind}", None)


def status(kind: str, token: str) -> int:
    return requests.get(f"http://127.0.0.1:{PORTS[kind]}/api/orders", timeout=5,
                        headers={"Authorization": f"Bearer {token}"}).status_code


def watch(kind: str, token: str, results: dict[str, float | str]) -> None:
    try:
        results[kind] = seconds_until_refused(lambda: status(kind, token), settle=0.5, within=3.0)
    except StackError as exc:
        results[kind] = str(exc)


def test_logout_reaches_services_without_a_database_within_the_targets(stack, person, remote_services):
    oidc = stack.openid()
    delays: dict[str, list[float]] = {kind: [] for kind in PORTS}
    for _ in range(5):
        tokens = oidc.token(person.username, person.password)
        for kind in PORTS:
            deadline = time.monotonic() + 10  # a service starting up answers 503 until its map is fresh
            while status(kind, tokens["access_token"]) != 200:
                assert time.monotonic() < deadline, f"{kind} service never accepted a valid token"
                time.sleep(0.05)
        results: dict[str, float | str] = {}
        watchers = [threading.Thread(target=watch, args=(kind, tokens["access_token"], results)) for kind in PORTS]
        oidc.logout(tokens["refresh_token"])
        for watcher in watchers:
            watcher.start()
        for watcher in watchers:
            watcher.join()
        for kind, result in results.items():
            assert isinstance(result, float), f"{kind}: {result}"
            delays[kind].append(result)
    for kind, values in delays.items():
        report(f"{kind} store, no database: refused {', '.join(f'{v * 1000:.0f}' for v in values)} ms after "
               f"Keycloak's logout returned (median {statistics.median(values) * 1000:.0f} ms; "
               f"target {TARGETS[kind] * 1000:.0f} ms)")
    assert statistics.median(delays["redis"]) <= TARGETS["redis"]
    assert max(delays["feed"]) <= TARGETS["feed"]
    assert max(delays["redis"]) <= TARGETS["feed"]
