"""Cost of the signed Redis envelope per message, against the HMAC envelope it replaced, in one run.

Cases, interleaved round by round (order rotated) over the same heartbeat and event messages:

- ``hmac_open``: the former check, HMAC-SHA256 over the JSON with the shared feed secret, then ``json.loads``;
- ``ed25519_open``: ``FeedVerifier.open`` (key-id lookup, one Ed25519 verification, ``json.loads``, channel,
  issuer and date checks), what a ``RedisStore`` does once per message;
- ``ed25519_seal``: ``FeedSigner.seal``, what the provider and the publisher do once per message.

The figure that matters is the absolute cost of ``ed25519_open`` per message against the message rate a
service sees (5 heartbeats per second idle, plus 2 messages per revocation). The median is what a loaded
machine gives; the minimum over rounds is the closest to an idle core.

    .venv/bin/python bench/feed_envelope.py            # 200 rounds of 200 messages
    .venv/bin/python bench/feed_envelope.py --quick    # 40 rounds
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import statistics
import sys
import time

from _report import run_reported
from _setup import interleaved_rounds, median_ratio, timed_loop

from tokenversion.core.feed_protocol import FeedSigner, FeedVerifier, generate_signing_key

CHANNEL, ISSUER, SECRET = "tokenversion:revocations", "https://sso.example.com/realms/main", "s" * 40


def messages(count: int) -> list[dict]:
    now = time.time()
    out = []
    for i in range(count):
        if i % 2:
            out.append({"type": "heartbeat", "run": "0123456789abcdef", "n": i + 2, "cursor": f"v1.{i}.{i}.1",
                        "as_of": now})
        else:
            out.append({"type": "event", "run": "0123456789abcdef", "n": i + 2,
                        "event": {"scope": "user", "issuer": ISSUER, "subject": f"user-{i:06d}", "version": i,
                                  "at": now, "id": i}})
    return out


def hmac_seal(message: dict) -> bytes:
    payload = json.dumps(message, separators=(",", ":")).encode()
    return hmac.new(SECRET.encode(), payload, hashlib.sha256).hexdigest().encode() + b"." + payload


def hmac_open(data: bytes) -> dict:
    mac, _, payload = data.partition(b".")
    if not hmac.compare_digest(mac.decode(), hmac.new(SECRET.encode(), payload, hashlib.sha256).hexdigest()):
        raise ValueError("bad")
    return json.loads(payload)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--per-round", type=int, default=200)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    rounds = 40 if args.quick else args.rounds
    pem, public = generate_signing_key()
    signer, verifier = FeedSigner.from_pem(pem), FeedVerifier([public])
    batch = messages(args.per_round)
    signed = [signer.seal(m, CHANNEL, ISSUER) for m in batch]
    sealed_hmac = [hmac_seal({**m, "ch": CHANNEL, "iss": ISSUER, "at": time.time()}) for m in batch]
    cases = {
        "hmac_open": lambda: timed_loop(hmac_open, sealed_hmac),
        "ed25519_open": lambda: timed_loop(lambda d: verifier.open(d, CHANNEL, ISSUER), signed),
        "ed25519_seal": lambda: timed_loop(lambda m: signer.seal(m, CHANNEL, ISSUER), batch),
    }
    samples = interleaved_rounds(cases, rounds)
    print(f"{rounds} rounds of {args.per_round} messages ({len(signed[0])}-{max(map(len, signed))} bytes signed)")
    for name, values in samples.items():
        print(f"  {name:13s} median {statistics.median(values) * 1e6:7.1f} µs per message "
              f"(min {min(values) * 1e6:.1f}, max {max(values) * 1e6:.1f})")
    ratio, low, high = median_ratio(samples, "ed25519_open", "hmac_open")
    print(f"ed25519_open / hmac_open, same round: median {ratio:.1f}x (min {low:.1f}, max {high:.1f})")
    for label, per_message in (("median", statistics.median(samples["ed25519_open"])),
                               ("min", min(samples["ed25519_open"]))):
        print(f"a service at 2005 messages/s (1000 revocations/s, idle heartbeats), {label} round: "
              f"{2005 * per_message * 100:.1f}% of one core to verify")
    with open("/proc/loadavg") as handle:
        print(f"load average at end (1/5/15 min): {' '.join(handle.read().split()[:3])}")


if __name__ == "__main__":
    sys.exit(run_reported(main))
