"""Upgrading a deployment that used DRF's authtoken: the migration that adds ``ApiKey`` imports each DRF key as a
hashed key of the same user, so callers keep working, and deletes the clear keys. Runs on SQLite and, in the
PostgreSQL pass, on PostgreSQL (where the same migration installs the audit trigger)."""

from __future__ import annotations

import datetime as dt
import hashlib

import pytest
from django.contrib.auth.models import Permission, User
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from rest_framework.test import APIClient

from tokenversion_server.models import ApiKey, RevocationEvent

pytestmark = pytest.mark.django_db(transaction=True)

DRF_KEY = "9944b09199c62bcf9418ad846dd0e4bbdfc6ee4b"  # DRF's format: 40 lowercase hexadecimal characters
HAND_MADE = "short"  # set by hand through the ORM: not imported (its prefix would be the whole key)


def _migration_nodes() -> tuple[tuple[str, str], tuple[str, str]]:
    """(the migration that adds ApiKey, the one before it), by name, whatever number the chain gives it."""
    graph = MigrationExecutor(connection).loader.graph
    node = next(key for key in graph.nodes
                if key[0] == "tokenversion_server" and key[1].endswith("keys_api_keys_and_audit"))
    parent = next(p.key for p in graph.node_map[node].parents if p.key[0] == "tokenversion_server")
    return node, parent


def _create_drf_table() -> None:
    created = "datetime" if connection.vendor == "sqlite" else "timestamp with time zone"
    with connection.cursor() as cursor:  # DRF's own schema (rest_framework/authtoken/migrations)
        cursor.execute(f'CREATE TABLE authtoken_token ("key" varchar(40) NOT NULL PRIMARY KEY, '
                       f'"created" {created} NOT NULL, "user_id" integer NOT NULL UNIQUE)')


def _insert_drf_token(key: str, user: User, created: dt.datetime) -> None:
    with connection.cursor() as cursor:
        cursor.execute('INSERT INTO authtoken_token ("key", "created", "user_id") VALUES (%s, %s, %s)',
                       [key, connection.ops.adapt_datetimefield_value(created), user.pk])


def _drf_rows() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT COUNT(*) FROM authtoken_token")
        return cursor.fetchone()[0]


def test_upgrading_imports_drf_tokens_hashed_and_they_keep_working():
    node, parent = _migration_nodes()
    executor = MigrationExecutor(connection)
    executor.migrate([parent])  # the schema of a deployment before this change
    siem = User.objects.create_user("siem")
    siem.user_permissions.add(Permission.objects.get(codename="revoke_tokens"))
    other = User.objects.create_user("other")
    created = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    try:
        _create_drf_table()
        _insert_drf_token(DRF_KEY, siem, created)
        _insert_drf_token(HAND_MADE, other, created)

        executor = MigrationExecutor(connection)
        executor.migrate(executor.loader.graph.leaf_nodes())

        imported = ApiKey.objects.get()
        assert imported.holder == siem
        assert (imported.prefix, imported.created_at) == (DRF_KEY[:8], created)
        assert imported.key_hash == hashlib.sha256(DRF_KEY.encode()).hexdigest()
        assert imported.name == "imported from rest_framework.authtoken"
        assert _drf_rows() == 0  # no key stays in clear, the hand-made one included

        # The caller's configuration is unchanged: the same "Authorization: Token <key>" still revokes.
        response = APIClient().post("/tokenversion/revocations", {"scope": "realm"}, format="json",
                                    HTTP_AUTHORIZATION=f"Token {DRF_KEY}")
        assert response.status_code == 201
        event = RevocationEvent.objects.get()
        assert event.admin_user == siem
        assert event.actor == f"siem (API key {DRF_KEY[:8]} 'imported from rest_framework.authtoken')"
        refused = APIClient().post("/tokenversion/revocations", {"scope": "realm"}, format="json",
                                   HTTP_AUTHORIZATION=f"Token {HAND_MADE}")
        assert refused.status_code == 401
    finally:
        executor = MigrationExecutor(connection)
        executor.migrate(executor.loader.graph.leaf_nodes())
        with connection.cursor() as cursor:
            cursor.execute("DROP TABLE IF EXISTS authtoken_token")
    assert node in MigrationExecutor(connection).loader.applied_migrations


def test_the_migration_does_nothing_without_a_drf_table():
    """New deployments (and every test database) never had authtoken: the import is a no-op."""
    assert "authtoken_token" not in connection.introspection.table_names()
    node, parent = _migration_nodes()
    executor = MigrationExecutor(connection)
    executor.migrate([parent])
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())
    assert not ApiKey.objects.exists()
    assert node in MigrationExecutor(connection).loader.applied_migrations
