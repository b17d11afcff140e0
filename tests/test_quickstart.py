"""The README's "Protect a DRF service" section, done exactly as a new user does it.

Build the wheel, install it into a fresh virtualenv, make a project with ``django-admin startproject``, paste
the settings and URL snippets *read from README.md* (so the README and this test cannot drift apart), put in
the user's own values (issuer, audience, feed URL, feed secret), and serve it under gunicorn against a real
provider and its real HTTP feed. A person would then check: a fresh token gets 200, and after
``manage.py revoke`` on the provider the same token gets 401 ``token_revoked``.

Slow (a wheel build and a virtualenv), so it runs once, in the PostgreSQL pass (marker ``quickstart``).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import pytest
from django.db import connection

from tests.conftest import MAPPER_SECRET
from tests.feed_settings import FEED_SECRET
from tests.remote_helpers import ROOT, Process, WebProcess, django_env, free_port, http_get, wait_until

pytestmark = [pytest.mark.quickstart, pytest.mark.django_db(transaction=True)]

README = ROOT / "README.md"
SECTION = "## Protect a DRF service"
# The example values in the README snippet, and what this "user" puts in their place.
EXAMPLE_ISSUER = "https://sso.example.com/realms/main"
EXAMPLE_AUDIENCE = '"orders-api"'
EXAMPLE_FEED = "https://tokenversion.example.com/tokenversion/feed"


def readme_blocks(language: str) -> list[str]:
    """The fenced blocks of one language in the README's service section, in order."""
    text = README.read_text()
    start = text.index(SECTION)
    end = text.index("\n## ", start + len(SECTION))
    return re.findall(rf"```{language}\n(.*?)```", text[start:end], flags=re.S)


def user_env(**extra: str) -> dict[str, str]:
    """A new user's shell: none of this test run's Django or Python settings leak into their project."""
    return {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/root"), "LANG": "C.UTF-8", **extra}


def run(args: list[str], cwd: Path | None = None, env: dict[str, str] | None = None, timeout: float = 300) -> str:
    result = subprocess.run(args, cwd=cwd, env=env or user_env(), capture_output=True, text=True,
                            timeout=timeout, check=False)
    if result.returncode != 0:
        raise AssertionError(f"{shlex.join(args)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result.stdout + result.stderr


def http_post_json(url: str, data: dict, headers: dict[str, str]) -> object:
    request = urllib.request.Request(url, json.dumps(data).encode(), method="POST",
                                     headers={"Content-Type": "application/json", **headers})
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.loads(response.read())


@pytest.fixture(scope="module")
def fresh_venv(tmp_path_factory) -> Path:
    """A virtualenv with nothing but what the README's install lines put there (and gunicorn to serve)."""
    home = tmp_path_factory.mktemp("quickstart")
    venv = home / "venv"
    run([sys.executable, "-m", "venv", str(venv)])
    pip = str(venv / "bin" / "pip")
    (install,) = readme_blocks("sh")
    lines = [line.split("#", 1)[0].strip() for line in install.splitlines()]
    commands = [line for line in lines if line]
    assert [c.split()[:2] for c in commands] == [["pip", "wheel"], ["pip", "install"]], commands
    for command in commands:
        command = command.replace("/path/to/tokenversion", str(ROOT))
        args = shlex.split(command)
        if args[0] == "pip":
            args[0] = pip
        # The README's glob: the shell expands it, so this does too.
        args = [str(next(home.glob(a))) if "*" in a else a for a in args]
        run(args, cwd=home)
    run([pip, "install", "--quiet", "gunicorn"], cwd=home)
    return venv


def test_the_readme_snippet_works_in_a_fresh_project(fresh_venv, jwks_server, tmp_path):
    db_name = connection.settings_dict["NAME"]
    provider = WebProcess("provider", "provider.wsgi:application",
                          django_env("tests.feed_settings", db_name, jwks_server.issuer)).start()
    service = None
    try:
        project = tmp_path / "orders"
        run([str(fresh_venv / "bin" / "django-admin"), "startproject", "orders"], cwd=tmp_path)
        settings_block, urls_block = readme_blocks("python")
        settings_block = (settings_block.replace(EXAMPLE_ISSUER, jwks_server.issuer)
                          .replace(EXAMPLE_AUDIENCE, '"tokenversion-api"')
                          .replace(EXAMPLE_FEED, f"{provider.url}/tokenversion/feed"))
        for example in (EXAMPLE_ISSUER, EXAMPLE_FEED):
            assert example not in settings_block
        with (project / "orders" / "settings.py").open("a") as settings_file:
            settings_file.write("\n" + settings_block)
        with (project / "orders" / "urls.py").open("a") as urls_file:
            urls_file.write("\n" + urls_block)

        env = user_env(TOKENVERSION_FEED_SECRET=FEED_SECRET, PYTHONUNBUFFERED="1")
        check = run([str(fresh_venv / "bin" / "python"), "manage.py", "check"], cwd=project, env=env)
        assert "System check identified no issues" in check, check

        port = free_port()
        service = Process("quickstart-service", [str(fresh_venv / "bin" / "gunicorn"), "orders.wsgi",
                                                 "--chdir", str(project), "--bind", f"127.0.0.1:{port}",
                                                 "--workers", "2", "--log-level", "warning"])
        service.env = env  # only the user's shell, not this test run's environment
        service.start()
        url = f"http://127.0.0.1:{port}/api/whoami"

        subject = str(uuid.uuid4())
        # The user logs in at Keycloak, whose mapper asks the provider for the version (and so introduces them).
        claims = http_post_json(f"{provider.url}/tokenversion/claims", {"sub": subject, "username": "carol"},
                                {"X-TokenVersion-Secret": MAPPER_SECRET})
        assert claims == {"sub": subject, "token_version": 0}
        token = jwks_server.mint(sub=subject, preferred_username="carol")
        bearer = {"Authorization": f"Bearer {token}"}

        def answered() -> tuple[int, object] | None:
            if not service.running:
                raise AssertionError(f"the service exited:\n{service.output()}")
            try:
                return http_get(url, bearer, timeout=5)
            except OSError:
                return None

        status, body = wait_until(answered, 30, interval=0.2, what="the new service to answer")
        assert (status, body) == (200, {"sub": subject, "username": "carol"}), service.output()

        status, body = http_get(url)
        assert status == 401  # no credentials at all

        run([sys.executable, "manage.py", "revoke", "carol", "--reason", "compromise"], cwd=ROOT,
            env={**os.environ, **django_env("tests.feed_settings", db_name, jwks_server.issuer)})
        revoked_at = time.monotonic()

        def refused() -> tuple[int, object] | None:
            answer = http_get(url, bearer, timeout=5)
            return answer if answer[0] != 200 else None

        status, body = wait_until(refused, 5, interval=0.05, what="the revoked token to be refused")
        assert status == 401, (status, body)
        assert body["code"] == "token_revoked"
        # Every worker refuses it from now on (each has its own feed thread).
        assert all(http_get(url, bearer)[0] == 401 for _ in range(10))
        assert time.monotonic() - revoked_at < 5
    finally:
        if service is not None:
            service.kill()
        provider.kill()
