"""System checks for the remote stores and the feed: E006, W010, W011 (and silence when all is sound)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from django.core.checks import run_checks

from tests.conftest import EVENT_SECRET, MAPPER_SECRET
from tests.feed_settings import FEED_VERIFY_KEY
from tests.remote_helpers import ROOT

REDIS = "tokenversion.stores.redis.RedisStore"
FEED = "tokenversion.stores.feed.HttpFeedStore"
GOOD = {"feed_url": "https://provider.example.com/tokenversion/feed", "secret": "s" * 40}
KEYS = {"verify_keys": [FEED_VERIFY_KEY]}  # RedisStore: the provider's feed public key (tests/test_feed_signing.py)


@pytest.fixture(autouse=True)
def _single_worker(monkeypatch):
    monkeypatch.delenv("WEB_CONCURRENCY", raising=False)


@pytest.fixture
def ids(tv_settings):
    def run(**values) -> list[str]:
        tv_settings(**values)
        return sorted(m.id for m in run_checks(tags=["tokenversion"]) if m.id.startswith("tokenversion."))

    return run


def test_sound_remote_store_settings_are_silent(ids):
    assert ids(STORE=FEED, STORE_OPTIONS=GOOD) == []
    assert ids(STORE=REDIS, STORE_OPTIONS={**GOOD, **KEYS, "redis_url": "rediss://redis.example.com:6380/0"}) == []
    assert ids(FEED_SECRETS=["f" * 40]) == []


@pytest.mark.parametrize("store, options", [
    (FEED, {}),
    (FEED, {**GOOD, "feed_url": "ftp://provider/feed"}),
    (FEED, {**GOOD, "secret": ""}),
    (FEED, {**GOOD, "max_staleness": 0}),
    (FEED, {**GOOD, "max_staleness": "1"}),
    (FEED, {**GOOD, "fallback": 3}),
    (REDIS, GOOD),  # no redis_url
    (REDIS, {**GOOD, "redis_url": "http://redis"}),
    (REDIS, {**GOOD, "redis_url": "redis://127.0.0.1", "channel": ""}),
])
def test_unusable_store_options_are_e006(ids, store, options):
    assert set(ids(STORE=store, STORE_OPTIONS=options)) == {"tokenversion.E006"}


def test_clear_text_off_loopback_is_w011(ids):
    assert ids(STORE=FEED, STORE_OPTIONS={**GOOD, "feed_url": "http://provider.internal/tokenversion/feed"}) == [
        "tokenversion.W011"]
    assert ids(STORE=REDIS, STORE_OPTIONS={**GOOD, **KEYS, "redis_url": "redis://redis.internal:6379"}) == [
        "tokenversion.W011"]
    assert ids(STORE=REDIS, STORE_OPTIONS={**GOOD, **KEYS, "redis_url": "redis://127.0.0.1:6379"}) == []


@pytest.mark.parametrize("secrets", [["short"], [EVENT_SECRET], ["f" * 40, MAPPER_SECRET]])
def test_weak_or_shared_feed_secrets_are_w010(ids, secrets):
    assert ids(FEED_SECRETS=secrets) == ["tokenversion.W010"]


def service_check(store: str, options: dict) -> subprocess.CompletedProcess:
    """``manage.py check`` in a service project that does not have the provider's tables
    (``tests/remote_service``: no ``tokenversion_server``, no database at all)."""
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.remote_service.settings",
           "TOKENVERSION_TEST_ISSUER": "https://sso.example.com/realms/main",
           "REMOTE_SERVICE_STORE": store, "REMOTE_SERVICE_STORE_OPTIONS": json.dumps(options)}
    return subprocess.run([sys.executable, "-m", "django", "check"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=60, check=False)


def test_the_database_store_without_the_providers_tables_is_e007():
    """The README's first snippet left the default store in place: every token was answered 503 with no
    warning. ``manage.py check`` now says so, and names the stores that work there."""
    result = service_check("tokenversion_server.store.DatabaseStore", {})
    assert result.returncode != 0
    assert "tokenversion.E007" in result.stderr
    assert "HttpFeedStore" in result.stderr
    assert service_check(FEED, GOOD).returncode == 0
