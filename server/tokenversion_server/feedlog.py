"""The revocation feed's source: the append-only audit trail (``RevocationEvent``), read in id order.

Every revocation writes exactly one audit row in the same transaction as the state change (``services``),
so the audit trail *is* the log of revocations. The HTTP feed and the Redis publisher both read it here.

**The settled horizon (why no committed revocation is ever skipped).** On PostgreSQL an id is taken when
the row is inserted and becomes visible when its transaction commits, so ids appear out of order. A reader
must never move its cursor past an id that may still commit. ``settle`` proves a horizon ``L``:

1. read ``L``, the identity sequence's last value: every id handed out so far, committed or not, is <= L;
2. then list the transactions holding ``RowExclusiveLock`` on the audit table. An ``INSERT`` takes that lock
   when the statement starts, before its id is drawn, and keeps it until commit or rollback. So every
   transaction that drew an id <= L was holding the lock at step 1, hence at step 2;
3. wait until none of those transactions holds it any more (they have committed or rolled back).

Then every id <= L is final: committed (and visible to any statement that starts afterwards) or gone for
good. Ids drawn later are > L. This is PostgreSQL's own way of waiting for older writers (as ``CREATE INDEX
CONCURRENTLY`` does), needs no column and no change to the writers, and waits only for transactions that
wrote audit rows, not for unrelated long transactions (a ``pg_dump`` holds no such lock). Rows with explicit
ids (``loaddata``) and two-phase commit are outside this proof; neither is used for the audit trail.

On SQLite only one transaction writes at a time and holds the write lock until it ends, so ids commit in
order and the highest visible id is already settled.

Reads must hit the primary: a replica has its own visibility order and no view of the primary's locks.
On PostgreSQL every function refuses to run in a REPEATABLE READ or SERIALIZABLE transaction: with one
snapshot for the whole transaction, rows committed after it began would stay invisible after ``settle``
proved them committed. (Autocommit, the feed's normal mode, and READ COMMITTED take a snapshot per
statement. On SQLite a transaction's snapshot is consistent with its own ``MAX(id)``, as writes are serial.)
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterable
from typing import Any

from django.db import connections
from django.db.models import Max, Q

from tokenversion.core.feed_protocol import Cursor
from tokenversion.core.revocation_map import FeedEvent

from .models import RevocationEvent, SubjectVersion

EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_US = dt.timedelta(microseconds=1)
SETTLE_POLL = 0.005


def _cursor(using: str):
    """A cursor, refused where a transaction-long snapshot would hide rows that ``settle`` proved committed."""
    conn = connections[using]
    cur = conn.cursor()
    if conn.in_atomic_block and conn.vendor == "postgresql":
        cur.execute("SELECT current_setting('transaction_isolation')")
        if cur.fetchone()[0] != "read committed":
            cur.close()
            raise RuntimeError("the revocation feed must be read in autocommit or READ COMMITTED (see feedlog)")
    return cur


def _table() -> str:
    return RevocationEvent._meta.db_table


def vendor(using: str) -> str:
    return connections[using].vendor


def allocated(using: str) -> int:
    """The highest id handed out so far (PostgreSQL: committed or not)."""
    with _cursor(using) as cur:
        if vendor(using) == "postgresql":
            cur.execute("SELECT pg_sequence_last_value(pg_get_serial_sequence(%s, 'id')::regclass)", [_table()])
        else:
            cur.execute(f"SELECT MAX(id) FROM {connections[using].ops.quote_name(_table())}")  # noqa: S608
        (value,) = cur.fetchone()
    return int(value or 0)


_LOCKERS_SQL = """
SELECT DISTINCT virtualtransaction FROM pg_locks
WHERE locktype = 'relation' AND mode = 'RowExclusiveLock' AND granted
  AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND relation = to_regclass(%s) AND pid IS DISTINCT FROM pg_backend_pid()
"""


def writers(using: str, among: Iterable[str] | None = None) -> set[str]:
    """Transactions (virtual ids) that may hold uncommitted audit rows; always empty on SQLite."""
    if vendor(using) != "postgresql":
        return set()
    sql, params = _LOCKERS_SQL, [_table()]
    if among is not None:
        sql += " AND virtualtransaction = ANY(%s)"
        params.append(list(among))
    with _cursor(using) as cur:
        cur.execute(sql, params)
        return {row[0] for row in cur.fetchall()}


def settle(using: str, deadline: float, poll: float = SETTLE_POLL) -> int | None:
    """A proven horizon (every id <= it is final), or ``None`` if audit writers outlived ``deadline``."""
    horizon = allocated(using)
    pending = writers(using)
    while pending:
        if time.monotonic() >= deadline:
            return None
        time.sleep(poll)
        pending = writers(using, pending)
    return horizon


def max_visible(using: str) -> int:
    with _cursor(using) as cur:
        cur.execute(f"SELECT MAX(id) FROM {connections[using].ops.quote_name(_table())}")  # noqa: S608
        (value,) = cur.fetchone()
    return int(value or 0)


def microseconds(value: dt.datetime) -> int:
    return (value - EPOCH) // _US


def cursor_at(using: str, safe: int) -> Cursor:
    """The cursor for a settled ``safe``, anchored on the highest existing row at or below it."""
    _cursor(using).close()  # the in-transaction guard
    row = (RevocationEvent.objects.using(using).filter(id__lte=safe).order_by("-id")
           .values_list("id", "created_at").first())
    if row is None:
        return Cursor(safe, 0, 0)
    return Cursor(safe, row[0], microseconds(row[1]))


def cursor_is_valid(using: str, cursor: Cursor, horizon: int) -> bool:
    """False when the cursor cannot come from this database: beyond every id ever handed out, or anchored
    on a row that is not there (the database was restored or replaced)."""
    if cursor.safe > horizon:
        return False
    return cursor_at(using, cursor.safe) == cursor


def feed_event(scope: str, issuer: str, at: dt.datetime, *, subject: str | None = "", session_id: str | None = "",
               version: int | None = None, id: int | None = None) -> FeedEvent:
    """The one way a revocation becomes a feed event, whether it comes from a ``services.Revocation`` (the
    Redis fast path, the stream's fast path: ``publish.event_of``), an audit row (the HTTP feed's events and the
    certifying publisher: ``to_event``) or a folded snapshot row (``snapshot_page``, ``id`` None).

    A user event carries the subject and its new version; a session event its session id and, when known, the
    subject it belonged to (the audit trail has it; a service may log or index it, and a map that ignores it
    loses nothing); a realm event neither. ``at`` is kept to the microsecond, as the audit row stores it.
    """
    seconds = microseconds(at) / 1e6
    if scope == RevocationEvent.Scope.USER:
        return FeedEvent("user", issuer, seconds, subject=subject or "", version=int(version or 0), id=id)
    if scope == RevocationEvent.Scope.SESSION:
        return FeedEvent("session", issuer, seconds, subject=subject or "", session_id=session_id or "", id=id)
    return FeedEvent("realm", issuer, seconds, id=id)


def to_event(row: tuple[Any, ...]) -> FeedEvent:
    """The feed event of an audit row read as ``_FIELDS``."""
    event_id, scope, issuer, subject, session_id, version, created_at = row
    return feed_event(scope, issuer, created_at, subject=subject, session_id=session_id, version=version,
                      id=event_id)


_FIELDS = ("id", "scope", "issuer", "subject", "session_id", "new_version", "created_at")


def read_events(using: str, after: int, limit: int) -> list[FeedEvent]:
    """Visible audit rows with id > ``after``, in id order, at most ``limit``."""
    _cursor(using).close()
    rows = (RevocationEvent.objects.using(using).filter(id__gt=after).order_by("id")
            .values_list(*_FIELDS)[:limit])
    return [to_event(row) for row in rows]


# The snapshot: every key revoked inside the window, folded (one entry per key), paged by key.

SNAPSHOT_SCOPES = ("user", "session", "realm")
_KEY_FIELD = {"user": "subject", "session": "session_id", "realm": None}


def snapshot_page(using: str, since: dt.datetime, scope: str, after: tuple[str, str] | None,
                  limit: int) -> tuple[list[FeedEvent], tuple[str, tuple[str, str]] | None]:
    """Up to ``limit`` folded entries from ``(scope, after)`` on; and where the next page starts (or None).

    Folding: per key the highest version and the latest time, which is what the map keeps. Entries come
    from audit rows created since ``since``: an older revocation only concerns expired tokens.
    """
    _cursor(using).close()
    entries: list[FeedEvent] = []
    for index in range(SNAPSHOT_SCOPES.index(scope), len(SNAPSHOT_SCOPES)):
        current = SNAPSHOT_SCOPES[index]
        key_field = _KEY_FIELD[current]
        group = ["issuer"] + ([key_field] if key_field else [])
        rows = RevocationEvent.objects.using(using).filter(scope=current, created_at__gte=since)
        if after is not None and current == scope:
            issuer, key = after
            rows = rows.filter(Q(issuer__gt=issuer) | Q(issuer=issuer, **{f"{key_field}__gt": key})
                               if key_field else Q(issuer__gt=issuer))
        # A session's subject: one per session id in practice; Max prefers a known one over "" (a session first
        # revoked by its id alone, then reported by Keycloak with its user).
        folded = {"version": Max("new_version"), "at": Max("created_at"),
                  **({"session_subject": Max("subject")} if current == "session" else {})}
        rows = rows.values(*group).annotate(**folded).order_by(*group)[: limit - len(entries) + 1]
        for row in rows:
            if len(entries) == limit:
                last = entries[-1]
                return entries, (last.scope, (last.issuer, _key(last)))
            entries.append(feed_event(current, row["issuer"], row["at"],
                                      subject=row.get("subject") or row.get("session_subject"),
                                      session_id=row.get("session_id"), version=row["version"]))
    return entries, None


def _key(event: FeedEvent) -> str:
    return event.subject if event.scope == "user" else event.session_id


# The versions: every subject above version 0, for Keycloak's cached mapper (``feed.versions_view``).


def versions_page(using: str, after: tuple[str, str] | None,
                  limit: int) -> tuple[list[tuple[str, str, int]], tuple[str, str] | None]:
    """Up to ``limit`` (issuer, subject, version) rows with version > 0 after the key ``after``, in key order;
    and the key the next page starts after (None on the last page)."""
    _cursor(using).close()
    rows = SubjectVersion.objects.using(using).filter(token_version__gt=0)
    if after is not None:
        issuer, subject = after
        rows = rows.filter(Q(issuer__gt=issuer) | Q(issuer=issuer, subject__gt=subject))
    page = list(rows.order_by("issuer", "subject").values_list("issuer", "subject", "token_version")[: limit + 1])
    if len(page) > limit:
        page = page[:limit]
        return page, (page[-1][0], page[-1][1])
    return page, None
