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

**Redis envelope.** ``<hex HMAC-SHA256 of the JSON>.<JSON>``, keyed with a feed secret. Redis is a transport,
not a trust anchor: a client able to publish on the channel cannot forge a heartbeat (which would make
services believe they are fresh) nor an event.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

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


def _mac(secret: str, payload: bytes) -> str:
    return hmac.new(secret.encode("utf-8"), payload, hashlib.sha256).hexdigest()


def seal(message: dict[str, Any], secret: str) -> bytes:
    """A message as ``<mac>.<json>``, ready to publish."""
    payload = json.dumps(message, separators=(",", ":"), allow_nan=False).encode("utf-8")
    return _mac(secret, payload).encode("ascii") + b"." + payload


def unseal(data: bytes | str, secrets: Iterable[str]) -> dict[str, Any]:
    """The message inside an envelope; ``ValueError`` when too big, unsigned, wrongly signed or not an object."""
    if isinstance(data, str):
        data = data.encode("utf-8", "surrogateescape")
    if len(data) > MAX_MESSAGE_BYTES:
        raise ValueError("message too large")
    mac, sep, payload = data.partition(b".")
    if not sep or len(mac) != 64:
        raise ValueError("unsigned message")
    given = mac.decode("ascii", "replace")
    if not any(hmac.compare_digest(given, _mac(s, payload)) for s in secrets):
        raise ValueError("bad message signature")
    try:
        message = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise ValueError("message is not JSON") from None
    if not isinstance(message, dict):
        raise ValueError("message is not an object")
    return message
