"""Service reports' configuration: system checks E050-E051 and W050-W054 (``manage.py check``), the one-line
errors of the doors without Django, and reporting that stays off (logged) rather than break requests."""

from __future__ import annotations

import logging

import pytest
from django.core.checks import run_checks

from tokenversion import forwardauth
from tokenversion.core.errors import ConfigurationError
from tokenversion.core.settings import ServiceSettings
from tokenversion.runtime import get_runtime
from tokenversion.standalone import make_verifier

URL = "https://provider.example.com/tokenversion/reports"
KEY = "tvs_" + "k" * 43


@pytest.fixture
def report_ids(tv_settings):
    def run(**values) -> list[str]:
        tv_settings(**values)
        messages = run_checks(tags=["tokenversion"])
        return sorted(m.id for m in messages if m.id and m.id.startswith("tokenversion.") and m.id[-3:-1] == "05")

    return run


@pytest.mark.parametrize(("values", "expected"), [
    ({}, []),
    ({"REPORT_URL": URL, "REPORT_KEY": KEY}, []),
    ({"REPORT_URL": "http://127.0.0.1:8000/tokenversion/reports", "REPORT_KEY": KEY}, []),
    ({"REPORT_URL": "ftp://provider/reports", "REPORT_KEY": KEY}, ["tokenversion.E050"]),
    ({"REPORT_URL": URL}, ["tokenversion.E051"]),
    ({"REPORT_URL": "http://provider.internal/tokenversion/reports", "REPORT_KEY": KEY}, ["tokenversion.W050"]),
    ({"REPORT_KEY": KEY}, ["tokenversion.W051"]),
    ({"REPORT_URL": URL, "REPORT_KEY": "feed-secret-of-the-provider"}, ["tokenversion.W052"]),
    ({"REPORT_URL": URL, "REPORT_KEY": KEY, "REPORT_INTERVAL": 0.2}, ["tokenversion.W053"]),
    ({"REPORT_URL": URL, "REPORT_KEY": KEY, "REPORT_QUEUE_SIZE": 10}, ["tokenversion.W054"]),
])
def test_each_reporting_misconfiguration_has_its_id(report_ids, values, expected):
    assert report_ids(**values) == expected


@pytest.mark.parametrize(("key", "value", "message"), [
    ("REPORT_INTERVAL", 0, "TOKENVERSION['REPORT_INTERVAL']: must be at least 0.1"),
    ("REPORT_QUEUE_SIZE", 0, "TOKENVERSION['REPORT_QUEUE_SIZE']: must be at least 1"),
    ("TRUSTED_PROXIES", ["10.0.0.0/8", "proxy.internal"], "TOKENVERSION['TRUSTED_PROXIES']: 'proxy.internal' is not"),
])
def test_bad_values_name_their_key(key, value, message):
    with pytest.raises(ConfigurationError, match=message.replace("[", r"\[").replace("]", r"\]")):
        ServiceSettings.from_mapping({key: value})


def test_the_environment_form(monkeypatch):
    conf = ServiceSettings.from_env(environ={"TOKENVERSION_REPORT_URL": URL, "TOKENVERSION_REPORT_KEY": KEY,
                                             "TOKENVERSION_REPORT_INTERVAL": "2.5",
                                             "TOKENVERSION_TRUSTED_PROXIES": "10.0.0.0/8, 127.0.0.1"})
    assert (conf.report_url, conf.report_key, conf.report_interval) == (URL, KEY, 2.5)
    assert [str(n) for n in conf.trusted_proxies] == ["10.0.0.0/8", "127.0.0.1/32"]


@pytest.mark.django_db
def test_a_url_without_a_key_leaves_reporting_off_and_says_so(tv_settings, caplog):
    tv_settings(REPORT_URL=URL)
    with caplog.at_level(logging.ERROR, logger="tokenversion"):
        assert get_runtime().verifier.reporter is None
    assert "service reports are off" in caplog.text and "REPORT_KEY" in caplog.text


def test_the_doors_without_django_refuse_it_in_one_error(jwks_server):
    with pytest.raises(ConfigurationError, match="REPORT_KEY"):
        make_verifier(issuer=jwks_server.issuer, audience="api", store=object(), report_url=URL)


def test_the_forward_auth_service_says_it_in_one_line(capsys):
    env = {"TOKENVERSION_ISSUER": "https://sso.example.com/realms/main", "TOKENVERSION_AUDIENCE": "api",
           "TOKENVERSION_FEED_URL": "https://provider.example.com/tokenversion/feed",
           "TOKENVERSION_FEED_SECRET": "s", "TOKENVERSION_REPORT_URL": URL}
    assert forwardauth.main([], env) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "REPORT_KEY" in err
    assert forwardauth.main(["--trusted-proxies", "gateway"], {**env, "TOKENVERSION_REPORT_KEY": KEY}) == 2
    assert "'gateway' is not an IP address" in capsys.readouterr().err
