"""Where a revoked-token use goes once it is recorded: a JSON log line and, optionally, a signed webhook.

- **Log line**: one line per use on logger ``tokenversion.security`` (level WARNING), the message being the
  event as compact JSON (``event_payload``): what a SIEM's log shipper reads.
- **Webhook** (``SECURITY_WEBHOOK_URL``): the events are POSTed as ``{"events": [...]}`` with the header
  ``X-TokenVersion-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>" under
  SECURITY_WEBHOOK_SECRET>``. Delivery is off the request path: the report endpoint puts events on a bounded
  in-process queue (``put_nowait``; full: dropped and counted in ``tokenversion_security_webhook_dropped_total``)
  and one daemon thread per process posts them, in batches, retrying a failed batch three times (0.5, 1, 2 s
  apart) before dropping it (counted). It never blocks or fails a report. Events queued when a process stops
  are lost (the log line and the table have them); docs/operations.md says how to replay from the table.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterable
from typing import Any

from . import metrics
from .background import BatchQueue
from .conf import get_server_settings
from .models import RevokedTokenUse, ServiceInstance

security_log = logging.getLogger("tokenversion.security")
logger = logging.getLogger("tokenversion.server")

SIGNATURE_HEADER = "X-TokenVersion-Signature"
BATCH_MAX = 100
RETRY_DELAYS = (0.5, 1.0, 2.0)


def _iso(value) -> str | None:
    return value.isoformat() if value is not None else None


def event_payload(use: RevokedTokenUse, instance: ServiceInstance | None = None) -> dict[str, Any]:
    """One use as the sinks send it (documented field by field in docs/operations.md, "Security events")."""
    instance = instance if instance is not None else use.instance
    revocation = use.revocation
    return {
        "type": "revoked_token_use",
        "id": use.pk,
        "service": use.service,
        "instance": None if instance is None else {
            "host": instance.host, "pid": instance.pid, "started_at": _iso(instance.started_at),
            "store": instance.store},
        "issuer": use.issuer,
        "subject": use.subject,
        "session_id": use.session_id,
        "jti": use.jti,
        "token_version": use.token_version,
        "hit": use.hit,
        "client_address": use.client_address,
        "user_agent": use.user_agent,
        "method": use.method,
        "path": use.path,
        "at": _iso(use.at),
        "received_at": _iso(use.received_at),
        "revocation": None if revocation is None else {
            "id": revocation.pk, "scope": revocation.scope, "reason": revocation.reason,
            "created_at": _iso(revocation.created_at)},
    }


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The header's value: ``t=<timestamp>,v1=<hex HMAC-SHA256(secret, "<timestamp>." + body)>``."""
    mac = hmac.new(secret.encode("utf-8"), str(timestamp).encode("ascii") + b"." + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def verify(secret: str, header: str, body: bytes, tolerance: float = 300.0, now: float | None = None) -> bool:
    """What a receiver runs (docs/operations.md has it standalone): the signature matches and is recent."""
    try:
        parts = dict(item.split("=", 1) for item in header.split(","))
        timestamp = int(parts["t"])
    except (ValueError, KeyError):
        return False
    if abs((time.time() if now is None else now) - timestamp) > tolerance:
        return False
    return hmac.compare_digest(sign(secret, timestamp, body), f"t={timestamp},v1={parts.get('v1', '')}")


def emit(uses: Iterable[RevokedTokenUse], instance: ServiceInstance | None = None) -> None:
    """Send recorded uses to the sinks. Called after the report's commit; never raises, never blocks."""
    events = [event_payload(use, instance) for use in uses]
    for event in events:
        security_log.warning(json.dumps(event, separators=(",", ":"), ensure_ascii=True))
    if events:
        try:
            conf = get_server_settings()
            if (conf.security_webhook_url and conf.security_webhook_secret
                    and conf.security_webhook_url.lower().startswith(("http://", "https://"))):
                webhook().put(events)
        except Exception:  # a sink must never fail the report that fed it
            logger.exception("security events: cannot queue for the webhook")


class Webhook:
    """The sender: a bounded queue and the thread that drains it (one per process, made on first use)."""

    def __init__(self, url: str, secret: str, size: int, timeout: float) -> None:
        self.url, self.secret, self.timeout = url, secret, timeout
        self.batches = BatchQueue("tokenversion-security-webhook", size, self._deliver,
                                  lambda n: metrics.WEBHOOK_DROPPED.labels("queue_full").inc(n), BATCH_MAX)
        self.pid, self.queue = self.batches.pid, self.batches.queue

    def put(self, events: list[dict[str, Any]]) -> None:
        self.batches.put(events)

    def _deliver(self, batch: list[dict[str, Any]]) -> None:
        body = json.dumps({"events": batch}, separators=(",", ":"), ensure_ascii=True).encode("ascii")
        for delay in (*RETRY_DELAYS, None):
            # The URL's scheme is http or https (checked in emit and by check tokenversion.E056).
            request = urllib.request.Request(self.url, data=body, method="POST", headers={  # noqa: S310
                "Content-Type": "application/json", SIGNATURE_HEADER: sign(self.secret, int(time.time()), body),
                "User-Agent": "tokenversion-provider"})
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310
                    if 200 <= response.status < 300:
                        metrics.WEBHOOK_DELIVERED.inc(len(batch))
                        return
            except (urllib.error.URLError, OSError, ValueError) as exc:
                logger.warning("security webhook: delivery failed (%s)", type(exc).__name__)
            if delay is None:
                break
            time.sleep(delay)
        metrics.WEBHOOK_DROPPED.labels("delivery_failed").inc(len(batch))


_webhook: Webhook | None = None
_lock = threading.Lock()


def webhook() -> Webhook:
    """This process's webhook sender, made (and its thread started) on first use: a process forked from one
    that had it (gunicorn --preload) gets its own, since threads do not survive a fork."""
    global _webhook
    conf = get_server_settings()
    with _lock:
        current = _webhook
        if (current is None or current.pid != os.getpid() or current.url != conf.security_webhook_url
                or current.secret != conf.security_webhook_secret):
            _webhook = Webhook(conf.security_webhook_url or "", conf.security_webhook_secret or "",
                               conf.security_webhook_queue_size, conf.security_webhook_timeout)
        return _webhook
