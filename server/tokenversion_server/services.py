"""The revocation operations. Every surface (admin, CLI, REST, Keycloak events, back-channel logout) calls
these and nothing else writes revocation state, so the rules live in one place.

Each operation is one transaction: the state change and its audit row commit together or not at all. A user
bump is a single ``INSERT ... ON CONFLICT DO UPDATE ... RETURNING`` statement, so concurrent bumps on any
number of processes never lose an increment, and the audit row records exactly the versions it moved between.
After commit, the process's store forgets what it cached (so this process sees the bump at once) and
``revocation_committed`` is sent for remote fan-out.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from dataclasses import dataclass, field
from typing import Any

from django.db import IntegrityError, InterfaceError, OperationalError, connections, router, transaction
from django.db.models import Model
from django.utils import timezone
from django.utils.module_loading import import_string

from tokenversion.conf import get_settings
from tokenversion.core.revocation import SubjectState
from tokenversion.stores import get_store
from tokenversion_server.signals import revocation_committed

from .conf import get_server_settings
from .models import RealmRevocation, RevocationEvent, RevokedSession, SeenIdentifier, SubjectVersion

Reason = RevocationEvent.Reason
Scope = RevocationEvent.Scope
logger = logging.getLogger("tokenversion.server")

# Keycloak user ids are UUIDs, federated users look like "f:<provider>:<id>", and Keycloak 26 session ids are
# 24 base64url characters, so about one in 32 starts with "-" or "_". Be strict, but not UUID-only.
_IDENTIFIER = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._:@-]{0,254}")


class InvalidRequest(ValueError):
    """An argument that no revocation can be made from (the surfaces turn it into a 400 or a CLI error)."""


@dataclass(frozen=True)
class Actor:
    """Who asked for a revocation, for the audit trail."""

    type: str
    name: str = ""
    admin_user: Any = None

    @classmethod
    def admin(cls, user) -> Actor:
        return cls(RevocationEvent.ActorType.ADMIN, user.get_username(), user)

    @classmethod
    def api(cls, user) -> Actor:
        return cls(RevocationEvent.ActorType.API, user.get_username(), user)

    @classmethod
    def api_key(cls, key) -> Actor:
        """The key's own holder, and which of the holder's keys: whoever created the key is not the actor."""
        return cls(RevocationEvent.ActorType.API, f"{key.holder.get_username()} ({key.describe()})", key.holder)

    @classmethod
    def cli(cls, name: str) -> Actor:
        return cls(RevocationEvent.ActorType.CLI, name)

    @classmethod
    def keycloak(cls, what: str) -> Actor:
        return cls(RevocationEvent.ActorType.KEYCLOAK, what)

    @classmethod
    def system(cls, what: str = "") -> Actor:
        return cls(RevocationEvent.ActorType.SYSTEM, what)


@dataclass(frozen=True)
class Revocation:
    """What a revocation did; also the payload of ``revocation_committed``."""

    scope: str
    issuer: str
    reason: str
    at: dt.datetime
    subject: str = ""
    session_id: str = ""
    old_version: int | None = None
    new_version: int | None = None
    audit_id: int | None = None
    changed: bool = True  # False: it was already in force (a repeated session revocation), nothing written
    extra: dict[str, Any] = field(default_factory=dict)
    # Session revocations: until when the row is kept; for manual ones, what became of the Keycloak session.
    kept_until: dt.datetime | None = None
    keycloak_session: str = ""  # "ended", "not_found" (already gone) or "not_ended"
    keycloak_detail: str = ""  # one sentence for the answer (REST field, CLI line, admin message, audit note)


def is_valid_identifier(value: Any) -> bool:
    """The provider's one rule for a subject, session id or Keycloak event id it accepts and writes (claims,
    events, back-channel logout, REST API, admin, CLI): 1 to 255 ASCII letters, digits and ``. _ : @ -``, not
    starting with ``.``, ``:`` or ``@``.

    Stricter than ``tokenversion.core.revocation.is_identifier`` on purpose, and a subset of it (every identifier
    valid here is valid there, ``tests/test_services.py``). The core's rule is the service side's: a service must
    answer for any token its issuer signed, so it only refuses what could not be stored or queried (empty, too
    long, control characters). The provider is where revocations are *written*: it refuses anything Keycloak does
    not issue, so no odd string reaches the audit trail, the admin's URLs and messages, or a feed event.
    """
    return isinstance(value, str) and _IDENTIFIER.fullmatch(value) is not None


def check_identifier(value: Any, what: str) -> str:
    """``value`` if ``is_valid_identifier``; otherwise ``InvalidRequest`` naming ``what`` (a 400 or a CLI error)."""
    if not is_valid_identifier(value):
        raise InvalidRequest(f"{what} must be 1 to 255 characters of letters, digits and . _ : @ -")
    return value


def resolve_issuer(issuer: str | None) -> str:
    """The issuer an operation applies to: the configured one; another is refused (this provider serves one)."""
    configured = get_settings().issuer
    if not configured:
        raise InvalidRequest("TOKENVERSION['ISSUER'] is not configured")
    if issuer is None or issuer.rstrip("/") == configured:
        return configured
    raise InvalidRequest("unknown issuer")


def _check_reason(reason: str) -> str:
    if reason not in Reason.values:
        raise InvalidRequest(f"reason must be one of: {', '.join(Reason.values)}")
    return reason


def _db(model) -> str:
    return router.db_for_write(model)


def _audit(rev: Revocation, actor: Actor, note: str, using: str) -> RevocationEvent:
    return RevocationEvent.objects.using(using).create(
        created_at=rev.at,
        scope=rev.scope,
        issuer=rev.issuer,
        subject=rev.subject,
        session_id=rev.session_id,
        actor_type=actor.type,
        actor=actor.name[:255],
        admin_user=actor.admin_user,
        reason=rev.reason,
        old_version=rev.old_version,
        new_version=rev.new_version,
        note=note,
    )


def _after_commit(rev: Revocation, using: str) -> None:
    def notify() -> None:
        get_store().invalidate(rev.issuer, rev.subject or None, rev.session_id or None)
        revocation_committed.send(sender=Revocation, record=rev)

    transaction.on_commit(notify, using=using)


def _bump_sql(using: str) -> str:
    conn = connections[using]
    qn = conn.ops.quote_name
    table = qn(SubjectVersion._meta.db_table)
    # Only quoted identifiers are interpolated; every value is a bound parameter.
    return (
        f"INSERT INTO {table} ({qn('issuer')}, {qn('subject')}, {qn('token_version')}, "  # noqa: S608
        f"{qn('last_logout_time')}, {qn('updated_at')}) VALUES (%s, %s, %s, %s, %s) "
        f"ON CONFLICT ({qn('issuer')}, {qn('subject')}) DO UPDATE SET "
        f"{qn('token_version')} = {table}.{qn('token_version')} + 1, "
        f"{qn('last_logout_time')} = excluded.{qn('last_logout_time')}, "
        f"{qn('updated_at')} = excluded.{qn('updated_at')} "
        f"RETURNING {qn('token_version')}"
    )


def revoke_user(
    subject: str, *, reason: str, actor: Actor, issuer: str | None = None, note: str = ""
) -> Revocation:
    """Kill every token of one user issued so far: bump ``token_version`` and set ``last_logout_time``."""
    issuer = resolve_issuer(issuer)
    check_identifier(subject, "subject")
    _check_reason(reason)
    using = _db(SubjectVersion)
    conn = connections[using]
    now = timezone.now()
    stamp = conn.ops.adapt_datetimefield_value(now)
    initial = get_server_settings().initial_version
    with transaction.atomic(using=using):
        with conn.cursor() as cursor:
            cursor.execute(_bump_sql(using), [issuer, subject, initial + 1, stamp, stamp])
            (new_version,) = cursor.fetchone()
        if get_server_settings().attribute_sync:
            # Attribute mode: the pending Keycloak write commits with the bump (the worker sends it later).
            from .attribute_sync import enqueue

            enqueue(issuer, subject, new_version, using)
        rev = Revocation(Scope.USER, issuer, reason, now, subject=subject,
                         old_version=new_version - 1, new_version=new_version)
        audit = _audit(rev, actor, note, using)
        rev = Revocation(**{**rev.__dict__, "audit_id": audit.pk})
        _after_commit(rev, using)
    return rev


def revoke_session(
    session_id: str, *, actor: Actor, reason: str = Reason.LOGOUT, subject: str = "",
    issuer: str | None = None, note: str = "", keep_seconds: float | None = None,
    renew_since: dt.datetime | None = None,
) -> Revocation:
    """Kill every token of one Keycloak session (``sid``); other sessions of the user keep working.

    The row is kept ``keep_seconds`` (default ``MAX_TOKEN_LIFETIME``: then no token of the session can
    still be alive, as long as Keycloak cannot mint new ones for it). A session already revoked and not
    expired is left alone (``changed`` False, no audit row), unless its row was written at or after
    ``renew_since``: that is the back-channel logout Keycloak sends while ``revoke_session_everywhere`` ends
    the session, and the manual revocation is still recorded under its own actor.
    """
    issuer = resolve_issuer(issuer)
    check_identifier(session_id, "session id")
    if subject:
        check_identifier(subject, "subject")
    _check_reason(reason)
    using = _db(RevokedSession)
    conn = connections[using]
    now = timezone.now()
    keep = get_settings().max_token_lifetime if keep_seconds is None else keep_seconds
    expires = now + dt.timedelta(seconds=keep)
    rev = Revocation(Scope.SESSION, issuer, reason, now, subject=subject, session_id=session_id,
                     kept_until=expires)
    params = [issuer, session_id, subject, conn.ops.adapt_datetimefield_value(now),
              conn.ops.adapt_datetimefield_value(expires)]
    if renew_since is not None:
        params.append(conn.ops.adapt_datetimefield_value(renew_since))
    with transaction.atomic(using=using):
        with conn.cursor() as cursor:
            cursor.execute(_revoke_session_sql(using, renew_since is not None), params)
            if cursor.fetchone() is None:
                # Already revoked and not expired (Keycloak reports a logout twice: back-channel and event).
                kept = RevokedSession.objects.using(using).filter(issuer=issuer, session_id=session_id)
                return Revocation(**{**rev.__dict__, "changed": False,
                                     "kept_until": kept.values_list("expires_at", flat=True).first()})
        audit = _audit(rev, actor, note, using)
        rev = Revocation(**{**rev.__dict__, "audit_id": audit.pk})
        _after_commit(rev, using)
    return rev


def _revoke_session_sql(using: str, renew_since: bool = False) -> str:
    """Insert the session, or renew an expired row (or one written since ``renew_since``, the last
    parameter), never shortening its keep; returns a row only when it changed something."""
    conn = connections[using]
    qn = conn.ops.quote_name
    table = qn(RevokedSession._meta.db_table)
    expires = f"{table}.{qn('expires_at')}"
    renew = f" OR {table}.{qn('revoked_at')} >= %s" if renew_since else ""
    return (
        f"INSERT INTO {table} ({qn('issuer')}, {qn('session_id')}, {qn('subject')}, "  # noqa: S608
        f"{qn('revoked_at')}, {qn('expires_at')}) VALUES (%s, %s, %s, %s, %s) "
        f"ON CONFLICT ({qn('issuer')}, {qn('session_id')}) DO UPDATE SET "
        f"{qn('revoked_at')} = excluded.{qn('revoked_at')}, {qn('expires_at')} = CASE WHEN {expires} > "
        f"excluded.{qn('expires_at')} THEN {expires} ELSE excluded.{qn('expires_at')} END "
        f"WHERE {expires} <= excluded.{qn('revoked_at')}{renew} "
        f"RETURNING {qn('id')}"
    )


def revoke_session_everywhere(
    session_id: str, *, actor: Actor, reason: str = Reason.LOGOUT, subject: str = "",
    issuer: str | None = None, note: str = "",
) -> Revocation:
    """A manual session revocation (REST API, admin form, ``revoke --session``): end the Keycloak session
    too, then revoke its tokens.

    Keycloak re-runs the mappers on every refresh, so while the Keycloak session lives its client can
    refresh into new tokens for the same ``sid``; those are refused only while the revocation is kept. So:

    - Keycloak ended the session (or had none of that id): kept ``MAX_TOKEN_LIFETIME``, as for a logout;
    - Keycloak could not be asked (no admin credentials, unreachable, an error): kept ``SSO_SESSION_MAX``,
      the longest a Keycloak session can live, and the answer says so (``keycloak_detail``).

    Keycloak is asked first, outside any transaction: it sends its back-channel logout to this provider
    before it answers, and that request must not wait on a lock held here. Arguments are checked before.
    """
    issuer = resolve_issuer(issuer)
    check_identifier(session_id, "session id")
    if subject:
        check_identifier(subject, "subject")
    _check_reason(reason)
    from . import keycloak_admin  # python-keycloak is only needed here and in the admin actions

    conf = get_settings()
    started = timezone.now()
    try:
        found = keycloak_admin.end_session(session_id)
    except keycloak_admin.KeycloakUnavailable as exc:
        keep = max(get_server_settings().sso_session_max, conf.max_token_lifetime)
        state, detail = "not_ended", (
            f"Keycloak session not ended ({exc}): the revocation is kept for SSO_SESSION_MAX ({keep} s) instead "
            f"of MAX_TOKEN_LIFETIME ({conf.max_token_lifetime} s). End the session in Keycloak.")
        logger.warning("session %s revoked, but %s", session_id, detail)
    else:
        keep = conf.max_token_lifetime
        state, detail = ("ended", "Keycloak session ended.") if found else (
            "not_found", "Keycloak has no session of that id (already ended).")
    rev = revoke_session(session_id, actor=actor, reason=reason, subject=subject, issuer=issuer,
                         note=f"{note}\n{detail}" if note else detail, keep_seconds=keep, renew_since=started)
    return Revocation(**{**rev.__dict__, "keycloak_session": state, "keycloak_detail": detail})


def revoke_realm(*, actor: Actor, reason: str = Reason.ADMIN, issuer: str | None = None,
                 note: str = "") -> Revocation:
    """Kill every token of the realm issued so far, with one write (the realm epoch)."""
    issuer = resolve_issuer(issuer)
    _check_reason(reason)
    using = _db(RealmRevocation)
    now = timezone.now()
    with transaction.atomic(using=using):
        RealmRevocation.objects.using(using).bulk_create(
            [RealmRevocation(issuer=issuer, not_before=now, updated_at=now)],
            update_conflicts=True,
            unique_fields=["issuer"],
            update_fields=["not_before", "updated_at"],
        )
        rev = Revocation(Scope.REALM, issuer, reason, now)
        audit = _audit(rev, actor, note, using)
        rev = Revocation(**{**rev.__dict__, "audit_id": audit.pk})
        _after_commit(rev, using)
    return rev


@dataclass(frozen=True)
class RevocationRequest:
    """One revocation to make, whoever asks for it: the REST API, Keycloak's events, the CLI (``revoke``).

    ``scope`` says which identifier counts: ``subject`` for ``user`` (a subject, already resolved from a
    username or email by the caller, who answers "unknown user" its own way); ``session_id`` for ``session``
    (``subject`` optional, kept in the audit row and the feed event); neither for ``realm``. ``revoke`` checks
    the rest (identifiers, reason, issuer) before any write, as the ``revoke_*`` functions always did.
    """

    scope: str
    actor: Actor
    reason: str
    subject: str = ""
    session_id: str = ""
    note: str = ""
    issuer: str | None = None
    # Session scope: a manual revocation ends the Keycloak session too (``revoke_session_everywhere``); a
    # Keycloak event reports a session Keycloak has already ended, so it passes False.
    end_keycloak_session: bool = True


def revoke(request: RevocationRequest) -> Revocation:
    """Make ``request``: the one dispatch of a revocation scope to ``revoke_user``, ``revoke_session`` (or
    ``revoke_session_everywhere``) and ``revoke_realm``."""
    if request.scope == Scope.USER:
        return revoke_user(request.subject, reason=request.reason, actor=request.actor, issuer=request.issuer,
                           note=request.note)
    if request.scope == Scope.SESSION:
        revoke_one = revoke_session_everywhere if request.end_keycloak_session else revoke_session
        return revoke_one(request.session_id, subject=request.subject, reason=request.reason, actor=request.actor,
                          issuer=request.issuer, note=request.note)
    if request.scope == Scope.REALM:
        return revoke_realm(reason=request.reason, actor=request.actor, issuer=request.issuer, note=request.note)
    raise InvalidRequest(f"scope must be one of: {', '.join(Scope.values)}")


@dataclass(frozen=True)
class UserRead:
    """The columns of a provider's user row that a ``PROVISION_USER`` hook compares at every token issue.

    A hook that declares one (as its ``user_read`` attribute) lets the claims endpoint read them in the same
    statement as the version, so a known, unchanged user costs one round trip. ``model`` must have
    ``issuer`` and ``subject`` fields, unique together; when the router puts it in another database than
    the version table, the hook is called without ``current`` and reads the row itself.
    """

    model: type[Model]
    fields: tuple[str, ...]


class _Unread:
    """What ``current_version_and_user`` returns for the user when it did not read it (no ``user_read``, or
    the user table in another database): distinct from None, which means "read, and there is no row"."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "UNREAD"


UNREAD: Any = _Unread()
# (version read, version create) per alias; the folded read per (alias, UserRead).
_version_sql_cache: dict[str, tuple[str, str]] = {}
_folded_sql_cache: dict[tuple[str, UserRead], str] = {}


def _version_sql(using: str) -> tuple[str, str]:
    """The read and the create-if-missing statements of ``current_version``, built once per alias."""
    sql = _version_sql_cache.get(using)
    if sql is None:
        qn = connections[using].ops.quote_name
        table = qn(SubjectVersion._meta.db_table)
        # Only quoted identifiers are interpolated; every value is a bound parameter.
        select = (f"SELECT {qn('token_version')} FROM {table} "  # noqa: S608
                  f"WHERE {qn('issuer')} = %s AND {qn('subject')} = %s")
        create = (f"INSERT INTO {table} ({qn('issuer')}, {qn('subject')}, {qn('token_version')}, "  # noqa: S608
                  f"{qn('updated_at')}) VALUES (%s, %s, %s, %s) "
                  f"ON CONFLICT ({qn('issuer')}, {qn('subject')}) DO NOTHING")
        sql = _version_sql_cache[using] = (select, create)
    return sql


def _folded_sql(using: str, user_read: UserRead) -> str:
    """One statement, always one row: the version (NULL if unknown), the user row's presence and fields.

    Two unique-index lookups in one round trip; the left joins on a one-row relation keep the answer a
    single row whichever of the two rows exist.
    """
    key = (using, user_read)
    sql = _folded_sql_cache.get(key)
    if sql is None:
        qn = connections[using].ops.quote_name
        meta = user_read.model._meta
        column = {name: qn(meta.get_field(name).column) for name in ("issuer", "subject", *user_read.fields)}
        user_columns = "".join(f", u.{column[name]}" for name in user_read.fields)
        # Only quoted identifiers are interpolated; every value is a bound parameter.
        sql = _folded_sql_cache[key] = (
            f"SELECT v.{qn('token_version')}, u.{qn(meta.pk.column)}{user_columns} "  # noqa: S608
            f"FROM (SELECT 1 AS one) AS k "
            f"LEFT JOIN {qn(SubjectVersion._meta.db_table)} AS v "
            f"ON v.{qn('issuer')} = %s AND v.{qn('subject')} = %s "
            f"LEFT JOIN {qn(meta.db_table)} AS u "
            f"ON u.{column['issuer']} = %s AND u.{column['subject']} = %s"
        )
    return sql


def _hot_read(using: str, sql: str, params: list[Any]) -> tuple[Any, ...] | None:
    """One read statement in autocommit whose first try doubles as the connection's health check.

    With ``CONN_HEALTH_CHECKS`` Django would send a ``SELECT 1`` before the first query of a request on a
    reused connection: a round trip per call. Here the read itself is the check: if it fails on a reused
    connection outside a transaction, the connection is closed and the read, which writes nothing, runs
    once more on a new one, which is what the health check would have led to.
    """
    conn = connections[using]
    folded_check = (conn.connection is not None and conn.health_check_enabled and not conn.health_check_done
                    and not conn.in_atomic_block)
    if folded_check:
        conn.health_check_done = True
    try:
        with conn.cursor() as cursor:
            cursor.execute(sql, params)
            return cursor.fetchone()
    except (OperationalError, InterfaceError):
        if not folded_check:
            raise
        conn.close()
    with conn.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchone()


def _create_version(using: str, issuer: str, subject: str) -> int:
    """Create the subject's row at the initial version (unless a concurrent call just did) and read it."""
    select, create = _version_sql(using)
    conn = connections[using]
    stamp = conn.ops.adapt_datetimefield_value(timezone.now())
    with transaction.atomic(using=using), conn.cursor() as cursor:
        cursor.execute(create, [issuer, subject, get_server_settings().initial_version, stamp])
        cursor.execute(select, [issuer, subject])
        return cursor.fetchone()[0]


def current_version(subject: str, issuer: str | None = None) -> int:
    """The subject's version, read from the primary and created at the initial version if unknown.

    This is what a token is issued with, so it must never come from a cache or a replica: a stale,
    lower value would make every token of the user be refused.

    It runs at every token issue (the claims endpoint), so a known subject costs one indexed ``SELECT``
    in autocommit, in hand-written SQL: no transaction round trips, no ORM query compilation. Only an
    unknown subject opens a transaction (``IMMEDIATE`` on SQLite) to create its row.
    """
    return current_version_and_user(subject, issuer)[0]


def current_version_and_user(subject: str, issuer: str | None = None,
                             user_read: UserRead | None = None) -> tuple[int, Any]:
    """``current_version``, and with ``user_read`` the provider's user row read in the same statement.

    Returns the version and, when ``user_read`` is given and its table is in the same database, the row's
    ``user_read.fields`` values as a tuple (None when the user has no row yet); otherwise ``UNREAD``, and
    the caller reads the user itself. A known subject costs one indexed ``SELECT`` in autocommit.
    """
    issuer = resolve_issuer(issuer)
    check_identifier(subject, "subject")
    using = _db(SubjectVersion)
    if user_read is not None and router.db_for_write(user_read.model) == using:
        # Never None: the one-row relation on the left of the joins.
        row = _hot_read(using, _folded_sql(using, user_read), [issuer, subject, issuer, subject]) or ()
        version = row[0] if row[0] is not None else _create_version(using, issuer, subject)
        return version, (tuple(row[2:]) if row[1] is not None else None)
    row = _hot_read(using, _version_sql(using)[0], [issuer, subject])
    return (row[0] if row is not None else _create_version(using, issuer, subject)), UNREAD


def subject_state(subject: str, issuer: str | None = None) -> SubjectState:
    """The stored state of one subject (for the admin and the CLI), without creating anything."""
    issuer = resolve_issuer(issuer)
    row = SubjectVersion.objects.filter(issuer=issuer, subject=subject).first()
    if row is None:
        return SubjectState(get_server_settings().initial_version, None)
    last = row.last_logout_time.timestamp() if row.last_logout_time else None
    return SubjectState(row.token_version, last)


def find_subject(identifier: str, issuer: str | None = None) -> str | None:
    """The subject a person means by a subject, username or email; None when no known user matches.

    Asks the provider's ``SUBJECT_RESOLVER`` first (the user database), then the version table, so a
    subject that has been seen by the claims endpoint or revoked before is always found.
    """
    issuer = resolve_issuer(issuer)
    resolver = get_server_settings().subject_resolver
    if resolver:
        found = import_string(resolver)(issuer, identifier)
        if found:
            return found
    if SubjectVersion.objects.filter(issuer=issuer, subject=identifier).exists():
        return identifier
    return None


def remember_once(kind: str, value: str, expires_at: dt.datetime, issuer: str | None = None) -> bool:
    """Record an identifier that may be used once; False when it was already seen (a replay or duplicate).

    The unique constraint decides, so two concurrent deliveries of the same identifier cannot both win.
    """
    issuer = resolve_issuer(issuer)
    using = _db(SeenIdentifier)
    try:
        with transaction.atomic(using=using):
            SeenIdentifier.objects.using(using).create(
                kind=kind, issuer=issuer, value=value, expires_at=expires_at
            )
    except IntegrityError:
        return False
    return True


def purge_expired(now: dt.datetime | None = None) -> dict[str, int]:
    """Delete session revocations and seen identifiers that can no longer matter."""
    now = now or timezone.now()
    sessions, _ = RevokedSession.objects.filter(expires_at__lte=now).delete()
    seen, _ = SeenIdentifier.objects.filter(expires_at__lte=now).delete()
    return {"sessions": sessions, "seen_identifiers": seen}
