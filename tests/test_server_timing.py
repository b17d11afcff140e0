"""The provider's Server-Timing header (provider/timing.py) and its persistent database connections
(provider/env.py), both of what bench/claims_floor.py measures."""

from __future__ import annotations

import importlib
import re
from pathlib import Path
from wsgiref.util import setup_testing_defaults

import pytest

from provider.env import database_from_url

TIMING = re.compile(r"^app;dur=(\d+\.\d{3}), cpu;dur=(\d+\.\d{3})$")


def get(application, path: str) -> tuple[str, dict[str, str], bytes]:
    environ: dict = {"PATH_INFO": path, "HTTP_HOST": "127.0.0.1", "SERVER_NAME": "127.0.0.1"}
    setup_testing_defaults(environ)
    seen: dict = {}

    def start_response(status, headers, exc_info=None):
        seen["status"], seen["headers"] = status, dict(headers)

    result = application(environ, start_response)
    try:
        body = b"".join(result)
    finally:
        result.close()
    return seen["status"], seen["headers"], body


@pytest.mark.django_db
def test_every_answer_says_how_long_the_provider_spent_on_it(monkeypatch):
    monkeypatch.delenv("DJANGO_SERVER_TIMING", raising=False)
    import provider.wsgi

    application = importlib.reload(provider.wsgi).application
    for path in ("/health", "/no-such-page"):
        status, headers, _ = get(application, path)
        match = TIMING.match(headers["Server-Timing"])
        assert match, headers
        app_ms, cpu_ms = float(match[1]), float(match[2])
        assert 0 < app_ms < 10_000 and 0 <= cpu_ms < 10_000
    assert status.startswith("404")


@pytest.mark.django_db
def test_server_timing_can_be_left_out(monkeypatch):
    import provider.wsgi

    monkeypatch.setenv("DJANGO_SERVER_TIMING", "0")
    try:
        status, headers, _ = get(importlib.reload(provider.wsgi).application, "/health")
    finally:
        monkeypatch.delenv("DJANGO_SERVER_TIMING")
        importlib.reload(provider.wsgi)
    assert status.startswith("200")
    assert "Server-Timing" not in headers


@pytest.mark.parametrize("url, age", [
    ("sqlite:///var/provider.sqlite3", 60),
    ("sqlite:////tmp/x.sqlite3?conn_max_age=0", 0),
    ("postgresql://u:p@127.0.0.1:5432/tv", 60),
    ("postgresql://u:p@127.0.0.1:5432/tv?conn_max_age=600", 600),
])
def test_database_connections_persist_by_default_on_both_engines(url, age):
    """A new connection per request costs more than a claims call (docs/benchmarks.md)."""
    assert database_from_url(url, Path("/srv"))["CONN_MAX_AGE"] == age
