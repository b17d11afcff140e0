"""The attacker of tests/test_feed_signing.py: a process holding one service's FULL configuration (its
``STORE_OPTIONS``: feed URL, feed credential, public keys, Redis URL, channel; and its ``ISSUER``) that tries
every way that configuration offers to make *other* services revoke or un-revoke.

Until SIGTERM it publishes, every ``ATTACK_PERIOD`` seconds, on the services' channel:

- user, session and realm revocations for ``ATTACK_SUBJECT``, hellos and heartbeats (as_of now, cursor far
  ahead), each in every envelope it can make: the former HMAC-SHA256 envelope keyed with the feed credential,
  Ed25519 signed with a key of its own (under its own key id and under the genuine key id), Ed25519 with keys
  derived from every configured value (feed credential, public keys, URLs, channel), and unsigned;
- every genuine message it captured on the channel, replayed as is (hellos, events, heartbeats), and with its
  payload edited (as_of moved to now, events retargeted) under the genuine signature.

It prints what it published as one JSON line when it stops. No Django: it is not a service, only its secrets.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import signal
import sys
import threading
import time
from collections import deque
from typing import Any

import redis
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tokenversion.core.feed_protocol import ENVELOPE_PREFIX, FeedSigner, FeedVerifier, key_id, parse_verify_key

_HEAD = len(ENVELOPE_PREFIX) + 11 + 1 + 86 + 1  # prefix, key id, signature and their dots


def main() -> None:
    options: dict[str, Any] = json.loads(os.environ["ATTACK_OPTIONS"])
    issuer, subject = os.environ["ATTACK_ISSUER"], os.environ["ATTACK_SUBJECT"]
    period = float(os.environ.get("ATTACK_PERIOD", "0.1"))
    channel, secret = options["channel"], options["secret"]
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    client = redis.Redis.from_url(options["redis_url"])
    # Genuine messages, told apart from its own forgeries with the public keys it holds.
    verifier = FeedVerifier(options["verify_keys"])
    hellos: list[bytes] = []
    recent: deque[bytes] = deque(maxlen=20)
    capture = threading.Thread(target=_capture, args=(options["redis_url"], channel, issuer, verifier, hellos,
                                                      recent, stop), daemon=True)
    capture.start()
    genuine_kids = [key_id(parse_verify_key(k)) for k in options["verify_keys"]]
    # Every signing key this configuration could give: one of its own, and one derived from each value held.
    own = FeedSigner(Ed25519PrivateKey.generate())
    derived = [FeedSigner(Ed25519PrivateKey.from_private_bytes(hashlib.sha256(value.encode()).digest()))
               for value in [secret, *options["verify_keys"], options["redis_url"], options["feed_url"], channel]]
    sent = {"forged": 0, "replayed": 0, "edited": 0}
    n = 1
    while not stop.is_set():
        now = time.time()
        n += 1
        for message in _forgeries(subject, issuer, now, n):
            for data in _envelopes(message, channel, issuer, secret, own, derived, genuine_kids):
                client.publish(channel, data)
                sent["forged"] += 1
        for data in [*hellos, *recent]:
            client.publish(channel, data)
            sent["replayed"] += 1
            edited = _edited(data, subject, now)
            if edited is not None:
                client.publish(channel, edited)
                sent["edited"] += 1
        stop.wait(period)
    print(json.dumps({**sent, "hellos_captured": len(hellos)}), flush=True)


def _forgeries(subject: str, issuer: str, now: float, n: int) -> list[dict[str, Any]]:
    """What would make a service revoke (events) or believe it is fresh (hello, heartbeats, cursor far ahead)."""
    far = "v1.9000000000000000000.0.0"
    return [
        {"type": "event", "event": {"scope": "user", "issuer": issuer, "subject": subject, "version": 10**9,
                                    "at": now}},
        {"type": "event", "event": {"scope": "realm", "issuer": issuer, "at": now}},
        {"type": "event", "event": {"scope": "session", "issuer": issuer, "subject": subject, "session_id": "s1",
                                    "at": now}},
        {"type": "hello", "run": "forged-run", "n": 1, "cursor": far},
        {"type": "event", "run": "forged-run", "n": n, "event": {"scope": "realm", "issuer": issuer, "at": now}},
        {"type": "heartbeat", "run": "forged-run", "n": n + 1, "cursor": far, "as_of": now},
    ]


def _envelopes(message: dict[str, Any], channel: str, issuer: str, secret: str, own: FeedSigner,
               derived: list[FeedSigner], genuine_kids: list[str]) -> list[bytes]:
    out = []
    # The former envelope: HMAC-SHA256 keyed with the feed credential, which every service holds.
    payload = json.dumps(message, separators=(",", ":")).encode()
    out.append(hmac.new(secret.encode(), payload, hashlib.sha256).hexdigest().encode() + b"." + payload)
    # Unsigned: bare JSON, and the new format with an empty (all-zero) signature under each genuine key id.
    out.append(payload)
    signed = own.seal(message, channel, issuer)
    out.append(signed)
    body = signed[len(ENVELOPE_PREFIX) + len(own.kid) + 1 + 86:]
    for kid in genuine_kids:
        out.append(ENVELOPE_PREFIX + kid.encode() + b"." + b"A" * 86 + body)
    # Its own signature under each genuine key id (the service then checks it against the genuine key).
    for kid in genuine_kids:
        out.append(ENVELOPE_PREFIX + kid.encode() + signed[len(ENVELOPE_PREFIX) + len(own.kid):])
    for signer in derived:
        out.append(signer.seal(message, channel, issuer))
    return out


def _edited(data: bytes, subject: str, now: float) -> bytes | None:
    """A genuine message with its payload changed, the genuine signature kept."""
    head, payload = data[:_HEAD], data[_HEAD:]
    try:
        message = json.loads(payload)
    except ValueError:
        message = None
    if not isinstance(message, dict):
        return None
    message["at"] = now
    if "as_of" in message:
        message["as_of"] = now
    if isinstance(message.get("event"), dict):
        message["event"].update(subject=subject, scope="user", version=10**9)
    return head + json.dumps(message, separators=(",", ":")).encode()


def _capture(url: str, channel: str, issuer: str, verifier: FeedVerifier, hellos: list[bytes],
             recent: deque[bytes], stop: threading.Event) -> None:
    pubsub = redis.Redis.from_url(url).pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(channel)
    seen: set[bytes] = set()  # its own replays come back on the channel too
    while not stop.is_set():
        message = pubsub.get_message(timeout=0.05)
        if not message or message["type"] != "message":
            continue
        data = message["data"]
        if data in seen:
            continue
        try:
            opened = verifier.open(data, channel, issuer, max_age=1e9)
        except ValueError:
            continue  # one of its own forgeries
        seen.add(data)
        (hellos if opened.get("type") == "hello" else recent).append(data)


if __name__ == "__main__":
    sys.exit(main())
