"""``manage.py keycloak_setup``'s mapper mode (issue 12): the mapper config it writes, and the refusals it makes
before asking Keycloak anything (one-line CLI errors). The whole command against the real Keycloak is in
tests/e2e/test_provisioning.py and tests/e2e/test_cached_mapper.py."""

from __future__ import annotations

import pytest
from django.core.management import CommandError, call_command

from tokenversion_server.keycloak_admin import RealmSpec


def spec(**overrides) -> RealmSpec:
    return RealmSpec(realm="r", login_clients=("web",), audience="api", provider_url="https://tv.internal",
                     mapper_secret="m" * 32, **overrides)


def version_mapper(s: RealmSpec) -> dict:
    return next(m for m in s.mappers() if m["protocolMapper"] == "tokenversion-mapper")["config"]


def test_cached_mode_is_the_default_with_the_feed_secret_and_the_bound():
    config = version_mapper(spec(feed_secret="f" * 32))
    assert config["tokenversion.mode"] == "cached"
    assert config["tokenversion.feed.secret"] == "f" * 32
    assert config["tokenversion.max.staleness.ms"] == "2000"
    assert config["tokenversion.endpoint.url"] == "https://tv.internal/tokenversion/claims"


def test_direct_mode_writes_only_the_mode():
    config = version_mapper(spec(mapper_mode="direct", feed_secret="f" * 32))
    assert config["tokenversion.mode"] == "direct"
    assert "tokenversion.feed.secret" not in config and "tokenversion.max.staleness.ms" not in config


@pytest.mark.parametrize("args, message", [
    (["--mapper-mode", "cached"], "FEED_SECRETS is empty"),
    (["--max-staleness-ms", "50"], "--max-staleness-ms must be from 200 to 600000"),
])
def test_refusals_before_any_keycloak_call(tv_settings, args, message):
    tv_settings(FEED_SECRETS=[] if "cached" in args else ["f" * 40], MAPPER_SECRETS=["m" * 40],
                BACKCHANNEL_AUDIENCE=["web"])
    with pytest.raises(CommandError, match=message):
        call_command("keycloak_setup", "--client", "web", "--audience", "api", *args)
