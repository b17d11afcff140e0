"""The security webhook (issue 14): revoked-token uses POSTed to a real loopback HTTP receiver that verifies
the signature the way docs/operations.md tells a receiver to (written here from the docs, not with the
provider's own ``verify``); delivery is off the report's path and a full queue drops with a counter."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from prometheus_client import REGISTRY

from tests.remote_helpers import wait_until
from tests.test_reports import a_use, post, report
from tokenversion_server import security

pytestmark = pytest.mark.django_db

SECRET = "webhook-secret-dddddddddddddddddddddddddddddddd"


def receiver_verifies(secret: str, header: str, body: bytes, tolerance: float = 300) -> bool:
    """docs/operations.md, "Verifying the webhook", as a receiver writes it."""
    fields = dict(part.split("=", 1) for part in header.split(","))
    timestamp = int(fields["t"])
    if abs(time.time() - timestamp) > tolerance:
        return False
    expected = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, fields["v1"])


class Receiver:
    def __init__(self, hold: threading.Event | None = None) -> None:
        self.received: list[dict] = []
        self.refused = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if hold is not None:
                    hold.wait(10)
                if receiver_verifies(SECRET, self.headers.get("X-TokenVersion-Signature", ""), body):
                    outer.received.extend(json.loads(body)["events"])
                    self.send_response(204)
                else:
                    outer.refused += 1
                    self.send_response(401)
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/tokenversion"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    server = Receiver()
    yield server
    server.close()


@pytest.fixture
def key():
    from tests.test_reports import _key

    return _key()


def _webhook_settings(settings, url: str, **more) -> None:
    settings.TOKENVERSION_SERVER = {**settings.TOKENVERSION_SERVER, "SECURITY_WEBHOOK_URL": url,
                                    "SECURITY_WEBHOOK_SECRET": SECRET, **more}


def _dropped(reason: str) -> float:
    return REGISTRY.get_sample_value("tokenversion_security_webhook_dropped_total", {"reason": reason}) or 0.0


def test_a_use_reaches_the_receiver_signed(client, issuer, key, settings, receiver,
                                           django_capture_on_commit_callbacks):
    _webhook_settings(settings, receiver.url)
    with django_capture_on_commit_callbacks(execute=True):
        response = post(client, key, report(issuer.issuer, uses=[a_use(issuer.issuer, client_address="2001:db8::7")]))
    assert response.status_code == 202
    events = wait_until(lambda: receiver.received, 2, what="the webhook delivery")
    assert receiver.refused == 0
    assert events[0]["type"] == "revoked_token_use" and events[0]["service"] == "orders-api"
    assert events[0]["client_address"] == "2001:db8::7" and events[0]["hit"] == "version"


def test_a_body_changed_in_transit_fails_verification():
    body = b'{"events": []}'
    header = security.sign(SECRET, int(time.time()), body)
    assert receiver_verifies(SECRET, header, body) and security.verify(SECRET, header, body)
    assert not receiver_verifies(SECRET, header, body + b" ")
    assert not security.verify(SECRET, header, body + b" ")
    assert not security.verify("another-secret", header, body)
    old = security.sign(SECRET, int(time.time()) - 3600, body)
    assert not receiver_verifies(SECRET, old, body) and not security.verify(SECRET, old, body)


def test_a_stuck_receiver_never_slows_a_report_and_a_full_queue_drops_with_a_count(
        client, issuer, key, settings, django_capture_on_commit_callbacks):
    hold = threading.Event()
    stuck = Receiver(hold=hold)
    try:
        _webhook_settings(settings, stuck.url, SECURITY_WEBHOOK_QUEUE_SIZE=1)
        before = _dropped("queue_full")
        for n in range(4):
            start = time.monotonic()
            with django_capture_on_commit_callbacks(execute=True):
                response = post(client, key, report(issuer.issuer, pid=100 + n, uses=[a_use(issuer.issuer)]))
            assert response.status_code == 202
            assert time.monotonic() - start < 1.0  # generous: the receiver holds every delivery for 10 s
            if n == 0:  # the sender has taken the first event and is stuck delivering it
                wait_until(lambda: security.webhook().queue.empty(), 2, what="the first event taken")
        # One in delivery, one queued, two dropped.
        assert _dropped("queue_full") - before == 2
    finally:
        hold.set()
        stuck.close()


@pytest.mark.parametrize(("values", "ids"), [
    ({"SECURITY_WEBHOOK_URL": "https://siem.example/hook"}, ["tokenversion.E055"]),
    ({"SECURITY_WEBHOOK_URL": "https://siem.example/hook", "SECURITY_WEBHOOK_SECRET": "short"},
     ["tokenversion.W057"]),
    ({"SECURITY_WEBHOOK_URL": "file:///etc/passwd", "SECURITY_WEBHOOK_SECRET": SECRET}, ["tokenversion.E056"]),
    ({"SECURITY_WEBHOOK_URL": "http://siem.example/hook", "SECURITY_WEBHOOK_SECRET": SECRET},
     ["tokenversion.W058"]),
    ({"SECURITY_WEBHOOK_URL": "http://127.0.0.1:9/hook", "SECURITY_WEBHOOK_SECRET": SECRET}, []),
    ({"SECURITY_WEBHOOK_URL": "https://siem.example/hook", "SECURITY_WEBHOOK_SECRET": SECRET}, []),
])
def test_webhook_settings_checks(settings, values, ids):
    from tokenversion_server.checks import check_provider_settings

    settings.TOKENVERSION_SERVER = {**settings.TOKENVERSION_SERVER, **values}
    found = [m.id for m in check_provider_settings() if m.id.startswith(("tokenversion.E05", "tokenversion.W05"))]
    assert found == ids
