"""The forward-auth service's configuration and headers, and ``standalone.make_verifier``'s refusals: one
line for a bad configuration, never a traceback. (Its answers to tokens are in tests/test_front_doors.py;
behind real nginx in tests/test_gateway_nginx.py.)"""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.remote_helpers import ROOT
from tokenversion.core.errors import ConfigurationError, TokenRejected
from tokenversion.forwardauth import identity_headers
from tokenversion.standalone import make_verifier
from tokenversion.users import TokenUser

FEED = {"feed_url": "http://127.0.0.1:1/tokenversion/feed", "secret": "s" * 32, "autostart": False}


def test_a_missing_option_is_one_line_and_exit_status_2():
    result = subprocess.run([sys.executable, "-m", "tokenversion.forwardauth", "--issuer", "https://sso.example.com/r"],
                            cwd=ROOT, env={"PATH": "/usr/bin:/bin"}, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.strip() == ("tokenversion.forwardauth: --audience (TOKENVERSION_AUDIENCE) is required; "
                                     "--feed-url (TOKENVERSION_FEED_URL) is required; TOKENVERSION_FEED_SECRET is "
                                     "required")


def test_a_bad_number_in_the_environment_is_one_line_too():
    result = subprocess.run([sys.executable, "-m", "tokenversion.forwardauth"], cwd=ROOT,
                            env={"PATH": "/usr/bin:/bin", "TOKENVERSION_MAX_STALENESS": "soon"},
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr


def test_identity_headers_are_percent_encoded_and_roles_sorted():
    claims = {"sub": "a1", "sid": "s-1", "preferred_username": "zoë, admin\r\nX-Evil: 1",
              "realm_access": {"roles": ["b,c", "a"]}}
    headers = identity_headers(claims, TokenUser(claims))
    assert headers == {"X-Auth-Subject": "a1", "X-Auth-Username": "zo%C3%AB%2C%20admin%0D%0AX-Evil%3A%201",
                       "X-Auth-Roles": "a,b%2Cc", "X-Auth-Session": "s-1"}
    assert all(value.isascii() and value.isprintable() for value in headers.values())
    bare = {"sub": "a2"}
    assert identity_headers(bare, TokenUser(bare)) == {"X-Auth-Subject": "a2", "X-Auth-Username": "a2",
                                                       "X-Auth-Roles": "", "X-Auth-Session": ""}


@pytest.mark.parametrize("kwargs,message", [
    ({"issuer": "sso.example.com", "audience": "api"}, "issuer must be the realm's URL"),
    ({"issuer": "https://sso.example.com/r", "audience": []}, "audience is required"),
    ({"issuer": "https://sso.example.com/r", "audience": "api", "store_options": {**FEED, "colour": "blue"}},
     "cannot build HttpFeedStore"),
])
def test_make_verifier_refuses_a_bad_configuration_in_one_line(kwargs, message):
    kwargs.setdefault("store_options", FEED)
    with pytest.raises(ConfigurationError, match=message):
        make_verifier(store="tokenversion.stores.feed.HttpFeedStore", **kwargs)


def test_make_verifier_gives_the_store_the_service_values():
    verifier = make_verifier(issuer="https://sso.example.com/realms/main/", audience="api", leeway=2,
                             max_token_lifetime=600, store="tokenversion.stores.feed.HttpFeedStore",
                             store_options=FEED)
    assert verifier.validator.policy.issuer == "https://sso.example.com/realms/main"
    assert verifier.validator.policy.jwks_url == "https://sso.example.com/realms/main/protocol/openid-connect/certs"
    assert (verifier.store.leeway, verifier.store.max_token_lifetime) == (2.0, 600.0)
    assert verifier.policy.max_token_lifetime == 600


def test_make_verifier_takes_an_observer_that_hears_each_decision():
    """The doors without Django count their decisions as the Django doors do with METRICS: through an observer
    (e.g. tokenversion.metrics.ServiceMetrics' shape: a callable taking "accepted" or the refusal's code)."""
    heard: list[str] = []
    verifier = make_verifier(issuer="https://sso.example.com/realms/main", audience="api",
                             store="tokenversion.stores.feed.HttpFeedStore", store_options=FEED,
                             observer=heard.append)
    with pytest.raises(TokenRejected):
        verifier.authenticate("Bearer not.a.token")
    assert heard == ["token_invalid"]
    verifier.store.close()
