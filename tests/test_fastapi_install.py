"""The README's "FastAPI (no Django)" section, done as a new user does it: the FastAPI extra in a fresh
virtualenv brings no Django, and the README's ``main.py`` served by uvicorn refuses a revoked token.

Build the wheel, ``pip install "<wheel>[fastapi,redis]"`` into a fresh virtualenv, check that neither Django
nor DRF came with it, write ``main.py`` *read from README.md* with this user's values (issuer, audience, feed
URL), serve it with the virtualenv's uvicorn against a real provider process and its real HTTP feed, and use
real signed tokens (``tests/jwks.py``): 200, then 401 ``token_revoked`` once the user is revoked.

Slow (a wheel build and a virtualenv), so it runs once, in the PostgreSQL pass (marker ``quickstart``).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest
from django.db import connection

from tests.feed_settings import FEED_SECRET
from tests.remote_helpers import ROOT, Process, WebProcess, django_env, free_port, wait_until
from tokenversion_server import services

pytestmark = [pytest.mark.quickstart, pytest.mark.django_db(transaction=True)]

README = ROOT / "README.md"
SECTION = "### FastAPI (no Django)"


def readme_main_py() -> str:
    text = README.read_text()
    start = text.index(SECTION)
    end = text.index("\n## ", start)
    (block,) = re.findall(r"```python\n(.*?)```", text[start:end], flags=re.S)
    return block


def user_env(**extra: str) -> dict[str, str]:
    """A new user's shell: nothing of this test run's Django or Python settings."""
    return {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/root"), "LANG": "C.UTF-8", **extra}


def run(args: list[str], cwd: Path | None = None, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(args, cwd=cwd, env=env or user_env(), capture_output=True, text=True, timeout=600,
                            check=False)
    if result.returncode != 0:
        raise AssertionError(f"{args} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result.stdout


def get(url: str, token: str | None = None) -> tuple[int, Any, Any]:
    """Status, headers (case-insensitive) and JSON body."""
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.headers, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        body = exc.read()
        exc.close()
        return exc.code, exc.headers, json.loads(body)


@pytest.fixture(scope="module")
def fastapi_venv(tmp_path_factory) -> Path:
    home = tmp_path_factory.mktemp("fastapi-install")
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--wheel-dir", str(home / "dist"), str(ROOT)])
    (wheel,) = (home / "dist").glob("django_tokenversion-*.whl")
    venv = home / "venv"
    run([sys.executable, "-m", "venv", str(venv)])
    run([str(venv / "bin" / "pip"), "install", "--quiet", f"{wheel}[fastapi,redis]"])
    return venv


def test_the_fastapi_extra_installs_no_django(fastapi_venv):
    installed = {line.split("==")[0].lower() for line in run([str(fastapi_venv / "bin" / "pip"), "freeze"]).split()}
    assert {"fastapi", "starlette", "uvicorn", "redis", "pyjwt", "django-tokenversion"} <= installed
    assert not installed & {"django", "djangorestframework", "django-ninja"}, installed
    # and every Django-free door imports in it
    run([str(fastapi_venv / "bin" / "python"), "-c", "import tokenversion.fastapi, tokenversion.starlette, "
         "tokenversion.forwardauth, tokenversion.stores.feed, tokenversion.stores.redis"])


def test_the_readme_fastapi_app_refuses_a_revoked_token_under_uvicorn(fastapi_venv, jwks_server, tmp_path):
    provider = WebProcess("provider", "provider.wsgi:application",
                          django_env("tests.feed_settings", connection.settings_dict["NAME"], jwks_server.issuer))
    provider.start()
    service = None
    try:
        main_py = (readme_main_py()
                   .replace("https://sso.example.com/realms/main", jwks_server.issuer)
                   .replace('"orders-api"', '"tokenversion-api"')
                   .replace("https://tokenversion.example.com/tokenversion/feed", f"{provider.url}/tokenversion/feed"))
        (tmp_path / "main.py").write_text(main_py)
        port = free_port()
        service = Process("fastapi", [str(fastapi_venv / "bin" / "uvicorn"), "main:app", "--host", "127.0.0.1",
                                      "--port", str(port), "--app-dir", str(tmp_path)])
        service.env = user_env(TOKENVERSION_FEED_SECRET=FEED_SECRET)  # the user's shell, not this test run's
        service.start()
        url = f"http://127.0.0.1:{port}/api/whoami"

        def answers():
            if not service.running:
                raise AssertionError(f"uvicorn exited:\n{service.output()}")
            try:
                return get(url)
            except OSError:
                return None

        status, headers, body = wait_until(answers, 30, interval=0.1, what="uvicorn to serve")
        assert (status, body["code"], headers["WWW-Authenticate"]) == (401, "not_authenticated",
                                                                       'Bearer realm="api"')

        subject = str(uuid.uuid4())
        token = jwks_server.mint(sub=subject, preferred_username="carol")
        assert get(url, token)[::2] == (200, {"sub": subject, "username": "carol"})

        services.revoke_user(subject, reason="logout", actor=services.Actor.system("fastapi install test"))
        status, headers, body = wait_until(lambda: (a := get(url, token))[0] != 200 and a, 5,
                                           what="the revocation to reach the service")
        assert (status, body["code"]) == (401, "token_revoked")
        assert headers["WWW-Authenticate"].startswith('Bearer realm="api", error="invalid_token"')
    finally:
        if service is not None:
            service.stop()
        provider.kill()
