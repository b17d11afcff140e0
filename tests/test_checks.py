"""``manage.py check``: each misconfiguration is reported under its stable id, and a sound one is silent."""

from __future__ import annotations

import pytest
from django.core.checks import ERROR, WARNING, run_checks

from tokenversion.checks import check_settings

AUTH = "tokenversion.authentication.TokenVersionAuthentication"
GOOD_SECRET = "s" * 32


@pytest.fixture(autouse=True)
def _single_worker(monkeypatch):
    monkeypatch.delenv("WEB_CONCURRENCY", raising=False)


@pytest.fixture
def check_ids(tv_settings):
    """Apply TOKENVERSION changes, run the checks as ``manage.py check`` does, return the tokenversion ids."""

    def run(**values) -> list[str]:
        if values:
            tv_settings(**values)
        messages = run_checks(tags=["tokenversion"])
        return sorted(m.id for m in messages if m.id and m.id.startswith("tokenversion."))

    return run


def test_test_settings_are_clean(check_ids):
    assert check_ids() == []
    assert check_settings() == []
    # Nothing else in the project's checks is an error either.
    assert [m for m in run_checks() if m.level >= ERROR] == []


def test_unknown_key_is_e000_and_stops_there(check_ids):
    ids = check_ids(ISSUER=None, LEEWAY_SECONDS=5)
    assert ids == ["tokenversion.E000"]  # not E001: nothing else can be judged from broken settings
    messages = check_settings()
    assert "LEEWAY_SECONDS" in messages[0].msg
    assert messages[0].level == ERROR


@pytest.mark.parametrize("values", [{"LEEWAY": "soon"}, {"ISSUER": 123}, {"MAX_TOKEN_LIFETIME": None}])
def test_unreadable_values_are_e000(check_ids, values):
    assert check_ids(**values) == ["tokenversion.E000"]


@pytest.mark.parametrize("issuer", [None, ""])
def test_missing_issuer_is_e001(check_ids, issuer):
    assert check_ids(ISSUER=issuer) == ["tokenversion.E001"]


@pytest.mark.parametrize("audience", [None, "", [], [""], ["api", " "]])
def test_missing_audience_is_e002(check_ids, audience):
    assert check_ids(AUDIENCE=audience) == ["tokenversion.E002"]


@pytest.mark.parametrize("audience", ["tokenversion-api", ["a", "b"]])
def test_audience_string_or_list_is_fine(check_ids, audience):
    assert check_ids(AUDIENCE=audience) == []


@pytest.mark.parametrize("algorithms", [
    ["none"], ["None"], ["HS256"], ["hs512"], ["RS256", "HS256"], [], [""],
    ["RS265"],  # a typo: PyJWT would refuse every token
    ["rs256"],  # algorithm names are case-sensitive
    "RS256",  # a string, not a list: read as the "algorithms" R, S, 2, 5, 6
])
def test_unsafe_or_unknown_algorithms_are_e003(check_ids, algorithms):
    assert check_ids(ALGORITHMS=algorithms) == ["tokenversion.E003"]


@pytest.mark.parametrize("algorithms", [["RS256"], ["RS256", "ES256", "PS512", "EdDSA"]])
def test_asymmetric_algorithms_are_fine(check_ids, algorithms):
    assert check_ids(ALGORITHMS=algorithms) == []


@pytest.mark.parametrize("store", ["tokenversion.stores.nope.Store", "tokenversion_server.store.NoSuchStore",
                                   "notadottedpath"])
def test_store_not_importable_is_e004(check_ids, store):
    assert check_ids(STORE=store) == ["tokenversion.E004"]


@pytest.mark.parametrize("issuer", ["ftp://sso.example.com/realms/main", "sso.example.com/realms/main",
                                    "https:///realms/main"])
def test_issuer_not_http_is_e005(check_ids, issuer):
    # JWKS_URL is derived from the issuer, so it is reported too.
    assert check_ids(ISSUER=issuer) == ["tokenversion.E005", "tokenversion.E005"]


def test_jwks_url_not_http_is_e005(check_ids):
    assert check_ids(JWKS_URL="file:///etc/jwks.json") == ["tokenversion.E005"]


def test_plain_http_off_loopback_is_w001(check_ids):
    ids = check_ids(ISSUER="http://sso.example.com/realms/main")
    assert ids == ["tokenversion.W001", "tokenversion.W001"]
    messages = check_settings()
    assert {m.level for m in messages} == {WARNING}
    assert "ISSUER" in messages[0].msg and "JWKS_URL" in messages[1].msg


@pytest.mark.parametrize("issuer", ["https://sso.example.com/realms/main", "http://localhost:8080/realms/x",
                                    "http://127.0.0.1:8080/realms/x", "http://[::1]:8080/realms/x"])
def test_https_or_loopback_is_fine(check_ids, issuer):
    assert check_ids(ISSUER=issuer) == []


def test_no_version_claim_and_no_logout_time_is_w002(check_ids):
    assert check_ids(REQUIRE_VERSION_CLAIM=False, CHECK_LOGOUT_TIME=False) == ["tokenversion.W002"]
    assert check_ids(REQUIRE_VERSION_CLAIM=False, CHECK_LOGOUT_TIME=True) == []


def test_long_cache_with_several_workers_is_w003(check_ids, monkeypatch):
    monkeypatch.setenv("WEB_CONCURRENCY", "4")
    assert check_ids(CACHE_TTL=5) == ["tokenversion.W003"]
    assert "4 workers" in check_settings()[0].msg
    assert check_ids(CACHE_TTL=1) == []
    monkeypatch.setenv("WEB_CONCURRENCY", "1")
    assert check_ids(CACHE_TTL=5) == []
    monkeypatch.setenv("WEB_CONCURRENCY", "lots")  # unreadable: treated as unknown, no crash
    assert check_ids(CACHE_TTL=5) == []


@pytest.mark.parametrize(("classes", "expected"), [
    (["rest_framework.authentication.SessionAuthentication", AUTH], ["tokenversion.W004"]),
    ((AUTH, "rest_framework.authentication.SessionAuthentication"), []),
    (["rest_framework.authentication.SessionAuthentication"], []),  # not used at all: nothing to say
])
def test_authentication_class_not_first_is_w004(check_ids, settings, classes, expected):
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_AUTHENTICATION_CLASSES": classes}
    assert check_ids() == expected


def test_long_leeway_is_w005(check_ids):
    assert check_ids(LEEWAY=120) == ["tokenversion.W005"]
    assert check_ids(LEEWAY=60) == []


@pytest.mark.parametrize(("values", "expected"), [
    ({"MAPPER_SECRETS": []}, ["tokenversion.W006"]),
    ({"EVENT_SECRETS": ""}, ["tokenversion.W006"]),
    ({"MAPPER_SECRETS": [], "EVENT_SECRETS": []}, ["tokenversion.W006", "tokenversion.W006"]),
    ({"MAPPER_SECRETS": ["short"]}, ["tokenversion.W007"]),
    ({"EVENT_SECRETS": f"{GOOD_SECRET},{'e' * 31}"}, ["tokenversion.W007"]),
    ({"MAPPER_SECRETS": [GOOD_SECRET], "EVENT_SECRETS": [GOOD_SECRET]}, ["tokenversion.W008"]),
    ({"MAPPER_SECRETS": [GOOD_SECRET, "m" * 40], "EVENT_SECRETS": ["e" * 40, GOOD_SECRET]},
     ["tokenversion.W008"]),
    ({"MAPPER_SECRETS": [GOOD_SECRET], "EVENT_SECRETS": ["e" * 32]}, []),
])
def test_provider_secrets_w006_w007_w008(check_ids, values, expected):
    assert check_ids(**values) == expected


def test_several_problems_are_all_reported(check_ids, monkeypatch):
    monkeypatch.setenv("WEB_CONCURRENCY", "3")
    ids = check_ids(AUDIENCE=None, ALGORITHMS=["HS256"], LEEWAY=300, CACHE_TTL=10, MAPPER_SECRETS=[])
    assert ids == ["tokenversion.E002", "tokenversion.E003", "tokenversion.W003", "tokenversion.W005",
                   "tokenversion.W006"]


def test_w009_when_backchannel_audience_is_empty(tv_settings):
    from tokenversion_server.checks import check_provider_settings as check_settings  # the provider's checks

    tv_settings(BACKCHANNEL_AUDIENCE=None)
    assert "tokenversion.W009" in {m.id for m in check_settings()}
    tv_settings(BACKCHANNEL_AUDIENCE=["web"])
    assert "tokenversion.W009" not in {m.id for m in check_settings()}


def test_w040_when_the_feed_refuses_the_cached_mappers_long_polls(check_ids):
    """Keycloak's cached mapper long-polls /feed/events for 1 s; a FEED_MAX_WAIT below it refuses every poll (400)."""
    assert check_ids(FEED_SECRETS=["f" * 40], FEED_MAX_WAIT=0.5) == ["tokenversion.W040"]
    assert check_ids(FEED_SECRETS=["f" * 40], FEED_MAX_WAIT=1) == []
    assert check_ids(FEED_SECRETS=[], FEED_MAX_WAIT=0.5) == []  # no feed at all: nothing to refuse


def test_the_old_database_store_path_still_works_with_w012(check_ids):
    """The database store moved to the provider's distribution; a service's settings written for 0.1.0 keep
    working for one release, and the check names the new path."""
    old = "tokenversion.stores" + ".db.DatabaseStore"  # (spelled so the split's path rewrite leaves it alone)
    assert check_ids(STORE=old) == ["tokenversion.W012"]
    from tokenversion.conf import get_settings
    from tokenversion.stores import get_store
    from tokenversion_server.store import DatabaseStore

    assert get_settings().store == "tokenversion_server.store.DatabaseStore"
    assert isinstance(get_store(), DatabaseStore)


def test_max_token_lifetime_below_keycloaks_default_lifespan_is_w014(check_ids):
    """The class refuses tokens living longer than MAX_TOKEN_LIFETIME; the check says so before users do."""
    assert check_ids(MAX_TOKEN_LIFETIME=299) == ["tokenversion.W014"]
    (message,) = [m for m in check_settings() if m.id == "tokenversion.W014"]
    assert message.level == WARNING
    assert "token_lifetime_exceeded" in message.msg and "300 s" in message.msg


@pytest.mark.parametrize("lifetime", [0, -1])
def test_max_token_lifetime_that_refuses_every_token_is_e014(check_ids, lifetime):
    assert check_ids(MAX_TOKEN_LIFETIME=lifetime) == ["tokenversion.E014"]


@pytest.mark.parametrize("lifetime", [300, 3600, 36000])
def test_max_token_lifetime_at_or_above_keycloaks_default_is_silent(check_ids, lifetime):
    assert check_ids(MAX_TOKEN_LIFETIME=lifetime) == []
