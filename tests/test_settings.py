"""The settings tables (issue 10 item 2): each key written once, read from a mapping, the environment or
Django's settings, bad values refused naming the key, and the provider's keys in their own namespace with a
deprecation path for the ones still in ``TOKENVERSION``."""

from __future__ import annotations

import re
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import pytest
from django.core.checks import run_checks
from django.test import override_settings

from tests.conftest import MAPPER_SECRET
from tokenversion import conf
from tokenversion.core.errors import ConfigurationError
from tokenversion.core.settings import PROVIDER_KEYS, ServiceSettings
from tokenversion_server.conf import ServerSettings, get_server_settings

ROOT = Path(__file__).resolve().parent.parent
DOCS = (ROOT / "docs" / "configuration.md").read_text()
SUB = "0f1d2c3b-4a59-4e6f-8a7b-9c0d1e2f3a4b"


def doc_table(heading: str) -> set[str]:
    """The keys named in the first column of the table under ``heading`` in docs/configuration.md."""
    section = DOCS.split(heading, 1)[1].split("\n## ", 1)[0].split("\n### ", 1)[0]
    keys = set()
    for line in section.splitlines():
        if line.startswith("| `"):
            keys.update(re.findall(r"`([A-Z][A-Z_]+)`", line.split("|")[1]))
    return keys


# --- each key once -----------------------------------------------------------------------------------------

def test_every_field_is_a_key_but_the_derived_one():
    """The dataclass is the table: every field is a key with parser and doc (store_moved_from is derived)."""
    for cls in (ServiceSettings, ServerSettings):
        for f in fields(cls):
            if f.name == "store_moved_from":
                assert "key" not in f.metadata
                continue
            assert f.metadata["key"] == f.name.upper(), f.name
            assert callable(f.metadata["parse"]) and f.metadata["doc"], f.name


def test_the_provider_keys_are_exactly_the_provider_table_and_disjoint_from_the_service_table():
    assert set(ServerSettings.keys()) == PROVIDER_KEYS
    assert not set(ServiceSettings.keys()) & PROVIDER_KEYS


def test_the_docs_tables_list_exactly_the_keys():
    assert doc_table("## `TOKENVERSION`") == set(ServiceSettings.keys())
    assert doc_table("## `TOKENVERSION_SERVER`") == set(ServerSettings.keys())


def test_defaults_are_the_typed_values():
    settings = ServiceSettings()
    assert settings.algorithms == ("RS256",) and settings.leeway == 5.0 and settings.store_options == {}
    assert settings.jwks_url is None  # no issuer, nothing to derive it from
    assert ServiceSettings(issuer="https://sso.example.com/realms/main").jwks_url == (
        "https://sso.example.com/realms/main/protocol/openid-connect/certs")
    assert ServerSettings().redis_channel == "tokenversion:revocations"


# --- a mapping and the environment ---------------------------------------------------------------------------

SERVICE_MAPPING = {
    "ISSUER": "https://sso.example.com/realms/main/",
    "AUDIENCE": ["orders-api", "billing-api"],
    "ALGORITHMS": ["RS256", "ES256"],
    "LEEWAY": 10,
    "TOKEN_TYPE": None,
    "MAX_TOKEN_BYTES": 4096,
    "JWKS_TIMEOUT": 1.5,
    "CLAIMS_CACHE_SIZE": 0,
    "REQUIRE_VERSION_CLAIM": False,
    "CHECK_LOGOUT_TIME": True,
    "STORE": "tokenversion.stores.feed.HttpFeedStore",
    "STORE_OPTIONS": {"feed_url": "https://provider.example.com/tokenversion/feed", "max_staleness": 2.0},
    "CACHE_TTL": 0.5,
    "MAX_TOKEN_LIFETIME": 900,
    "ROLES_CLIENT": "orders",
}
SERVICE_ENV = {
    "TOKENVERSION_ISSUER": "https://sso.example.com/realms/main/",
    "TOKENVERSION_AUDIENCE": "orders-api, billing-api",
    "TOKENVERSION_ALGORITHMS": "RS256,ES256",
    "TOKENVERSION_LEEWAY": "10",
    "TOKENVERSION_TOKEN_TYPE": "",
    "TOKENVERSION_MAX_TOKEN_BYTES": "4096",
    "TOKENVERSION_JWKS_TIMEOUT": "1.5",
    "TOKENVERSION_CLAIMS_CACHE_SIZE": "0",
    "TOKENVERSION_REQUIRE_VERSION_CLAIM": "0",
    "TOKENVERSION_CHECK_LOGOUT_TIME": "true",
    "TOKENVERSION_STORE": "tokenversion.stores.feed.HttpFeedStore",
    "TOKENVERSION_STORE_OPTIONS":
        '{"feed_url": "https://provider.example.com/tokenversion/feed", "max_staleness": 2.0}',
    "TOKENVERSION_CACHE_TTL": "0.5",
    "TOKENVERSION_MAX_TOKEN_LIFETIME": "900",
    "TOKENVERSION_ROLES_CLIENT": "orders",
    # Other variables with the prefix are not keys and are left alone (the test suite's, the log level).
    "TOKENVERSION_TEST_DB": "sqlite",
    "TOKENVERSION_LOG_LEVEL": "INFO",
    "TOKENVERSION_MAPPER_SECRETS": "the provider's, not a service key",
}


def test_a_mapping_and_the_environment_give_the_same_settings():
    from_mapping = ServiceSettings.from_mapping(SERVICE_MAPPING)
    from_env = ServiceSettings.from_env(environ=SERVICE_ENV)
    assert from_mapping == from_env
    assert from_env.issuer == "https://sso.example.com/realms/main"
    assert from_env.audience == ("orders-api", "billing-api")
    assert from_env.token_type is None and from_env.require_version_claim is False
    assert from_env.store_options["max_staleness"] == 2.0
    assert from_env.token_policy().jwks_url == "https://sso.example.com/realms/main/protocol/openid-connect/certs"


def test_from_env_reads_os_environ_with_the_prefix(monkeypatch):
    monkeypatch.setenv("MYAPI_ISSUER", "https://sso.example.com/realms/x")
    monkeypatch.setenv("MYAPI_LEEWAY", "2")
    settings = ServiceSettings.from_env(prefix="MYAPI_")
    assert (settings.issuer, settings.leeway, settings.cache_ttl) == ("https://sso.example.com/realms/x", 2.0, 1.0)


def test_the_provider_table_reads_a_mapping_and_the_environment_alike():
    mapping = {"MAPPER_SECRETS": ["m" * 40, "n" * 40], "BACKCHANNEL_AUDIENCE": ["web", "mobile"],
               "FEED_MAX_WAIT": 10, "REDIS_URL": "redis://127.0.0.1:6379/0", "INITIAL_VERSION": 3}
    env = {"TOKENVERSION_MAPPER_SECRETS": f"{'m' * 40},{'n' * 40}", "TOKENVERSION_BACKCHANNEL_AUDIENCE": "web,mobile",
           "TOKENVERSION_FEED_MAX_WAIT": "10", "TOKENVERSION_REDIS_URL": "redis://127.0.0.1:6379/0",
           "TOKENVERSION_INITIAL_VERSION": "3", "TOKENVERSION_ISSUER": "a service key, not the provider's"}
    assert ServerSettings.from_mapping(mapping) == ServerSettings.from_env(prefix="TOKENVERSION_", environ=env)


BAD_VALUES = [
    ("LEEWAY", "soon"), ("LEEWAY", -1), ("LEEWAY", float("nan")), ("LEEWAY", True),
    ("ISSUER", 123), ("MAX_TOKEN_LIFETIME", None), ("MAX_TOKEN_LIFETIME", "1h"), ("MAX_TOKEN_BYTES", 0),
    ("REQUIRE_VERSION_CLAIM", "maybe"), ("CHECK_LOGOUT_TIME", 2), ("STORE_OPTIONS", ["feed_url"]),
    ("CLAIM", ""), ("AUDIENCE", 42), ("ALGORITHMS", None), ("JWKS_TIMEOUT", float("inf")),
]


@pytest.mark.parametrize(("key", "value"), BAD_VALUES)
def test_a_bad_value_is_a_configuration_error_naming_the_key(key, value):
    with pytest.raises(ConfigurationError, match=re.escape(f"TOKENVERSION['{key}']")):
        ServiceSettings.from_mapping({key: value})


@pytest.mark.parametrize(("key", "value"), [("LEEWAY", "soon"), ("CACHE_MAX_ENTRIES", "many"),
                                            ("REQUIRE_VERSION_CLAIM", "maybe"), ("STORE_OPTIONS", "{not json"),
                                            ("STORE_OPTIONS", "[1, 2]")])
def test_a_bad_environment_value_names_the_variable(key, value):
    with pytest.raises(ConfigurationError, match=f"TOKENVERSION_{key}: "):
        ServiceSettings.from_env(environ={f"TOKENVERSION_{key}": value})


@pytest.mark.parametrize(("key", "value"), [("FEED_PAGE_SIZE", 0), ("MAPPER_SECRETS", 7), ("SSO_SESSION_MAX", "10h"),
                                            ("FEED_POLL_INTERVAL", "fast"), ("REDIS_CHANNEL", "")])
def test_a_bad_provider_value_names_its_key(key, value):
    with pytest.raises(ConfigurationError, match=re.escape(f"TOKENVERSION_SERVER['{key}']")):
        ServerSettings.from_mapping({key: value})


def test_unknown_keys_are_refused_and_provider_keys_are_not_service_keys():
    with pytest.raises(ConfigurationError, match="unknown TOKENVERSION settings: LEEWAY_SECONDS"):
        ServiceSettings.from_mapping({"LEEWAY_SECONDS": 5})
    with pytest.raises(ConfigurationError, match="unknown TOKENVERSION settings: MAPPER_SECRETS"):
        ServiceSettings.from_mapping({"MAPPER_SECRETS": ["m" * 40]})
    with pytest.raises(ConfigurationError, match="unknown TOKENVERSION_SERVER settings: ISSUER"):
        ServerSettings.from_mapping({"ISSUER": "https://sso.example.com/realms/main"})


def test_unknown_provider_key_is_e000(settings):
    settings.TOKENVERSION_SERVER = {**settings.TOKENVERSION_SERVER, "FEED_SECRET": "typo"}
    conf.reset()
    messages = [m for m in run_checks(tags=["tokenversion"]) if m.id == "tokenversion.E000"]
    assert [m.msg for m in messages] == ["unknown TOKENVERSION_SERVER settings: FEED_SECRET"]


def test_the_settings_table_imports_no_framework():
    """What lint-imports proves statically, seen at run time: building settings loads no Django."""
    code = ("import sys; from tokenversion.core.settings import ServiceSettings; "
            "ServiceSettings.from_env(environ={'TOKENVERSION_ISSUER': 'https://sso.example.com/realms/x'}); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('django', 'rest_framework')))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert result.stdout.strip() == "[]"


# --- Django's reader: override_settings and the deprecation path ----------------------------------------------

def test_override_settings_changes_both_namespaces_and_restores_them(settings):
    before = conf.get_settings().leeway, get_server_settings().feed_page_size
    with override_settings(TOKENVERSION={**settings.TOKENVERSION, "LEEWAY": 42},
                           TOKENVERSION_SERVER={**settings.TOKENVERSION_SERVER, "FEED_PAGE_SIZE": 7}):
        assert conf.get_settings().leeway == 42
        assert get_server_settings().feed_page_size == 7
    assert (conf.get_settings().leeway, get_server_settings().feed_page_size) == before


@pytest.mark.django_db
def test_a_provider_key_left_in_tokenversion_still_works_and_w013_names_it(settings, client):
    legacy_secret = "legacy-mapper-secret-" + "z" * 32
    server = {k: v for k, v in settings.TOKENVERSION_SERVER.items() if k != "MAPPER_SECRETS"}
    settings.TOKENVERSION_SERVER = server
    settings.TOKENVERSION = {**settings.TOKENVERSION, "MAPPER_SECRETS": [legacy_secret], "FEED_PAGE_SIZE": 5}
    settings.TOKENVERSION_SERVER = {**server, "FEED_PAGE_SIZE": 9}
    conf.reset()

    # The provider still reads it (TOKENVERSION_SERVER wins where both hold a key); the service ignores it.
    assert get_server_settings().mapper_secrets == (legacy_secret,)
    assert get_server_settings().feed_page_size == 9
    response = client.post("/tokenversion/claims", {"sub": SUB}, content_type="application/json",
                           HTTP_X_TOKENVERSION_SECRET=legacy_secret)
    assert response.status_code == 200 and response.json()["token_version"] == 0
    refused = client.post("/tokenversion/claims", {"sub": SUB}, content_type="application/json",
                          HTTP_X_TOKENVERSION_SECRET=MAPPER_SECRET)
    assert refused.status_code == 401

    warnings = [m for m in run_checks(tags=["tokenversion"]) if m.id == "tokenversion.W013"]
    assert [m.msg for m in warnings] == [
        "TOKENVERSION['FEED_PAGE_SIZE'] is a provider setting: it moved to TOKENVERSION_SERVER['FEED_PAGE_SIZE']. "
        "TOKENVERSION_SERVER['FEED_PAGE_SIZE'] is also set and is the value used.",
        "TOKENVERSION['MAPPER_SECRETS'] is a provider setting: it moved to TOKENVERSION_SERVER['MAPPER_SECRETS']. "
        "It is still read from TOKENVERSION for this release.",
    ]
    assert all("next release" in m.hint for m in warnings)


def test_a_bad_legacy_value_names_where_it_was_written(settings):
    settings.TOKENVERSION = {**settings.TOKENVERSION, "FEED_PAGE_SIZE": "lots"}
    settings.TOKENVERSION_SERVER = {k: v for k, v in settings.TOKENVERSION_SERVER.items() if k != "FEED_PAGE_SIZE"}
    conf.reset()
    with pytest.raises(ConfigurationError, match=re.escape("TOKENVERSION['FEED_PAGE_SIZE']")):
        get_server_settings()


def test_no_w013_with_the_keys_in_their_namespace():
    assert "tokenversion.W013" not in {m.id for m in run_checks(tags=["tokenversion"])}


def test_the_docs_example_runs_as_written(monkeypatch):
    """docs/configuration.md's Python example, verbatim, with the variables it names set."""
    block = DOCS.split("### Without Django", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    monkeypatch.setenv("TOKENVERSION_ISSUER", "https://sso.example.com/realms/main")
    monkeypatch.setenv("TOKENVERSION_AUDIENCE", "orders-api,billing-api")
    monkeypatch.setenv("ORDERS_ISSUER", "https://sso.example.com/realms/orders")
    monkeypatch.setenv("ORDERS_AUDIENCE", "orders-api")
    scope: dict = {}
    exec(compile(block, "docs/configuration.md", "exec"), scope)  # the repository's own docs
    assert scope["settings"].issuer == "https://sso.example.com/realms/orders"
    assert scope["policy"].audience == ("orders-api",)
