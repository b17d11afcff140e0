from __future__ import annotations

import contextlib
import os

import pytest
from django.test import override_settings
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings

from tests.jwks import JWKSServer
from tokenversion import conf

# Property-based tests: few, deterministic examples by default so the suite stays fast and repeatable;
# HYPOTHESIS_PROFILE=thorough explores many random ones. No example database is written into the tree.
hypothesis_settings.register_profile(
    "tokenversion",
    max_examples=40,
    deadline=None,  # a first request fetches the JWKS over loopback
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
hypothesis_settings.register_profile(
    "thorough", parent=hypothesis_settings.get_profile("tokenversion"), max_examples=2000, derandomize=False
)
hypothesis_settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "tokenversion"))


@pytest.fixture(scope="session")
def jwks_server():
    server = JWKSServer()
    yield server
    server.close()


@pytest.fixture(autouse=True)
def issuer(jwks_server, settings):
    """Point TOKENVERSION at the live loopback issuer and start each test with fresh keys and caches."""
    jwks_server.keys = jwks_server.keys[:1]
    jwks_server.fail = False
    jwks_server.delay = 0.0
    settings.TOKENVERSION = {**settings.TOKENVERSION, "ISSUER": jwks_server.issuer}
    conf.reset()
    yield jwks_server
    conf.reset()


@pytest.fixture
def tv_settings(settings):
    """Change settings keys for one test: ``tv_settings(CACHE_TTL=0)``; the provider's keys (``MAPPER_SECRETS``)
    go to ``TOKENVERSION_SERVER``, the others to ``TOKENVERSION``."""

    def apply(**values):
        server = {key: value for key, value in values.items() if key in conf.PROVIDER_KEYS}
        service = {key: value for key, value in values.items() if key not in server}
        settings.TOKENVERSION = {**settings.TOKENVERSION, **service}
        settings.TOKENVERSION_SERVER = {**getattr(settings, "TOKENVERSION_SERVER", {}), **server}
        conf.reset()

    return apply


@pytest.fixture
def api(db):
    from rest_framework.test import APIClient

    return APIClient()


@contextlib.contextmanager
def database_down():
    """A real outage of the default database for the block: the live connection points at nothing, then back."""
    from django.db import connection

    saved = dict(connection.settings_dict)
    connection.close()
    if connection.vendor == "sqlite":
        connection.settings_dict["NAME"] = "/nonexistent-dir/tokenversion.sqlite3"
    else:
        connection.settings_dict["PORT"] = "1"  # nothing listens there
    try:
        yield
    finally:
        connection.close()
        connection.settings_dict.clear()
        connection.settings_dict.update(saved)


MAPPER_SECRET = "mapper-secret-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
EVENT_SECRET = "event-secret-cccccccccccccccccccccccccccccccccc"

__all__ = ["EVENT_SECRET", "MAPPER_SECRET", "override_settings"]
