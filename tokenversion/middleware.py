"""Plain Django views, with no DRF: a middleware for a whole site and a decorator for single views.

Both are thin adapters over the core verifier (``core/verifier.py``), so they answer exactly as the DRF class
does: the same statuses, error codes, body ``{"detail": ..., "code": ...}`` and ``WWW-Authenticate``
challenge (``tests/test_front_doors.py`` runs one table of cases through all of them).

``TokenVersionMiddleware`` (after ``AuthenticationMiddleware``): a request with a bearer token gets
``request.user`` and ``request.auth`` (the claims) or is refused; a request without one passes through
unchanged, so a view that requires a token says so with ``bearer_required``.

``bearer_required`` on a view: refuses a request without a valid bearer token, and authenticates it itself
when the middleware is not installed.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse

from .core.errors import TokenRejected, Unavailable
from .core.verifier import Answer, MalformedRequest
from .reporting import report_wsgi_refusal
from .runtime import get_runtime

_DONE = "_tokenversion_checked"


def refusal(answer: Answer) -> HttpResponse:
    response = JsonResponse(answer.body, status=answer.status)
    for name, value in answer.headers.items():
        response[name] = value
    return response


def authenticate_request(request: HttpRequest) -> HttpResponse | None:
    """Authenticate ``request`` from its bearer token (once); a refusal to send, or ``None`` to go on."""
    if getattr(request, _DONE, False):
        return None
    verifier = get_runtime().verifier
    try:
        result = verifier.authenticate(request.META.get("HTTP_AUTHORIZATION"))
    except (MalformedRequest, TokenRejected, Unavailable) as exc:
        report_wsgi_refusal(verifier, exc, request.META, request.method, request.path)
        return refusal(verifier.answer(exc))
    setattr(request, _DONE, True)
    if result is not None:
        claims, user = result
        request.user = user
        request.auth = claims
    return None


class TokenVersionMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return authenticate_request(request) or self.get_response(request)


def bearer_required(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """The view runs only for a request with a valid, unrevoked bearer token (``request.auth`` set)."""

    @functools.wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        refused = authenticate_request(request)
        if refused is not None:
            return refused
        if getattr(request, "auth", None) is None:
            return refusal(get_runtime().verifier.answer(None))
        return view(request, *args, **kwargs)

    return wrapper
