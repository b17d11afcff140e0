"""Settings of the sample service, from the environment.

``SAMPLE_STORE`` picks how it learns revocations:

- ``db`` (default): reads the provider's database (``DATABASE_URL``) with a short per-process cache;
- ``custom``: any store class, ``TOKENVERSION_STORE`` (dotted path) with ``TOKENVERSION_STORE_OPTIONS`` (JSON),
  for services that do not share the provider's database.
"""

from __future__ import annotations

import json
from pathlib import Path

from provider.env import database_from_url, env_list, env_str

BASE_DIR = Path(__file__).resolve().parent.parent

DEBUG = False
SECRET_KEY = env_str("SAMPLE_SECRET_KEY", "sample-service-has-no-sessions-or-forms-to-sign")
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
INSTALLED_APPS = ["django.contrib.contenttypes", "django.contrib.auth", "rest_framework", "tokenversion"]
MIDDLEWARE = ["django.middleware.common.CommonMiddleware"]
ROOT_URLCONF = "sample_service.urls"
WSGI_APPLICATION = "sample_service.wsgi.application"
USE_TZ = True
TIME_ZONE = "UTC"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

_store = env_str("SAMPLE_STORE", "db")
if _store == "db":
    INSTALLED_APPS.append("tokenversion_server")
    DATABASES = {"default": database_from_url(env_str("DATABASE_URL", "sqlite:///var/provider.sqlite3"), BASE_DIR)}
    _store_class, _store_options = "tokenversion_server.store.DatabaseStore", {}
elif _store == "custom":
    DATABASES = {}
    _store_class = env_str("TOKENVERSION_STORE")
    _store_options = json.loads(env_str("TOKENVERSION_STORE_OPTIONS", "{}"))
else:
    raise ValueError(f"SAMPLE_STORE must be db or custom, not {_store!r}")

TOKENVERSION = {
    "ISSUER": env_str("TOKENVERSION_ISSUER", "http://127.0.0.1:8080/realms/tokenversion"),
    "AUDIENCE": env_list("TOKENVERSION_AUDIENCE", ["tokenversion-api"]),
    "STORE": _store_class,
    "STORE_OPTIONS": _store_options,
    "CACHE_TTL": float(env_str("TOKENVERSION_CACHE_TTL", "0.25")),
    "MAX_TOKEN_LIFETIME": int(env_str("TOKENVERSION_MAX_TOKEN_LIFETIME", "3600")),
}
# Reporting to the provider (enforcement receipts, revoked-token uses): only the keys the environment sets, so
# the service runs without them (reporting off) exactly as before.
for _key, _parse in (("REPORT_URL", str), ("REPORT_KEY", str), ("SERVICE_NAME", str), ("REPORT_INTERVAL", float),
                     ("REPORT_QUEUE_SIZE", int)):
    if _value := env_str(f"TOKENVERSION_{_key}", ""):
        TOKENVERSION[_key] = _parse(_value)

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["tokenversion.authentication.TokenVersionAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "UNAUTHENTICATED_USER": None,
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {"tokenversion": {"handlers": ["console"], "level": env_str("TOKENVERSION_LOG_LEVEL", "WARNING")}},
}
