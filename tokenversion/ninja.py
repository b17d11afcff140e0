"""Django Ninja: ``TokenVersionBearer``, a thin adapter over the core verifier (``core/verifier.py``).

    from ninja import NinjaAPI
    from tokenversion.ninja import TokenVersionBearer, add_exception_handlers

    api = NinjaAPI(auth=TokenVersionBearer())
    add_exception_handlers(api)   # RFC 6750 answers: the same statuses, codes and challenges as the DRF class

``request.auth`` is the dict of validated claims and ``request.user`` the user (``USER_LOOKUP``, else a
``TokenUser``), as with DRF. Without ``add_exception_handlers`` Ninja would answer every refusal with its own
bare ``401 {"detail": "Unauthorized"}``: no challenge, no code, and a 401 where a 503 is due.
"""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse
from ninja import NinjaAPI
from ninja.errors import AuthenticationError
from ninja.security import HttpBearer

from .core.errors import TokenRejected, Unavailable
from .core.verifier import MalformedRequest
from .middleware import refusal
from .reporting import report_wsgi_refusal
from .runtime import get_runtime


class TokenVersionBearer(HttpBearer):
    """Ninja's bearer auth with tokenversion's validation and revocation check."""

    def __call__(self, request: HttpRequest) -> Any:
        result = get_runtime().verifier.authenticate(request.headers.get(self.header))
        if result is None:
            return None
        claims, user = result
        request.user = user
        return claims  # Ninja stores it as request.auth

    def authenticate(self, request: HttpRequest, token: str) -> Any:
        claims, user = get_runtime().verifier.verify(token)
        request.user = user
        return claims


def _answer(request: HttpRequest, exc: Exception) -> HttpResponse:
    verifier = get_runtime().verifier
    report_wsgi_refusal(verifier, exc, request.META, request.method, request.path)
    return refusal(verifier.answer(None if isinstance(exc, AuthenticationError) else exc))


def add_exception_handlers(api: NinjaAPI) -> NinjaAPI:
    """Answer refusals as every tokenversion front door does (and a missing token with the bare challenge)."""
    for kind in (MalformedRequest, TokenRejected, Unavailable, AuthenticationError):
        api.add_exception_handler(kind, _answer)
    return api
