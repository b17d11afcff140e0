"""Issue 9 item 7: development secrets in use are named by a system check (W030), an error under --deploy (E030).

Runs ``manage.py check`` in subprocesses, because the provider's settings are read from the environment at
import time. Development secrets are the values once written in the repository (recognised by hash) and,
with DEBUG off, those of the development file ``var/dev.env`` (here a temporary one, TOKENVERSION_DEV_ENV).
"""

from __future__ import annotations

import secrets
import subprocess
import sys

import pytest

from provider import devenv
from tests.test_deploy_check import ROOT, production_env

# The values provider/settings.py fell back to with DJANGO_DEBUG=1 before issue 11 (public in git history).
OLD_REPO_VALUES = {
    "DJANGO_SECRET_KEY": "django-insecure-tokenversion-development-only",
    "TOKENVERSION_MAPPER_SECRETS": "dev-mapper-secret-0123456789abcdef0123",
    "TOKENVERSION_EVENT_SECRETS": "dev-event-secret-0123456789abcdef01234",
}


def check(env: dict[str, str], *args: str) -> tuple[int, str]:
    result = subprocess.run([sys.executable, "manage.py", "check", *args], cwd=ROOT, env=env, capture_output=True,
                            text=True, timeout=120)
    return result.returncode, result.stdout + result.stderr


def dev_env_file(tmp_path):
    path = tmp_path / "dev.env"
    path.write_text("".join(f"{k}={v}\n" for k, v in devenv.generate().items()))
    return path, devenv.read(path)


@pytest.mark.parametrize("name", sorted(OLD_REPO_VALUES))
def test_a_value_once_in_the_repository_is_an_error_under_deploy(tmp_path, name):
    env = production_env(tmp_path, **{name: OLD_REPO_VALUES[name]})
    status, output = check(env, "--deploy")
    assert status != 0
    line = next(line for line in output.splitlines() if "tokenversion.E030" in line)
    assert name in line and "once written in the tokenversion repository" in line


def test_a_value_once_in_the_repository_is_a_warning_in_development(tmp_path):
    env = production_env(tmp_path, DJANGO_DEBUG="1", TOKENVERSION_MAPPER_SECRETS=OLD_REPO_VALUES[
        "TOKENVERSION_MAPPER_SECRETS"])
    status, output = check(env)
    assert status == 0, output
    assert "tokenversion.W030" in output and "TOKENVERSION_MAPPER_SECRETS" in output
    assert "tokenversion.E030" not in output


def test_dev_env_values_with_debug_off_are_an_error_under_deploy(tmp_path):
    """The production-mode retry a developer makes in the first command's shell: DJANGO_DEBUG=0 over dev.env."""
    path, values = dev_env_file(tmp_path)
    env = production_env(tmp_path, DJANGO_SETTINGS_MODULE=None, DJANGO_SECRET_KEY=None,
                         TOKENVERSION_MAPPER_SECRETS=None, TOKENVERSION_EVENT_SECRETS=None,
                         DJANGO_DEBUG="0", TOKENVERSION_DEV_ENV=str(path))
    status, output = check(env, "--deploy")
    assert status != 0
    line = next(line for line in output.splitlines() if "tokenversion.E030" in line)
    for name in devenv.SECRET_VARIABLES:
        assert name in line
    assert "from var/dev.env, with DEBUG off" in line
    assert not any(values[name] in output for name in devenv.SECRET_VARIABLES)  # named, never printed


def test_dev_env_values_copied_into_a_production_environment_are_named(tmp_path):
    path, values = dev_env_file(tmp_path)
    env = production_env(tmp_path, TOKENVERSION_EVENT_SECRETS=values["TOKENVERSION_EVENT_SECRETS"],
                         TOKENVERSION_DEV_ENV=str(path))
    _status, output = check(env, "--deploy")
    line = next(line for line in output.splitlines() if "tokenversion.E030" in line)
    assert "TOKENVERSION_EVENT_SECRETS" in line and "DJANGO_SECRET_KEY" not in line


def test_dev_env_in_development_and_real_secrets_in_production_are_silent(tmp_path):
    path, _ = dev_env_file(tmp_path)
    development = production_env(tmp_path, DJANGO_SETTINGS_MODULE=None, DJANGO_SECRET_KEY=None,
                                 TOKENVERSION_MAPPER_SECRETS=None, TOKENVERSION_EVENT_SECRETS=None,
                                 DJANGO_DEBUG=None, TOKENVERSION_DEV_ENV=str(path))
    status, output = check(development)
    assert (status, "020" in output) == (0, False), output
    production = production_env(tmp_path, TOKENVERSION_DEV_ENV=str(path),
                                TOKENVERSION_FEED_SECRETS=secrets.token_urlsafe(40))
    status, output = check(production, "--deploy")
    assert (status, "020" in output) == (0, False), output
