"""Attribute mode: each user's ``token_version`` kept in a Keycloak user attribute, so that Keycloak's own User
Attribute mapper puts it into tokens and no call leaves Keycloak at token issue (docs/keycloak.md#attribute-mode).

The path of one bump:

1. ``services.revoke_user`` commits the new version and, in the same transaction, ``enqueue`` raises the user's
   row in the outbox (``AttributeWrite``) to it: a committed bump always has its pending write, and a crash can
   lose neither. Nothing is sent to Keycloak inside the bump's transaction or the request.
2. ``tokenversion_attribute_sync`` (one long-running worker, ``Worker``) takes due rows and, for each, reads the
   user from Keycloak's admin API and writes the version only when Keycloak holds a lower one: the attribute
   never goes down, whatever order writes land in. A row whose version rose meanwhile stays for the next pass.
3. A write Keycloak refuses or cannot take (down, credentials, 5xx) is tried again with exponential backoff up to
   ``ATTRIBUTE_RETRY_MAX``; the backlog is visible in the admin, in ``--status`` and in the metrics.

Until a write lands, new tokens of that user carry the old version and are refused: safe, but a lockout. That
lag is the mode's propagation bound (measured by ``tests/e2e/test_attribute_mode.py``).
"""

from __future__ import annotations

import datetime as dt
import logging
import random
import threading
import time
from dataclasses import dataclass
from typing import Any, Protocol

from django.db import connections, router, transaction
from django.db.models import F, Min
from django.utils import timezone

from .conf import get_server_settings
from .models import AttributeWrite, SubjectVersion

logger = logging.getLogger("tokenversion.server")

RETRY_BASE = 0.5  # seconds before the first retry; doubles per failed try up to ATTRIBUTE_RETRY_MAX


class KeycloakUsers(Protocol):
    """What the worker needs of python-keycloak's ``KeycloakAdmin``."""

    def get_user(self, user_id: str, user_profile_metadata: bool = False) -> dict[str, Any]: ...

    def update_user(self, user_id: str, payload: dict[str, Any]) -> Any: ...


def _using() -> str:
    return router.db_for_write(AttributeWrite)


def _enqueue_sql(using: str) -> str:
    conn = connections[using]
    qn = conn.ops.quote_name
    table = qn(AttributeWrite._meta.db_table)
    version = f"{table}.{qn('version')}"
    # Only quoted identifiers are interpolated; every value is a bound parameter.
    return (
        f"INSERT INTO {table} ({qn('issuer')}, {qn('subject')}, {qn('version')}, {qn('created_at')}, "  # noqa: S608
        f"{qn('updated_at')}, {qn('attempts')}, {qn('next_attempt_at')}, {qn('last_error')}) "
        f"VALUES (%s, %s, %s, %s, %s, 0, %s, '') "
        f"ON CONFLICT ({qn('issuer')}, {qn('subject')}) DO UPDATE SET "
        f"{qn('version')} = CASE WHEN {version} > excluded.{qn('version')} THEN {version} "
        f"ELSE excluded.{qn('version')} END, "
        f"{qn('updated_at')} = excluded.{qn('updated_at')}, "
        f"{qn('next_attempt_at')} = excluded.{qn('next_attempt_at')}"
    )


def enqueue(issuer: str, subject: str, version: int, using: str | None = None) -> None:
    """Make sure Keycloak will learn ``version`` (or a higher one) for ``subject``: one upsert.

    A pending lower version is superseded; a pending higher one is kept (versions never go down). A new bump
    makes the row due now, even while earlier tries back off, so the freshest version is tried first.
    """
    if type(version) is not int or version < 0:
        raise ValueError(f"a version is a non-negative integer, not {version!r}")
    using = using or _using()
    conn = connections[using]
    stamp = conn.ops.adapt_datetimefield_value(timezone.now())
    with conn.cursor() as cursor:
        cursor.execute(_enqueue_sql(using), [issuer, subject, version, stamp, stamp, stamp])


def enqueue_many(issuer: str, versions: dict[str, int]) -> int:
    """``enqueue`` for several users, in one transaction; returns how many."""
    using = _using()
    with transaction.atomic(using=using):
        for subject, version in versions.items():
            enqueue(issuer, subject, version, using)
    return len(versions)


def attribute_value(user: dict[str, Any], name: str) -> int | None:
    """The version a Keycloak user representation holds in attribute ``name``; None when absent or not a
    non-negative integer (such a value is overwritten: it can only come from a hand edit)."""
    values = (user.get("attributes") or {}).get(name) or []
    found = [int(v) for v in values if isinstance(v, str) and v.isdigit() and len(v) <= 19]
    return max(found) if found else None


class UserGone(Exception):
    """Keycloak has no user of that id (deleted): nothing to write, no token of it can be issued any more."""


class UserDisabled(Exception):
    """Keycloak holds the user disabled: no write (see ``write_version``)."""


class WriteFailed(Exception):
    """Keycloak could not be asked or refused the write; the message says why in one line."""


def _describe(exc: BaseException) -> str:
    from .keycloak_admin import _describe as describe

    return describe(exc)


def write_version(admin: KeycloakUsers, subject: str, version: int, name: str) -> tuple[int | None, bool]:
    """Read the user, and write ``version`` into attribute ``name`` unless Keycloak already holds it or more.

    Returns (what Keycloak held before, whether this wrote). The whole representation is sent back (only the
    attribute changed): Keycloak's ``PUT users/{id}`` treats a missing field as one to clear on some versions.
    """
    from keycloak.exceptions import KeycloakError

    try:
        user = admin.get_user(subject)
    except KeycloakError as exc:
        if getattr(exc, "response_code", None) == 404:
            raise UserGone(subject) from None
        raise WriteFailed(f"reading user {subject} failed: {_describe(exc)}") from None
    except OSError as exc:
        raise WriteFailed(f"reading user {subject} failed: {_describe(exc)}") from None
    held = attribute_value(user, name)
    if held is not None and held >= version:
        return held, False
    if user.get("enabled") is False:
        # A disabled user gets no token. And writing would loop: Keycloak reports the update as an admin event,
        # and the event listener reports an update of a disabled user as "user.disabled", which bumps again.
        # The scan writes the version once the user is enabled again.
        raise UserDisabled(subject)
    attributes = dict(user.get("attributes") or {})
    attributes[name] = [str(version)]
    try:
        admin.update_user(subject, {**user, "attributes": attributes})
    except KeycloakError as exc:
        if getattr(exc, "response_code", None) == 404:
            raise UserGone(subject) from None
        raise WriteFailed(f"writing user {subject} failed: {_describe(exc)}") from None
    except OSError as exc:
        raise WriteFailed(f"writing user {subject} failed: {_describe(exc)}") from None
    return held, True


@dataclass
class PassResult:
    written: int = 0  # versions written into Keycloak
    already: int = 0  # Keycloak already held that version or a higher one
    gone: int = 0  # users Keycloak no longer has, or holds disabled (no write: see write_version)
    failed: int = 0  # tries that failed (rows kept, backing off)
    superseded: int = 0  # written, but a newer bump arrived meanwhile: the row stays for it

    @property
    def done(self) -> int:
        return self.written + self.already + self.gone


def backoff(attempts: int) -> float:
    """Seconds before try ``attempts + 1``: 0.5, 1, 2, 4 ... up to ATTRIBUTE_RETRY_MAX, with 20 % jitter."""
    ceiling = get_server_settings().attribute_retry_max
    return min(ceiling, RETRY_BASE * 2 ** min(attempts, 30)) * random.uniform(0.8, 1.0)  # noqa: S311


def _failed(row: AttributeWrite, error: str) -> None:
    now = timezone.now()
    AttributeWrite.objects.using(_using()).filter(pk=row.pk).update(
        attempts=F("attempts") + 1, last_error=error[:1000],
        next_attempt_at=now + dt.timedelta(seconds=backoff(row.attempts)))


def _landed(row: AttributeWrite) -> bool:
    """Delete the row if no newer bump raised it since it was read (compare and delete); True if deleted."""
    return AttributeWrite.objects.using(_using()).filter(pk=row.pk, version=row.version).delete()[0] > 0


def due_rows(limit: int) -> list[AttributeWrite]:
    return list(AttributeWrite.objects.using(_using()).filter(next_attempt_at__lte=timezone.now())
                .order_by("next_attempt_at", "id")[:limit])


def run_pass(admin: KeycloakUsers, limit: int = 200) -> PassResult:
    """Try every due row once (at most ``limit``). Stops at the first failure that is not about one user
    (Keycloak down): the rows after it would fail the same way; they stay due and are tried next pass."""
    name = get_server_settings().attribute_name
    result = PassResult()
    for row in due_rows(limit):
        try:
            _, wrote = write_version(admin, row.subject, row.version, name)
        except (UserGone, UserDisabled) as exc:
            why = "is gone from Keycloak" if isinstance(exc, UserGone) else "is disabled in Keycloak"
            logger.info("attribute sync: user %s %s; its pending v%s dropped", row.subject, why, row.version)
            result.gone += 1
            if not _landed(row):
                result.superseded += 1
            continue
        except WriteFailed as exc:
            logger.warning("attribute sync: %s (try %s)", exc, row.attempts + 1)
            _failed(row, str(exc))
            result.failed += 1
            break
        if wrote:
            result.written += 1
            logger.info("attribute sync: %s now holds v%s, %.0f ms after the bump was queued", row.subject,
                        row.version, (timezone.now() - row.updated_at).total_seconds() * 1000)
        else:
            result.already += 1
        if not _landed(row):
            result.superseded += 1
    return result


def mark_due_failed(error: str) -> int:
    """Keycloak could not even be logged into: record why on every due row and back each off."""
    rows = due_rows(10_000)
    for row in rows:
        _failed(row, error)
    return len(rows)


@dataclass(frozen=True)
class Backlog:
    pending: int
    failing: int  # rows with at least one failed try
    oldest_age: float  # seconds since the oldest pending write was queued (0: none)
    last_error: str


def backlog(now: dt.datetime | None = None) -> Backlog:
    """What is still to be written: for the operator (``--status``, admin) and the metrics."""
    now = now or timezone.now()
    rows = AttributeWrite.objects.using(_using())
    pending = rows.count()
    if not pending:
        return Backlog(0, 0, 0.0, "")
    oldest = rows.aggregate(oldest=Min("created_at"))["oldest"]
    failing = rows.filter(attempts__gt=0)
    last = failing.order_by("-updated_at", "-id").values_list("last_error", flat=True).first() or ""
    return Backlog(pending, failing.count(), max(0.0, (now - oldest).total_seconds()), last)


def scan_users(admin: Any, issuer: str, page_size: int = 500, dry_run: bool = False) -> tuple[int, int]:
    """Queue a write for every Keycloak user whose attribute is missing or below the provider's version.

    Users the provider has never seen get ``INITIAL_VERSION``: that is what they would be issued by the claims
    endpoint, so a new Keycloak user gets a claim without ever being bumped. Returns (users seen, queued).
    """
    from keycloak.exceptions import KeycloakError

    from .keycloak_admin import KeycloakUnavailable

    conf = get_server_settings()
    seen = queued = first = 0
    while True:
        try:
            page = admin.get_users({"first": first, "max": page_size, "briefRepresentation": False})
        except (KeycloakError, OSError) as exc:
            raise KeycloakUnavailable(f"listing users failed after {seen}: {_describe(exc)}") from None
        ids = [u["id"] for u in page if isinstance(u.get("id"), str)]
        known = dict(SubjectVersion.objects.using(_using()).filter(issuer=issuer, subject__in=ids)
                     .values_list("subject", "token_version"))
        wanted = {}
        for user in page:
            subject = user.get("id")
            if not isinstance(subject, str):
                continue
            version = known.get(subject, conf.initial_version)
            held = attribute_value(user, conf.attribute_name)
            if held is None or held < version:
                wanted[subject] = version
        if not dry_run:
            # As the claims endpoint would at first token issue: the user gets a version row, so a revocation
            # by subject finds them (usernames and emails come from sync_users).
            now = timezone.now()
            SubjectVersion.objects.using(_using()).bulk_create(
                [SubjectVersion(issuer=issuer, subject=s, token_version=conf.initial_version, updated_at=now)
                 for s in ids if s not in known], ignore_conflicts=True)
            if wanted:
                enqueue_many(issuer, wanted)
        seen, queued, first = seen + len(page), queued + len(wanted), first + len(page)
        if len(page) < page_size:
            return seen, queued


def scan_forever(issuer: str, stopping: threading.Event) -> None:
    """The worker's scanning thread: ``scan_users`` every ``ATTRIBUTE_SCAN_INTERVAL``, first at start.

    A thread of its own so that paging through a large realm never delays the outbox's writes (the bound)."""
    from django.db import DatabaseError
    from django.db import connection as thread_connection

    from .keycloak_admin import KeycloakUnavailable, admin_client

    while not stopping.is_set():
        interval = get_server_settings().attribute_scan_interval
        try:
            seen, queued = scan_users(admin_client(), issuer)
            if queued:
                logger.info("attribute sync: scanned %s Keycloak users, queued %s", seen, queued)
        except (KeycloakUnavailable, DatabaseError) as exc:
            logger.warning("attribute sync: scan failed, next in %.0f s: %s", interval, exc)
        finally:
            thread_connection.close()  # this thread's own connection: not held between scans
        stopping.wait(interval)


class Worker:
    """The loop of ``tokenversion_attribute_sync``: drain the outbox every ``ATTRIBUTE_SYNC_INTERVAL`` (the scan
    for users without the attribute runs beside it, ``scan_forever``)."""

    def __init__(self, issuer: str) -> None:
        self.issuer = issuer
        self.admin: Any = None
        self.paused_until = 0.0  # Keycloak refused the admin login: wait before trying again
        self.login_failures = 0

    def _admin(self) -> Any:
        from .keycloak_admin import admin_client

        if self.admin is None:
            self.admin = admin_client()
        return self.admin

    def step(self) -> PassResult | None:
        """One look: a pass over the due rows. None while paused."""
        from .keycloak_admin import KeycloakUnavailable

        conf = get_server_settings()
        now = time.monotonic()
        if now < self.paused_until:
            return None
        try:
            result = run_pass(self._admin())
        except KeycloakUnavailable as exc:
            self.admin = None
            self.login_failures += 1
            marked = mark_due_failed(str(exc))
            wait = min(conf.attribute_retry_max, RETRY_BASE * 2 ** min(self.login_failures, 30))
            logger.warning("attribute sync: %s (%s pending write(s) wait %.1f s)", exc, marked, wait)
            self.paused_until = now + wait
            return None
        self.login_failures = 0
        if result.failed:
            self.admin = None  # a fresh login next time: the token may be what failed
        return result
