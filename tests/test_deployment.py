"""Issue 11 item 3: the provider started exactly as docs/deployment.md says, and what that page promises.

The commands are read from the page's "Start it" block, so the guide and this test cannot drift apart. They
run as the guide says: from the repository, with the provider's virtualenv first on PATH, production mode
(``DJANGO_DEBUG`` unset), real secrets from the environment, PostgreSQL, behind a TLS proxy
(``DJANGO_BEHIND_PROXY=1``; the test sends the ``X-Forwarded-Proto: https`` the proxy would add). The only
substitution is the bind address: a free loopback port instead of 127.0.0.1:8000.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shlex
import signal
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from tests.remote_helpers import free_port, wait_until

pytestmark = pytest.mark.postgres

ROOT = Path(__file__).resolve().parent.parent
GUIDE = ROOT / "docs" / "deployment.md"
SUBJECT = "6c1f0a3e-7d2b-4c5a-9e8f-0a1b2c3d4e5f"
PROXY = {"X-Forwarded-Proto": "https", "Host": "tokenversion.example.com"}


def start_commands() -> list[str]:
    """The ``sh`` block under "## Start it" in docs/deployment.md."""
    section = GUIDE.read_text().split("\n## Start it\n", 1)[1]
    block = re.search(r"```sh\n(.*?)```", section, re.S).group(1)
    return [line for line in block.splitlines() if line.strip()]


def _pg_url(name: str) -> str:
    return (f"postgresql://{os.environ.get('PGUSER', 'tokenversion')}:{os.environ.get('PGPASSWORD', 'tokenversion')}"
            f"@{os.environ.get('PGHOST', '127.0.0.1')}:{os.environ.get('PGPORT', '5432')}/{name}")


@pytest.fixture(scope="module")
def database():
    """A database of this test's own on the suite's PostgreSQL server, dropped afterwards."""
    import psycopg

    name = f"tv_deployment_{os.getpid()}"
    admin = dict(host=os.environ.get("PGHOST", "127.0.0.1"), port=os.environ.get("PGPORT", "5432"),
                 user=os.environ.get("PGUSER", "tokenversion"), password=os.environ.get("PGPASSWORD", "tokenversion"),
                 dbname="postgres", autocommit=True)
    with psycopg.connect(**admin) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')
    yield _pg_url(name)
    with psycopg.connect(**admin) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def production_env(tmp_path: Path, database_url: str) -> dict[str, str]:
    """docs/deployment.md's environment: real secrets, nothing inherited from the tests' configuration."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "TOKENVERSION_", "KEYCLOAK_"))}
    env.update({
        "PATH": f"{Path(sys.executable).parent}:{env.get('PATH', '/usr/bin:/bin')}",  # the venv, activated
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
        "DJANGO_ALLOWED_HOSTS": "tokenversion.example.com",
        "DJANGO_BEHIND_PROXY": "1",
        "DATABASE_URL": f"{database_url}?conn_max_age=60",
        "DJANGO_STATIC_ROOT": str(tmp_path / "static"),
        "TOKENVERSION_ISSUER": "https://sso.example.com/realms/main",
        "TOKENVERSION_AUDIENCE": "orders-api",
        "TOKENVERSION_MAPPER_SECRETS": "mapper-" + secrets.token_urlsafe(32),
        "TOKENVERSION_EVENT_SECRETS": "event-" + secrets.token_urlsafe(32),
        "TOKENVERSION_BACKCHANNEL_AUDIENCE": "web",
    })
    return env


def request(base: str, path: str, body: dict | None = None, headers: dict | None = None):
    """(status, headers, body bytes), redirects not followed."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(base + path, data=data, headers={**(headers or {}),
                                 **({"Content-Type": "application/json"} if data else {})})
    try:
        with urllib.request.build_opener(_NoRedirect).open(req, timeout=10) as answer:
            return answer.status, answer.headers, answer.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers, error.read()


class Gunicorn:
    """The guide's gunicorn line, on a free loopback port, stopped (it and its workers) on exit."""

    def __init__(self, command: str, env: dict[str, str]) -> None:
        self.port = free_port()
        args = shlex.split(command.replace("127.0.0.1:8000", f"127.0.0.1:{self.port}"))
        self.base = f"http://127.0.0.1:{self.port}"
        self.process = subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                        text=True, start_new_session=True)
        wait_until(self._up, timeout=60, what="gunicorn")

    def _up(self) -> bool:
        if self.process.poll() is not None:
            pytest.fail(f"gunicorn exited: {self.process.stderr.read()}")
        try:
            return request(self.base, "/health", headers={"Host": "tokenversion.example.com"})[0] == 200
        except OSError:
            return False

    def stop(self) -> None:
        os.killpg(self.process.pid, signal.SIGTERM)
        self.process.wait(timeout=40)


@pytest.fixture(scope="module")
def deployed(tmp_path_factory, database):
    tmp_path = tmp_path_factory.mktemp("deployment")
    env = production_env(tmp_path, database)
    *setup, serve = start_commands()
    assert serve.startswith("gunicorn ") and "--worker-class gthread" in serve, serve
    outputs = {}
    for command in setup:
        result = subprocess.run(shlex.split(command), cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, f"{command}:\n{result.stdout}{result.stderr}"
        outputs[command] = result.stdout + result.stderr
    server = Gunicorn(serve, env)
    yield server, env, outputs, serve
    server.stop()


def test_guide_commands_run_and_check_deploy_is_clean(deployed):
    _, _, outputs, _ = deployed
    check = next(out for command, out in outputs.items() if "check --deploy" in command)
    assert check == "System check identified no issues (0 silenced).\n"
    assert any("collectstatic" in command for command in outputs)


def test_admin_css_is_served_in_production(deployed):
    server, _, _, _ = deployed
    status, headers, body = request(server.base, "/static/admin/css/base.css", headers=PROXY)
    assert status == 200, body[:200]
    assert headers["Content-Type"].startswith("text/css")
    assert b"body" in body
    status, _, body = request(server.base, "/admin/login/", headers=PROXY)  # the page that links it
    assert status == 200 and b"/static/admin/css/base.css" in body


def test_probes_answer_plain_http_and_everything_else_redirects_to_https(deployed):
    server, _, _, _ = deployed
    host = {"Host": "tokenversion.example.com"}
    assert request(server.base, "/health", headers=host)[:1] == (200,)
    status, _, body = request(server.base, "/ready", headers=host)
    assert (status, json.loads(body)) == (200, {"status": "ready"})
    status, headers, _ = request(server.base, "/admin/login/", headers=host)
    assert (status, headers["Location"]) == (301, "https://tokenversion.example.com/admin/login/")


def test_claims_call_and_a_revocation(deployed):
    server, env, _, _ = deployed
    secret = {"X-TokenVersion-Secret": env["TOKENVERSION_MAPPER_SECRETS"], **PROXY}
    status, headers, body = request(server.base, "/tokenversion/claims", {"sub": SUBJECT, "username": "carol"}, secret)
    assert (status, json.loads(body)) == (200, {"sub": SUBJECT, "token_version": 0})
    assert headers["Strict-Transport-Security"].startswith("max-age=31536000")

    revoke = subprocess.run(["python3", "manage.py", "revoke", "carol", "--reason", "compromise"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=120)
    assert revoke.returncode == 0 and "version 0 -> 1" in revoke.stdout, revoke.stdout + revoke.stderr

    status, _, body = request(server.base, "/tokenversion/claims", {"sub": SUBJECT}, secret)
    assert (status, json.loads(body)["token_version"]) == (200, 1)


def test_readiness_fails_when_the_database_is_unreachable(deployed, tmp_path):
    _, env, _, serve = deployed
    closed = free_port()
    unreachable = {**env, "DATABASE_URL": f"postgresql://tokenversion:x@127.0.0.1:{closed}/none?conn_max_age=60"}
    server = Gunicorn(serve, unreachable)
    try:
        host = {"Host": "tokenversion.example.com"}
        status, headers, body = request(server.base, "/ready", headers=host)
        assert (status, json.loads(body)["status"]) == (503, "unavailable")
        assert headers["Retry-After"] == "5"
        assert request(server.base, "/health", headers=host)[0] == 200  # liveness does not depend on it
    finally:
        server.stop()


def _cookies(headers) -> dict[str, str]:
    return {c.split("=", 1)[0]: c.split("=", 1)[1].split(";", 1)[0] for c in headers.get_all("Set-Cookie") or []}


def test_admin_login_works_behind_the_tls_proxy(deployed):
    """Secure cookies and CSRF's origin check, as a browser meets them through the proxy (no extra setting)."""
    server, env, _, _ = deployed
    password = secrets.token_urlsafe(16)
    subprocess.run(["python3", "manage.py", "createsuperuser", "--noinput", "--username", "ops", "--email",
                    "ops@example.com"], cwd=ROOT, env={**env, "DJANGO_SUPERUSER_PASSWORD": password}, check=True,
                   capture_output=True, timeout=120)
    status, headers, _ = request(server.base, "/admin/login/", headers=PROXY)
    cookies = _cookies(headers)
    assert status == 200 and "Secure" in headers["Set-Cookie"]
    form = urllib.parse.urlencode({"csrfmiddlewaretoken": cookies["csrftoken"], "username": "ops",
                                   "password": password, "next": "/admin/"}).encode()
    req = urllib.request.Request(server.base + "/admin/login/", data=form, headers={
        **PROXY, "Origin": "https://tokenversion.example.com", "Referer": "https://tokenversion.example.com/admin/login/",
        "Cookie": f"csrftoken={cookies['csrftoken']}", "Content-Type": "application/x-www-form-urlencoded"})
    try:
        urllib.request.build_opener(_NoRedirect).open(req, timeout=10)
        pytest.fail("the login did not redirect")
    except urllib.error.HTTPError as answer:
        assert (answer.code, answer.headers["Location"]) == (302, "/admin/"), answer.read()[:300]
        session = _cookies(answer.headers)["sessionid"]
    status, _, body = request(server.base, "/admin/", headers={**PROXY, "Cookie": f"sessionid={session}"})
    assert status == 200 and b"ops" in body


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None
