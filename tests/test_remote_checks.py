"""System checks for the remote stores and the feed: E006, W010, W011 (and silence when all is sound)."""

from __future__ import annotations

import pytest
from django.core.checks import run_checks

from tests.conftest import EVENT_SECRET, MAPPER_SECRET
from tests.feed_settings import FEED_VERIFY_KEY

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
