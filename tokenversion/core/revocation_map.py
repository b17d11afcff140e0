"""An in-process map of recent revocations, for services that do not share the provider's database.

The map answers ``RevocationStore.view`` from memory. It is filled from the provider's feed (a snapshot,
then increments, pushed over Redis or long-polled over HTTP) and holds three kinds of entries:

- ``(issuer, subject) -> (version, at)``: the highest ``token_version`` seen and the time of the latest bump
  (also the subject's ``last_logout_time``);
- ``(issuer, sid) -> at``: a revoked session, revoked at ``at``;
- ``issuer -> at``: the realm epoch ("every token issued at or before ``at`` is dead").

**Why a bounded window is enough.** An entry is kept for ``window`` seconds after its ``at`` and then
dropped, so the map's size is bounded by recent revocations, not by users. A subject absent from the map
reads as version 0 with no logout time, which is only safe because of how versions reach tokens:

1. The claims endpoint embeds the version *current at issue*. A token carrying version ``v`` was issued
   before the bump to ``v + 1`` committed (a later issue would have read ``v + 1`` or more).
2. Bumps are ordered: the bump to ``v + 1`` committed no later than the bump to the current ``V``. So every
   token with a version below ``V`` was issued before the bump to ``V`` committed, at ``T_V``, and expires
   by ``T_V + MAX_TOKEN_LIFETIME``.
3. After ``T_V + MAX_TOKEN_LIFETIME + LEEWAY`` no token with a version below ``V`` passes the ``exp`` check,
   so forgetting ``V`` (reading 0) accepts nothing that was revoked. A token with version >= ``V`` was
   never revoked by that bump. Conversely, a token carrying 3 issued *after* the bump to 4 cannot exist.

The same argument holds for sessions (tokens of the session were issued before it was revoked), the
realm epoch and the logout time (both compare ``iat``, and ``iat <= at`` means ``exp <= at + lifetime``).

``at`` is the provider's clock, taken when the revocation *started*; ``exp`` is the issuer's clock; the
commit comes a transaction later. So ``window`` must be ``MAX_TOKEN_LIFETIME + LEEWAY + margin``, where
the margin covers clock skew between Keycloak and the provider and the longest revocation transaction
(``window_for`` below; 60 s by default). Skew of the *service's* clock cancels out: it moves both the
``exp`` check and the pruning. ``MAX_TOKEN_LIFETIME`` must be the realm's real longest access-token
lifetime: set lower, revocations are forgotten while revoked tokens still live.

**Merges are monotonic** (highest version, latest ``at``), so applying an entry twice, out of order, or
from a snapshot that overlaps the increments, changes nothing: the feeds rely on this to re-send rather
than risk a gap.
"""

from __future__ import annotations

import math
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from .revocation import MAX_VERSION, RevocationView, SubjectState

SCOPES = ("user", "session", "realm")
MAX_FIELD_LENGTH = 255
# Times outside this range are not revocations anyone made (and could not round-trip through a datetime).
_MIN_TIME, _MAX_TIME = 0.0, 253402300799.0  # 9999-12-31T23:59:59Z
DEFAULT_MARGIN = 60.0


def window_for(max_token_lifetime: float, leeway: float, margin: float = DEFAULT_MARGIN) -> float:
    """How long an entry must be kept: the longest token life, the leeway twice (the realm and logout rules
    refuse an ``iat`` up to ``LEEWAY`` after ``at``, and ``exp`` is accepted ``LEEWAY`` late), and a margin."""
    return float(max_token_lifetime) + 2 * float(leeway) + float(margin)


@dataclass(frozen=True, slots=True)
class FeedEvent:
    """One revocation as the feeds carry it. ``id`` is the provider's audit id (``None`` in snapshots)."""

    scope: str
    issuer: str
    at: float
    subject: str = ""
    session_id: str = ""
    version: int | None = None
    id: int | None = None

    def to_wire(self) -> dict[str, Any]:
        data: dict[str, Any] = {"scope": self.scope, "issuer": self.issuer, "at": self.at}
        if self.id is not None:
            data["id"] = self.id
        if self.subject:
            data["subject"] = self.subject
        if self.session_id:
            data["session_id"] = self.session_id
        if self.version is not None:
            data["version"] = self.version
        return data


class WireError(ValueError):
    """A feed message that does not have the expected shape; it is refused whole, never half-applied."""


def _text(data: Mapping[str, Any], key: str, required: bool) -> str:
    value = data.get(key)
    if value is None or value == "":
        if required:
            raise WireError(f"{key} is required")
        return ""
    if not isinstance(value, str) or len(value) > MAX_FIELD_LENGTH or "\x00" in value:
        raise WireError(f"{key} must be a string of at most {MAX_FIELD_LENGTH} characters")
    return value


def parse_time(value: Any, what: str = "at") -> float:
    if type(value) not in (int, float) or not math.isfinite(value) or not _MIN_TIME <= value <= _MAX_TIME:
        raise WireError(f"{what} must be a finite number of seconds since the epoch")
    return float(value)


def parse_id(value: Any, what: str = "id") -> int:
    if type(value) is not int or value < 0 or value > MAX_VERSION:
        raise WireError(f"{what} must be a non-negative integer")
    return value


_ALLOWED_KEYS = frozenset({"scope", "issuer", "at", "id", "subject", "session_id", "version"})


def parse_event(data: Any, require_id: bool = False) -> FeedEvent:
    """A ``FeedEvent`` from its JSON form; ``WireError`` for anything else (types, sizes, unknown keys)."""
    if not isinstance(data, dict):
        raise WireError("an event must be an object")
    unknown = set(data) - _ALLOWED_KEYS
    if unknown:
        raise WireError(f"unknown event fields: {', '.join(sorted(map(str, unknown)))}")
    scope = data.get("scope")
    if scope not in SCOPES:
        raise WireError(f"scope must be one of {', '.join(SCOPES)}")
    issuer = _text(data, "issuer", True)
    at = parse_time(data.get("at"))
    event_id = None
    if "id" in data or require_id:
        event_id = parse_id(data.get("id"))
    subject = _text(data, "subject", scope == "user")
    session_id = _text(data, "session_id", scope == "session")
    version = None
    if scope == "user":
        version = parse_id(data.get("version"), "version")
    elif "version" in data and data["version"] is not None:
        raise WireError("only user events carry a version")
    return FeedEvent(scope, issuer, at, subject, session_id, version, event_id)


class RevocationMap:
    """Recent revocations, merged monotonically, pruned after ``window`` seconds.

    Thread safety: any number of readers, writers serialised by a lock. Readers take no lock: each lookup is
    one dict read of an immutable value, so a reader sees an entry either before or after a merge.

    ``max_entries`` bounds memory. The map never evicts a live entry to stay under it (that would accept
    revoked tokens): it sets ``overflowed`` instead, and the store then refuses to answer (fail closed) until
    pruning brings it back under the bound. A mass revocation should use the realm epoch (one entry).
    """

    def __init__(self, window: float, max_entries: int | None = None, clock: Callable[[], float] = time.time):
        if not window > 0:
            raise ValueError("window must be positive")
        if max_entries is not None and max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self.window = float(window)
        self.max_entries = max_entries
        self._clock = clock
        self._subjects: dict[tuple[str, str], tuple[int, float]] = {}
        self._sessions: dict[tuple[str, str], float] = {}
        self._realms: dict[str, float] = {}
        self._lock = threading.Lock()

    # Reading

    def view(self, issuer: str, subject: str, session_id: str | None) -> RevocationView:
        entry = self._subjects.get((issuer, subject))
        state = SubjectState() if entry is None else SubjectState(entry[0], entry[1])
        revoked = bool(session_id) and (issuer, session_id) in self._sessions
        return RevocationView(subject=state, session_revoked=revoked, realm_not_before=self._realms.get(issuer))

    def __len__(self) -> int:
        return len(self._subjects) + len(self._sessions) + len(self._realms)

    @property
    def overflowed(self) -> bool:
        return self.max_entries is not None and len(self) > self.max_entries

    def counts(self) -> dict[str, int]:
        return {"subjects": len(self._subjects), "sessions": len(self._sessions), "realms": len(self._realms)}

    # Writing

    def apply(self, event: FeedEvent) -> bool:
        """Merge one event; True when it changed the map. Events already out of the window are skipped."""
        with self._lock:
            return self._apply(event, self._clock() - self.window)

    def apply_many(self, events: Iterable[FeedEvent]) -> int:
        with self._lock:
            horizon = self._clock() - self.window
            return sum(self._apply(event, horizon) for event in events)

    def _apply(self, event: FeedEvent, horizon: float) -> bool:
        if event.at < horizon:
            return False  # only concerns tokens that have expired (see the module docstring)
        issuer = sys.intern(event.issuer)  # one copy of the issuer string for the whole map
        if event.scope == "user":
            key = (issuer, event.subject)
            old = self._subjects.get(key)
            version = event.version or 0
            new = (version, event.at) if old is None else (max(old[0], version), max(old[1], event.at))
            if new == old:
                return False
            self._subjects[key] = new
            return True
        if event.scope == "session":
            key = (issuer, event.session_id)
            old_at = self._sessions.get(key)
            if old_at is not None and old_at >= event.at:
                return False
            self._sessions[key] = event.at
            return True
        old_at = self._realms.get(issuer)
        if old_at is not None and old_at >= event.at:
            return False
        self._realms[issuer] = event.at
        return True

    def prune(self) -> int:
        """Drop entries whose ``at`` is more than ``window`` seconds ago; the number dropped."""
        with self._lock:
            horizon = self._clock() - self.window
            dropped = 0
            for table in (self._subjects, self._sessions, self._realms):
                old = [key for key, value in table.items() if _at(value) < horizon]
                for key in old:
                    del table[key]
                dropped += len(old)
            return dropped


def _at(value: tuple[int, float] | float) -> float:
    return value[1] if isinstance(value, tuple) else value
