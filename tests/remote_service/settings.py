"""A DRF service that protects its API with tokenversion and a *remote* store: it has no database at all,
let alone the provider's. Configured from the environment by the tests (tests/test_remote_stores.py)."""

import json
import os

SECRET_KEY = "remote-service-test-only"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
INSTALLED_APPS = ["django.contrib.contenttypes", "django.contrib.auth", "rest_framework", "tokenversion"]
MIDDLEWARE = []
ROOT_URLCONF = "tests.remote_service.urls"
DATABASES = {}  # nothing to read revocations from but the feed
USE_TZ = True

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["tokenversion.authentication.TokenVersionAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "UNAUTHENTICATED_USER": None,
}

TOKENVERSION = {
    "ISSUER": os.environ["TOKENVERSION_TEST_ISSUER"],
    "AUDIENCE": ["tokenversion-api"],
    "STORE": os.environ["REMOTE_SERVICE_STORE"],
    "STORE_OPTIONS": json.loads(os.environ["REMOTE_SERVICE_STORE_OPTIONS"]),
    # Prometheus metrics at /metrics when the test gives a secret (tests/test_prometheus.py)
    "METRICS": bool(os.environ.get("REMOTE_SERVICE_METRICS_SECRET")),
    "METRICS_SECRETS": [s for s in [os.environ.get("REMOTE_SERVICE_METRICS_SECRET")] if s],
    # Service reports when the test gives a URL (tests/test_reporting_gunicorn.py)
    "REPORT_URL": os.environ.get("REMOTE_SERVICE_REPORT_URL"),
    "REPORT_KEY": os.environ.get("REMOTE_SERVICE_REPORT_KEY"),
    "REPORT_INTERVAL": float(os.environ.get("REMOTE_SERVICE_REPORT_INTERVAL", "1.0")),
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {"tokenversion": {"handlers": ["console"], "level": "WARNING"}},
}
