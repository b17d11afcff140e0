"""Hooks the provider plugs into tokenversion's settings: just-in-time users, username look-up, DRF users."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.db import connections, router, transaction
from django.db.models import Q

from .models import KeycloakUser

_FIELDS = ("username", "email", "last_client_id")
_select_sql: dict[str, str] = {}


def _select(using: str) -> str:
    """The one read of the hot path, as SQL built once per alias (ORM compilation costs more than the query)."""
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


def provision_user(issuer: str, subject: str, attributes: Mapping[str, str]) -> None:
    """Create or refresh the user row from what Keycloak sent to the claims endpoint.

    Runs at every token issue: the common case (a known user, nothing changed) is one indexed read in
    autocommit and no write. A new user or a change is written in a transaction of its own.
    """
    wanted = {
        "username": attributes.get("username", ""),
        "email": attributes.get("email", ""),
        "last_client_id": attributes.get("client_id", ""),
    }
    wanted = {key: value for key, value in wanted.items() if value}
    using = router.db_for_write(KeycloakUser)
    with connections[using].cursor() as cursor:
        cursor.execute(_select(using), [issuer, subject])
        row = cursor.fetchone()
    if row is None:
        KeycloakUser.objects.using(using).bulk_create(
            [KeycloakUser(issuer=issuer, subject=subject, **wanted)], ignore_conflicts=True
        )
        return
    current = dict(zip(_FIELDS, row, strict=True))
    changed = {key: value for key, value in wanted.items() if current[key] != value}
    if changed:
        with transaction.atomic(using=using):
            KeycloakUser.objects.using(using).filter(issuer=issuer, subject=subject).update(**changed)


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
