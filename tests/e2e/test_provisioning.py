"""keycloak_setup and sync_users against the real Keycloak."""

from __future__ import annotations

import uuid


def test_keycloak_setup_a_second_time_changes_nothing(stack):
    # The stack ran it once to configure the realm from scratch.
    assert stack.keycloak_setup().strip() == "No change: realm tokenversion is already configured for tokenversion."


def test_keycloak_setup_repairs_exactly_what_drifted(stack):
    admin = stack.keycloak_admin()
    client = admin.get_client(admin.get_client_id(stack.config.login_client))
    admin.update_client(client["id"], {**client, "frontchannelLogout": True,
                                       "attributes": {**client["attributes"], "backchannel.logout.url": ""}})
    out = stack.keycloak_setup()
    assert "update client tokenversion-app: backchannel.logout.url, frontchannelLogout off" in out
    assert "1 change(s) made" in out
    assert "No change" in stack.keycloak_setup()
    repaired = admin.get_client(client["id"])
    assert repaired["frontchannelLogout"] is False
    backchannel = f"{stack.config.provider_url}/tokenversion/backchannel-logout"
    assert repaired["attributes"]["backchannel.logout.url"] == backchannel


def test_keycloak_setup_dry_run_changes_nothing(stack):
    admin = stack.keycloak_admin()
    scope = admin.get_client_scope_by_name("tokenversion")
    mapper = next(m for m in admin.get_mappers_from_client_scope(scope["id"]) if m["name"] == "token version")
    admin.update_mapper_in_client_scope(scope["id"], mapper["id"], {
        **mapper, "config": {**mapper["config"], "tokenversion.read.timeout.ms": "9000"}})
    out = stack.keycloak_setup("--dry-run")
    assert "would change: update mapper 'token version': tokenversion.read.timeout.ms" in out
    assert "1 change(s) planned" in out
    assert "update mapper 'token version'" in stack.keycloak_setup()  # still there: the dry run changed nothing


def test_sync_users_pages_through_keycloak(stack):
    tag = uuid.uuid4().hex[:8]
    ids = {stack.ensure_user(f"sync-{tag}-{i}", "pw-sync-users") for i in range(7)}
    total = stack.keycloak_admin().users_count()

    out = stack.manage("sync_users", "--page-size", "3").stdout
    assert f"Synced {total} Keycloak user(s)" in out
    rows = stack.sql("SELECT subject, username FROM accounts_keycloakuser WHERE username LIKE %s", f"sync-{tag}-%")
    assert {subject for subject, _ in rows} == ids
    assert len(rows) == 7

    again = stack.manage("sync_users", "--page-size", "3").stdout
    issuer = stack.config.issuer
    assert f"Synced {total} Keycloak user(s) of {issuer}: 0 created, 0 updated, {total} unchanged." in again
