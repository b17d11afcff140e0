"""The provider's settings and URLs plus one do-nothing view, ``POST /bench/floor``, for bench/claims_floor.py.

The floor is what any request to this provider costs before its view does anything: the WSGI handler, every
middleware of ``provider/settings.py`` and URL routing, and a tiny JSON answer. It is exempt from CSRF like
the claims endpoint (a machine endpoint), so both go through exactly the same middleware. Only the benchmark
serves it (``DJANGO_SETTINGS_MODULE=bench._floor_site``); the provider itself never has this URL.
"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.urls import path
from django.views.decorators.csrf import csrf_exempt

from provider.settings import *  # noqa: F403

ROOT_URLCONF = "bench._floor_site"


@csrf_exempt
def floor(request: HttpRequest) -> HttpResponse:
    """Nothing: no body read, no database, the smallest answer a JSON endpoint gives."""
    return HttpResponse(b"{}", content_type="application/json")


def _urlpatterns() -> list:
    from provider.urls import urlpatterns as provider_urls  # imported when Django asks for the URLconf

    return [path("bench/floor", floor), *provider_urls]


def __getattr__(name: str):  # PEP 562: the URLconf's urlpatterns, built on first use
    if name == "urlpatterns":
        return _urlpatterns()
    raise AttributeError(name)
