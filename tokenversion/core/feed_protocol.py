"""The wire protocol of the revocation feed, shared by the provider and the services (no Django here).

**Cursor.** ``v1.<safe>.<anchor_id>.<anchor_us>``:

- ``safe``: every audit id at or below it is *settled* (committed or rolled back for good) and has been
  delivered. The provider only hands out a ``safe`` it has proven settled, never "the highest id seen":
  on PostgreSQL ids become visible out of order (transaction A takes id 5, B takes 6, B commits first), so
  "highest id seen" would skip 5 for ever.
- ``anchor``: the highest audit id at or below ``safe`` that exists, and its ``created_at`` in microseconds.
  Audit rows are never deleted, so the anchor never changes for a given database. If the provider's
  database is replaced (restored from a backup, recreated), the anchor no longer matches and the provider
  answers 410: the service takes a new snapshot instead of waiting for ids that will never mean the same.

**Redis envelope.** ``tvs1.<kid>.<sig>.<json>``, signed with Ed25519:

- ``kid``: the key id, base64url of the first 8 bytes of SHA-256 over the raw 32-byte public key. It picks the
  verify key (so rotation needs no trial verification); an unknown ``kid`` is refused without any work.
- ``sig``: base64url (unpadded, canonical) of the 64-byte Ed25519 signature over ``tvs1.<kid>.<json>``.
- ``json``: the message, which always names the channel (``ch``), the issuer (``iss``) and the publish time
  (``at``, wall clock), plus the certifying publisher's ``run`` and ``n`` on numbered messages.

Only the provider and the certifying publisher hold the private key; services hold public keys, which verify
but cannot sign. Redis is a transport, not a trust anchor: neither a client able to publish on the channel nor
a service holding its whole configuration (feed credential, public keys, Redis URL) can forge a heartbeat
(which would make services believe they are fresh) or an event. ``open_envelope`` refuses a message signed for
another channel or issuer, dated more than ``future_skew`` ahead of this clock, or older than ``max_age``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import math
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from .revocation import MAX_VERSION

_CURSOR = re.compile(r"v1\.([0-9]{1,19})\.([0-9]{1,19})\.([0-9]{1,20})")  # ASCII digits only
MAX_MESSAGE_BYTES = 16 * 1024


class CursorError(ValueError):
    """Not a cursor this protocol produces."""


@dataclass(frozen=True, slots=True, order=True)
class Cursor:
    safe: int
    anchor_id: int = 0
    anchor_us: int = 0

    def __post_init__(self) -> None:
        if not (0 <= self.anchor_id <= self.safe <= MAX_VERSION) or self.anchor_us < 0:
            raise CursorError("cursor fields out of range")

    def __str__(self) -> str:
        return f"v1.{self.safe}.{self.anchor_id}.{self.anchor_us}"

    @classmethod
    def parse(cls, value: Any) -> Cursor:
        if not isinstance(value, str) or not (match := _CURSOR.fullmatch(value)):
            raise CursorError("malformed cursor")
        safe, anchor_id, anchor_us = (int(part) for part in match.groups())
        if anchor_us >= 2**63:
            raise CursorError("cursor fields out of range")
        return cls(safe, anchor_id, anchor_us)


ZERO = Cursor(0, 0, 0)



# The Redis envelope.

ENVELOPE_PREFIX = b"tvs1."
MAX_MESSAGE_AGE = 20.0  # seconds: an older message is a replay (or was stuck for too long); refused
_KID_LENGTH = 11  # base64url of 8 bytes
_SIG_LENGTH = 86  # base64url of 64 bytes
_B64URL = re.compile(r"[A-Za-z0-9_-]+")
_RESERVED = frozenset({"ch", "iss", "at"})


class FeedKeyError(ValueError):
    """A signing or verify key that cannot be used. The message never contains key material."""


class EnvelopeError(ValueError):
    """A Redis message refused. ``reason``: ``malformed``, ``unknown_key``, ``bad_signature`` (not from a holder
    of the signing key), ``misdirected`` (signed for another channel or issuer), ``future`` or ``expired``
    (dated outside the accepted window)."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str, size: int) -> bytes | None:
    """Strict base64url: the right length, the right alphabet, and the one canonical spelling."""
    if not _B64URL.fullmatch(text):
        return None
    try:
        data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        return None
    return data if len(data) == size and _b64(data) == text else None


def _raw(public_key: Ed25519PublicKey) -> bytes:
    return public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def public_value(public_key: Ed25519PublicKey) -> str:
    """The form services are given in ``verify_keys``: base64url of the raw 32-byte public key."""
    return _b64(_raw(public_key))


def key_id(public_key: Ed25519PublicKey) -> str:
    return _b64(hashlib.sha256(_raw(public_key)).digest()[:8])


def parse_verify_key(value: Any) -> Ed25519PublicKey:
    """A public key from ``verify_keys``: base64url of the raw 32 bytes (``tokenversion_feed_keygen`` prints
    it), or a PEM ``PUBLIC KEY``. A private key is refused: a service must never hold one."""
    if isinstance(value, Ed25519PublicKey):
        return value
    if not isinstance(value, str) or not value.strip():
        raise FeedKeyError("a verify key must be a non-empty string")
    text = value.strip()
    if "PRIVATE KEY" in text:
        raise FeedKeyError("a verify key is a PRIVATE key: give services the public key only "
                           "(manage.py tokenversion_feed_keygen --public-of <file>)")
    if text.startswith("-----BEGIN"):
        try:
            key = serialization.load_pem_public_key(text.encode("ascii"))
        except (ValueError, TypeError, UnicodeEncodeError, UnsupportedAlgorithm):
            raise FeedKeyError("a verify key is not a readable PEM public key") from None
        if not isinstance(key, Ed25519PublicKey):
            raise FeedKeyError("a verify key is not an Ed25519 public key")
        return key
    raw = _unb64(text, 32)
    if raw is None:
        raise FeedKeyError("a verify key must be the base64url of a raw 32-byte Ed25519 public key (43 "
                           "characters) or a PEM public key")
    return Ed25519PublicKey.from_public_bytes(raw)


def load_signing_key(pem: str | bytes) -> Ed25519PrivateKey:
    """The provider's signing key from unencrypted PEM (PKCS#8, as ``tokenversion_feed_keygen`` writes it)."""
    data = pem.encode("utf-8") if isinstance(pem, str) else pem
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise FeedKeyError("the signing key is not an unencrypted PEM private key") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise FeedKeyError("the signing key is not an Ed25519 private key")
    return key


def generate_signing_key() -> tuple[str, str]:
    """A new key pair: (private key as PKCS#8 PEM, public value for ``verify_keys``)."""
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode("ascii")
    return pem, public_value(key.public_key())


class FeedSigner:
    """Seals Redis messages. Lives only in the provider and the certifying publisher."""

    def __init__(self, private_key: Ed25519PrivateKey) -> None:
        self._key = private_key
        self.public_key = private_key.public_key()
        self.kid = key_id(self.public_key)
        self._head = ENVELOPE_PREFIX + self.kid.encode("ascii") + b"."

    @classmethod
    def from_pem(cls, pem: str | bytes) -> FeedSigner:
        return cls(load_signing_key(pem))

    def seal(self, message: dict[str, Any], channel: str, issuer: str, at: float | None = None) -> bytes:
        """``message`` with its channel, issuer and publish time, signed: ``tvs1.<kid>.<sig>.<json>``."""
        if _RESERVED & message.keys():
            raise ValueError("ch, iss and at are set by the envelope")
        body = {**message, "ch": channel, "iss": issuer, "at": time.time() if at is None else at}
        payload = json.dumps(body, separators=(",", ":"), allow_nan=False).encode("utf-8")
        signature = _b64(self._key.sign(self._head + payload)).encode("ascii")
        return self._head + signature + b"." + payload


class FeedVerifier:
    """Opens Redis messages with the public keys a service was given (several during a rotation)."""

    def __init__(self, keys: Iterable[Any]) -> None:
        self.keys: dict[str, Ed25519PublicKey] = {}
        for value in keys:
            key = parse_verify_key(value)
            self.keys[key_id(key)] = key
        if not self.keys:
            raise FeedKeyError("at least one verify key is required")

    def open(self, data: bytes | str, channel: str, issuer: str, *, now: float | None = None,
             future_skew: float = 5.0, max_age: float = MAX_MESSAGE_AGE) -> dict[str, Any]:
        """The message inside an envelope, verified once; ``EnvelopeError`` says why it was refused."""
        if isinstance(data, str):
            data = data.encode("utf-8", "surrogateescape")
        if not isinstance(data, bytes) or len(data) > MAX_MESSAGE_BYTES:
            raise EnvelopeError("malformed", "message too large or not bytes")
        if not data.startswith(ENVELOPE_PREFIX):
            raise EnvelopeError("malformed", "not a signed envelope")
        rest = data[len(ENVELOPE_PREFIX):]
        kid_end, sig_end = _KID_LENGTH, _KID_LENGTH + 1 + _SIG_LENGTH
        if len(rest) < sig_end + 1 or rest[kid_end:kid_end + 1] != b"." or rest[sig_end:sig_end + 1] != b".":
            raise EnvelopeError("malformed", "envelope fields have the wrong length")
        kid = rest[:kid_end].decode("ascii", "replace")
        key = self.keys.get(kid)
        if key is None:
            raise EnvelopeError("unknown_key", "signed with a key this service does not accept")
        signature = _unb64(rest[kid_end + 1:sig_end].decode("ascii", "replace"), 64)
        payload = rest[sig_end + 1:]
        if signature is None:
            raise EnvelopeError("malformed", "signature is not canonical base64url")
        try:
            key.verify(signature, data[:len(ENVELOPE_PREFIX) + kid_end + 1] + payload)
        except InvalidSignature:
            raise EnvelopeError("bad_signature", "bad message signature") from None
        try:
            message = json.loads(payload.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError):
            raise EnvelopeError("malformed", "message is not JSON") from None
        if not isinstance(message, dict):
            raise EnvelopeError("malformed", "message is not an object")
        if message.get("ch") != channel or message.get("iss") != issuer:
            raise EnvelopeError("misdirected", "message signed for another channel or issuer")
        now = time.time() if now is None else now
        at = message.get("at")
        if type(at) not in (int, float) or not math.isfinite(at):
            raise EnvelopeError("malformed", "message has no publish time")
        if at < now - max_age:
            raise EnvelopeError("expired", f"message published more than {max_age:g} s ago")
        event = message.get("event")
        for when in (at, message.get("as_of"), event.get("at") if isinstance(event, dict) else None):
            if type(when) in (int, float) and when > now + future_skew:
                raise EnvelopeError("future", f"message dated more than {future_skew:g} s in the future")
        return message
