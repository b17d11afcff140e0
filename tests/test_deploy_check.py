"""``manage.py check --deploy`` on the provider's production settings (``provider/settings.py``, DJANGO_DEBUG unset).

Run in subprocesses with a production-like environment (docs/security.md lists it), because the settings are
read from the environment at import time. The production defaults must be clean: no error, no warning. Each
weakened variant must be reported under its own id, which proves the check really runs on these settings.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def production_env(tmp_path: Path, **overrides: str | None) -> dict[str, str]:
    """The environment a production deployment sets (docs/security.md), nothing inherited from the tests."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "TOKENVERSION_", "KEYCLOAK_"))}
    env.update({
        "DJANGO_SETTINGS_MODULE": "provider.settings",
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
        "DJANGO_ALLOWED_HOSTS": "provider.example.com",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'provider.sqlite3'}",
        "TOKENVERSION_ISSUER": "https://sso.example.com/realms/main",
        "TOKENVERSION_AUDIENCE": "orders-api",
        "TOKENVERSION_MAPPER_SECRETS": secrets.token_urlsafe(32),
        "TOKENVERSION_EVENT_SECRETS": secrets.token_urlsafe(32),
        "TOKENVERSION_BACKCHANNEL_AUDIENCE": "web",
    })
    env.update(overrides)
    return {k: v for k, v in env.items() if v is not None}


# Weakenings, and the id each must be reported under; all applied in one run (each is a separate setting).
WEAKENED = {
    "DJANGO_SSL_REDIRECT": ("0", "security.W008"),
    "DJANGO_HSTS_SECONDS": ("0", "security.W004"),
    "DJANGO_SECURE_COOKIES": ("0", "security.W012"),
    "DJANGO_SECRET_KEY": ("django-insecure-" + "a" * 50, "security.W009"),
    "TOKENVERSION_MAPPER_SECRETS": ("short", "tokenversion.W007"),
    "TOKENVERSION_ISSUER": ("http://sso.example.com/realms/main", "tokenversion.W001"),
}


def start(env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "manage.py", "check", "--deploy"], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_check_deploy_is_clean_on_production_settings_and_flags_each_weakening(tmp_path):
    # Both at once: each run is mostly Django's start-up.
    clean = start(production_env(tmp_path))
    weakened = start(production_env(tmp_path, **{name: value for name, (value, _) in WEAKENED.items()}))

    out, err = clean.communicate(timeout=120)
    assert (clean.returncode, err) == (0, ""), out + err
    assert out == "System check identified no issues (0 silenced).\n"

    out, err = weakened.communicate(timeout=120)
    reported = out + err
    assert [check_id for _, check_id in WEAKENED.values() if check_id not in reported] == [], reported


def test_production_refuses_to_start_without_a_secret_key(tmp_path):
    process = start(production_env(tmp_path, DJANGO_SECRET_KEY=None))
    _, err = process.communicate(timeout=120)
    assert process.returncode != 0
    assert "set DJANGO_SECRET_KEY" in err
