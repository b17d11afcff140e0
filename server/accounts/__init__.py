"""The provider's user database: one row per Keycloak user, provisioned just in time by the claims endpoint."""
