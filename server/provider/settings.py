"""Settings for the tokenversion provider, all from environment variables (see docs/configuration.md).

No secret is written here. For local development, the README's first command writes ``var/dev.env``
(random secrets, ``DJANGO_DEBUG=1``, SQLite in ``var/``), which ``manage.py`` and ``provider/wsgi.py`` read
when nothing else is configured (``provider/devenv.py``). Without ``DJANGO_SECRET_KEY`` it refuses to start.
"""

from __future__ import annotations

from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

from .env import database_from_url, env_bool, env_list, env_str, project_home

# Where relative paths (var/: the development database, dev.env, static files) live: provider/env.py.
BASE_DIR = project_home()

DEBUG = env_bool("DJANGO_DEBUG", False)
SECRET_KEY = env_str("DJANGO_SECRET_KEY")
if not SECRET_KEY:
    raise ImproperlyConfigured("set DJANGO_SECRET_KEY (for local development, run `bash scripts/provider.sh` once: "
                               "it writes var/dev.env)")
ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS")  # only behind a proxy that rewrites Host

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "tokenversion",
    "tokenversion_server",
    "accounts",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # Static files (the admin's CSS and JS) from STATIC_ROOT, in production too (docs/deployment.md).
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "provider.urls"
WSGI_APPLICATION = "provider.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {"default": database_from_url(env_str("DATABASE_URL", "sqlite:///var/provider.sqlite3"), BASE_DIR)}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 12}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"
STATIC_ROOT = Path(env_str("DJANGO_STATIC_ROOT", str(BASE_DIR / "var" / "static")))  # filled by collectstatic
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
DATA_UPLOAD_MAX_MEMORY_SIZE = 1024 * 1024

TOKENVERSION = {
    "ISSUER": env_str("TOKENVERSION_ISSUER", "http://127.0.0.1:8080/realms/tokenversion"),
    "AUDIENCE": env_list("TOKENVERSION_AUDIENCE", ["tokenversion-api"]),
    "JWKS_URL": env_str("TOKENVERSION_JWKS_URL"),
    "MAX_TOKEN_LIFETIME": int(env_str("TOKENVERSION_MAX_TOKEN_LIFETIME", "3600")),
    "CACHE_TTL": float(env_str("TOKENVERSION_CACHE_TTL", "1.0")),
    "USER_LOOKUP": "accounts.provisioning.lookup_user",
    # Bearer secrets Prometheus sends to /metrics (docs/operations.md); none: /metrics is 404.
    "METRICS_SECRETS": env_list("TOKENVERSION_METRICS_SECRETS", []),
}

# The provider's own settings (tokenversion_server.conf; docs/configuration.md). Their environment variables
# keep the TOKENVERSION_ prefix.
TOKENVERSION_SERVER = {
    "MAPPER_SECRETS": env_list("TOKENVERSION_MAPPER_SECRETS"),
    "EVENT_SECRETS": env_list("TOKENVERSION_EVENT_SECRETS"),
    "SSO_SESSION_MAX": int(env_str("TOKENVERSION_SSO_SESSION_MAX", "36000")),
    "PROVISION_USER": "accounts.provisioning.provision_user",
    "SUBJECT_RESOLVER": "accounts.provisioning.resolve_subject",
    # The Keycloak client whose backchannel.logout.url is /tokenversion/backchannel-logout (comma-separated
    # for several); logout tokens must name it in aud. See docs/backchannel-logout.md.
    "BACKCHANNEL_AUDIENCE": env_list("TOKENVERSION_BACKCHANNEL_AUDIENCE", ["tokenversion-backchannel"]),
    # The revocation feed for services without this database, over HTTP and Redis (docs/scaling.md).
    "FEED_SECRETS": env_list("TOKENVERSION_FEED_SECRETS", []),
    "FEED_MAX_LONG_POLLS": int(env_str("TOKENVERSION_FEED_MAX_LONG_POLLS", "8")),
    "FEED_MAX_STREAMS": int(env_str("TOKENVERSION_FEED_MAX_STREAMS", "0")),  # keep under gunicorn's --threads
    "REDIS_URL": env_str("TOKENVERSION_REDIS_URL"),
    # The Ed25519 key that signs Redis messages: a PEM file (preferred) or the PEM text itself. Only this
    # provider and its publisher hold it; services get the public key (manage.py tokenversion_feed_keygen).
    "FEED_SIGNING_KEY": env_str("TOKENVERSION_FEED_SIGNING_KEY_FILE") or env_str("TOKENVERSION_FEED_SIGNING_KEY"),
    "REDIS_CHANNEL": env_str("TOKENVERSION_REDIS_CHANNEL", "tokenversion:revocations"),
    # Attribute mode: bumps are queued for tokenversion_attribute_sync, which writes them into the Keycloak user
    # attribute that Keycloak's own mapper embeds (docs/keycloak.md#attribute-mode).
    "ATTRIBUTE_SYNC": env_bool("TOKENVERSION_ATTRIBUTE_SYNC", False),
    "ATTRIBUTE_SCAN_INTERVAL": float(env_str("TOKENVERSION_ATTRIBUTE_SCAN_INTERVAL", "300")),
}

# The provider's Keycloak admin access (keycloak_setup, sync_users, ending sessions on compromise).
# Server and realm default to what TOKENVERSION_ISSUER names; see docs/keycloak.md.
TOKENVERSION_KEYCLOAK = {
    "SERVER_URL": env_str("KEYCLOAK_URL"),
    "REALM": env_str("KEYCLOAK_REALM"),
    "USERNAME": env_str("KEYCLOAK_ADMIN_USERNAME", "admin" if DEBUG else None),
    "PASSWORD": env_str("KEYCLOAK_ADMIN_PASSWORD", "admin" if DEBUG else None),
    "ADMIN_REALM": env_str("KEYCLOAK_ADMIN_REALM", "master"),
    "CLIENT_ID": env_str("KEYCLOAK_ADMIN_CLIENT_ID", "admin-cli"),
    "CLIENT_SECRET": env_str("KEYCLOAK_ADMIN_CLIENT_SECRET"),
}

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["tokenversion.authentication.TokenVersionAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "UNAUTHENTICATED_USER": None,
}

if not DEBUG:
    # Production is TLS only, and `manage.py check --deploy` is clean with these defaults (docs/security.md).
    # Plain HTTP on loopback (tests, benchmarks, the e2e stack) sets DJANGO_SSL_REDIRECT=0 and
    # DJANGO_SECURE_COOKIES=0; HSTS is only ever sent on HTTPS answers.
    SECURE_CONTENT_TYPE_NOSNIFF = True
    SESSION_COOKIE_SECURE = env_bool("DJANGO_SECURE_COOKIES", True)
    CSRF_COOKIE_SECURE = env_bool("DJANGO_SECURE_COOKIES", True)
    SECURE_SSL_REDIRECT = env_bool("DJANGO_SSL_REDIRECT", True)
    SECURE_REDIRECT_EXEMPT = [r"^health$", r"^ready$"]  # load-balancer probes may speak plain HTTP
    SECURE_HSTS_SECONDS = int(env_str("DJANGO_HSTS_SECONDS", "31536000"))
    SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("DJANGO_HSTS_INCLUDE_SUBDOMAINS", True)
    SECURE_HSTS_PRELOAD = env_bool("DJANGO_HSTS_PRELOAD", True)
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if env_bool("DJANGO_BEHIND_PROXY") else None

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {"tokenversion": {"handlers": ["console"], "level": env_str("TOKENVERSION_LOG_LEVEL", "INFO")}},
}
