"""Hooks the provider plugs into tokenversion's settings: just-in-time users, username look-up, DRF users."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.db import connections, router, transaction
from django.db.models import Q

from tokenversion_server.services import UNREAD, UserRead

from .models import KeycloakUser

_FIELDS = ("username", "email", "last_client_id")
_select_sql: dict[str, str] = {}


def _select(using: str) -> str:
    """The user read when the claims endpoint did not fold it into its version read, built once per alias."""
    sql = _select_sql.get(using)
    if sql is None:
        qn = connections[using].ops.quote_name
        columns = ", ".join(qn(name) for name in _FIELDS)
        # Only quoted identifiers are interpolated; every value is a bound parameter.
        sql = _select_sql[using] = (
            f"SELECT {columns} FROM {qn(KeycloakUser._meta.db_table)} "  # noqa: S608
            f"WHERE {qn('issuer')} = %s AND {qn('subject')} = %s"
        )
    return sql


class Provisioner:
    """``PROVISION_USER``: create or refresh the user row from what Keycloak sent to the claims endpoint.

    Runs at every token issue. ``user_read`` tells the claims endpoint which columns to read in the same
    statement as the version, and it passes them as ``current`` (None: no row yet); the common case (a
    known user, nothing changed) is then that one read and no write. Called without ``current`` (another
    caller, or the user table in another database) it reads the row itself.

    Concurrency: two first logins of the same user race on the unique (issuer, subject) constraint, and the
    loser's insert is ignored (``ON CONFLICT DO NOTHING``) instead of failing the token issue; a change is
    one ``UPDATE`` of the changed columns in a transaction of its own, so concurrent calls never half-write
    a row, and the last writer's attributes win (they are Keycloak's current ones either way).
    """

    user_read = UserRead(KeycloakUser, _FIELDS)

    def __call__(self, issuer: str, subject: str, attributes: Mapping[str, str],
                 current: tuple[Any, ...] | None = UNREAD) -> None:
        wanted = {
            "username": attributes.get("username", ""),
            "email": attributes.get("email", ""),
            "last_client_id": attributes.get("client_id", ""),
        }
        # An attribute Keycloak did not send keeps its stored value.
        wanted = {key: value for key, value in wanted.items() if value}
        using = router.db_for_write(KeycloakUser)
        if current is UNREAD:
            with connections[using].cursor() as cursor:
                cursor.execute(_select(using), [issuer, subject])
                current = cursor.fetchone()
        if current is None:
            KeycloakUser.objects.using(using).bulk_create(
                [KeycloakUser(issuer=issuer, subject=subject, **wanted)], ignore_conflicts=True
            )
            return
        stored = dict(zip(_FIELDS, current, strict=True))
        changed = {key: value for key, value in wanted.items() if stored[key] != value}
        if changed:
            with transaction.atomic(using=using):
                KeycloakUser.objects.using(using).filter(issuer=issuer, subject=subject).update(**changed)


provision_user = Provisioner()


def resolve_subject(issuer: str, identifier: str) -> str | None:
    """The subject of the one user whose subject, username or email is ``identifier``; None if not exactly one."""
    matches = list(
        KeycloakUser.objects.filter(issuer=issuer)
        .filter(Q(subject=identifier) | Q(username=identifier) | Q(email__iexact=identifier))
        .values_list("subject", flat=True)[:2]
    )
    return matches[0] if len(matches) == 1 else None


def lookup_user(claims: Mapping[str, Any]) -> KeycloakUser | None:
    """The provider's own user for a validated token (``USER_LOOKUP``), when it has one."""
    user = KeycloakUser.objects.filter(issuer=claims["iss"], subject=claims["sub"]).first()
    if user is not None:
        user.claims = claims
    return user
