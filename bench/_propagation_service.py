"""A DRF service with a remote store and no database, for ``propagation.py`` (served by gunicorn with
``--pythonpath bench``). Configured from the environment: ``PROP_ISSUER``, ``PROP_STORE``, ``PROP_OPTIONS``, and
``PROP_AUDIENCE`` (comma-separated, default ``tokenversion-api``: the test issuer's and the Keycloak stack's).

``GET /watch?token=...`` runs the real authentication class on the token every millisecond, in this process,
until it is refused, and answers the ``time.monotonic()`` of the first refusal. On Linux that clock is
system-wide, so the benchmark compares it with the instant it sent the revocation, without HTTP polling
(which would load the two cores it measures on).
"""

from __future__ import annotations

import json
import os
import threading
import time

from django.conf import settings

settings.configure(
    DEBUG=False,
    SECRET_KEY="propagation-bench-only",
    ALLOWED_HOSTS=["127.0.0.1"],
    INSTALLED_APPS=["django.contrib.contenttypes", "django.contrib.auth", "rest_framework", "tokenversion"],
    MIDDLEWARE=[],
    ROOT_URLCONF=__name__,
    DATABASES={},
    USE_TZ=True,
    REST_FRAMEWORK={"UNAUTHENTICATED_USER": None},
    TOKENVERSION={
        "ISSUER": os.environ["PROP_ISSUER"],
        "AUDIENCE": os.environ.get("PROP_AUDIENCE", "tokenversion-api").split(","),
        "STORE": os.environ["PROP_STORE"],
        "STORE_OPTIONS": json.loads(os.environ["PROP_OPTIONS"]),
    },
    LOGGING={"version": 1, "disable_existing_loggers": False,
             "handlers": {"console": {"class": "logging.StreamHandler"}},
             "loggers": {"tokenversion": {"handlers": ["console"], "level": "WARNING"}}},
)

import django  # noqa: E402

django.setup()

from django.core.wsgi import get_wsgi_application  # noqa: E402
from django.http import JsonResponse  # noqa: E402
from django.urls import path  # noqa: E402

from tokenversion.authentication import TokenVersionAuthentication  # noqa: E402
from tokenversion.core.errors import TokenRevoked, Unavailable  # noqa: E402
from tokenversion.stores import get_store  # noqa: E402

_auth = TokenVersionAuthentication()


def _state(token: str) -> str:
    try:
        _auth.check_revocation(_auth.get_validated_claims(token))
    except TokenRevoked:
        return "refused"
    except Unavailable:
        return "unavailable"
    return "accepted"


def health(request):
    store = get_store()
    return JsonResponse({"staleness": min(store.staleness(), 1e9), "stats": store.stats},
                        status=200 if store.staleness() <= store.max_staleness else 503)


def accepts(request):
    return JsonResponse({"state": _state(request.GET["token"])})


_watching: dict[str, int] = {}  # token -> watches that have made their first check
_watching_lock = threading.Lock()


def watch(request):
    token, deadline = request.GET["token"], time.monotonic() + float(request.GET.get("timeout", "10"))
    first = _state(token)
    with _watching_lock:
        _watching[token] = _watching.get(token, 0) + 1
    unavailable = 0
    try:
        while time.monotonic() < deadline:
            state = _state(token)
            if state == "refused":
                return JsonResponse({"refused_at": time.monotonic(), "first": first, "unavailable": unavailable})
            unavailable += state == "unavailable"
            time.sleep(0.001)
        return JsonResponse({"refused_at": None, "first": first, "unavailable": unavailable})
    finally:
        with _watching_lock:
            _watching[token] -= 1
            if not _watching[token]:
                del _watching[token]


def watching(request):
    """Whether a watch of the token has made its first check: the benchmark triggers only after every
    service says so (on a loaded machine a watch request can start later than the trigger)."""
    with _watching_lock:
        return JsonResponse({"watching": _watching.get(request.GET["token"], 0)})


urlpatterns = [path("health", health), path("accepts", accepts), path("watch", watch),
               path("watching", watching)]
application = get_wsgi_application()
