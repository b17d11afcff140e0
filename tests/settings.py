"""Test settings: the provider's settings, on SQLite (default) or PostgreSQL (``TOKENVERSION_TEST_DB=postgres``).

The issuer and JWKS are the test suite's own: real RSA keys served over loopback HTTP by ``tests/jwks.py``.
"""

import os

os.environ.setdefault("DJANGO_DEBUG", "1")
os.environ.setdefault("DJANGO_SECRET_KEY", "tokenversion-tests-" + "k" * 40)  # the tests' own; never a deployment's

from provider.settings import *  # noqa: F403
from provider.settings import BASE_DIR, TOKENVERSION, TOKENVERSION_SERVER

ALLOWED_HOSTS = ["testserver", "127.0.0.1", "localhost"]
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # speed only; never in production
WHITENOISE_AUTOREFRESH = True  # look up static files per request: no collectstatic, no "No directory" warning

_db = os.environ.get("TOKENVERSION_TEST_DB", "sqlite")
if _db == "postgres":
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": os.environ.get("TOKENVERSION_TEST_PG_NAME", "tokenversion"),
            "USER": os.environ.get("PGUSER", "tokenversion"),
            "PASSWORD": os.environ.get("PGPASSWORD", "tokenversion"),
            "HOST": os.environ.get("PGHOST", "127.0.0.1"),
            "PORT": os.environ.get("PGPORT", "5432"),
        }
    }
elif _db == "sqlite":
    # A file, not :memory:, so threads and processes in the concurrency tests share one database.
    _path = os.environ.get("TOKENVERSION_TEST_SQLITE", str(BASE_DIR / "var" / "test.sqlite3"))
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": _path,
            "OPTIONS": {"transaction_mode": "IMMEDIATE", "timeout": 30},
            "TEST": {"NAME": _path},
        }
    }
else:
    raise RuntimeError(f"TOKENVERSION_TEST_DB must be sqlite or postgres, not {_db!r}")

# No Keycloak admin access in unit tests (the end-to-end tests in tests/e2e run a real Keycloak).
TOKENVERSION_KEYCLOAK: dict = {}

# Replaced per test by the JWKS fixture's real port; subprocesses of a test get it from the environment.
TEST_ISSUER = os.environ.get("TOKENVERSION_TEST_ISSUER", "http://127.0.0.1:1/realms/test")
TOKENVERSION = {
    **TOKENVERSION,
    "ISSUER": TEST_ISSUER,
    "AUDIENCE": ["tokenversion-api"],
    "JWKS_URL": None,
    "CACHE_TTL": 1.0,
}
TOKENVERSION_SERVER = {
    **TOKENVERSION_SERVER,
    "MAPPER_SECRETS": [
        "mapper-secret-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
        "mapper-secret-rotated-bbbbbbbbbbbbbbbbbbbbbbbb",
    ],
    "EVENT_SECRETS": ["event-secret-cccccccccccccccccccccccccccccccccc"],
    "BACKCHANNEL_AUDIENCE": "tokenversion-backchannel",
}
