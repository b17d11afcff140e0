"""The database store: reads the provider's tables, with a per-process cache of bounded staleness.

Staleness bound: a revocation committed by *another* process is seen here at most ``CACHE_TTL`` seconds
(default 1 s) after it commits, because every cached answer is dropped that long after the read that
produced it began. A revocation made *in this process* is seen at once: the revocation service calls
``invalidate`` after its transaction commits. With ``CACHE_TTL = 0`` every request reads the database.

When the database cannot answer, the store raises ``StoreUnavailable``; it never serves an expired entry.
"""

from __future__ import annotations

import time
from typing import Any

from django.db import DatabaseError, InterfaceError, connections

from tokenversion.conf import get_settings
from tokenversion.core.cache import MISSING, TTLCache
from tokenversion.core.errors import StoreUnavailable
from tokenversion.core.revocation import RevocationView, SubjectState


class DatabaseStore:
    """Reads ``SubjectVersion``, ``RevokedSession`` and ``RealmRevocation`` from a database alias."""

    # Read by the service side's system check (tokenversion.E007), which never imports the provider.
    required_app = "tokenversion_server"

    def __init__(
        self, database: str = "default", cache_ttl: float | None = None, max_entries: int | None = None
    ) -> None:
        conf = get_settings()
        self.database = database
        ttl = conf.cache_ttl if cache_ttl is None else cache_ttl
        size = conf.cache_max_entries if max_entries is None else max_entries
        self.cache_ttl = ttl
        self._subjects: TTLCache[SubjectState] = TTLCache(ttl, size)
        self._sessions: TTLCache[bool] = TTLCache(ttl, size)
        self._realms: TTLCache[float | None] = TTLCache(ttl, 1024)

    def view(self, issuer: str, subject: str, session_id: str | None) -> RevocationView:
        state = self._subjects.get((issuer, subject))
        if state is MISSING:
            state = self._read(self._read_subject, self._subjects, (issuer, subject), issuer, subject)
        revoked = False
        if session_id:
            revoked = self._sessions.get((issuer, session_id))
            if revoked is MISSING:
                revoked = self._read(
                    self._read_session, self._sessions, (issuer, session_id), issuer, session_id
                )
        not_before = self._realms.get(issuer)
        if not_before is MISSING:
            not_before = self._read(self._read_realm, self._realms, issuer, issuer)
        return RevocationView(subject=state, session_revoked=revoked, realm_not_before=not_before)

    def invalidate(self, issuer: str, subject: str | None = None, session_id: str | None = None) -> None:
        if subject is not None:
            self._subjects.discard((issuer, subject))
        if session_id is not None:
            self._sessions.discard((issuer, session_id))
        if subject is None and session_id is None:
            self._realms.discard(issuer)

    def freshness(self) -> tuple[float, float]:
        """For service reports (``tokenversion.reporting``): ``(as_of, reached_at)``, wall-clock seconds. Every
        answer is read at request time or cached for at most ``cache_ttl`` after its read began, so every
        revocation committed before ``now - cache_ttl`` is enforced now (with ``CACHE_TTL`` 0: ``now``)."""
        now = time.time()
        return now - self.cache_ttl, now

    def close(self) -> None:
        """Nothing to release but the caches: the connection is Django's."""
        self.clear()

    def clear(self) -> None:
        self._subjects.clear()
        self._sessions.clear()
        self._realms.clear()

    def _read(self, reader, cache: TTLCache, key: Any, *args: str) -> Any:
        started = time.monotonic()
        try:
            value = reader(*args)
        except (DatabaseError, InterfaceError) as exc:
            conn = connections[self.database]
            if not conn.in_atomic_block:
                conn.close()  # let the next request reconnect once the database is back
            raise StoreUnavailable(f"revocation store unavailable: {type(exc).__name__}") from None
        cache.put(key, value, fetched_at=started)
        return value

    def _read_subject(self, issuer: str, subject: str) -> SubjectState:
        from tokenversion_server.models import SubjectVersion

        row = (
            SubjectVersion.objects.using(self.database)
            .filter(issuer=issuer, subject=subject)
            .values_list("token_version", "last_logout_time")
            .first()
        )
        if row is None:
            return SubjectState()
        version, last_logout = row
        return SubjectState(version, last_logout.timestamp() if last_logout else None)

    def _read_session(self, issuer: str, session_id: str) -> bool:
        from tokenversion_server.models import RevokedSession

        return RevokedSession.objects.using(self.database).filter(issuer=issuer, session_id=session_id).exists()

    def _read_realm(self, issuer: str) -> float | None:
        from tokenversion_server.models import RealmRevocation

        value = (
            RealmRevocation.objects.using(self.database)
            .filter(issuer=issuer)
            .values_list("not_before", flat=True)
            .first()
        )
        return value.timestamp() if value else None
