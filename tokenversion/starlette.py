"""Starlette: an ``AuthenticationBackend``, a thin adapter over the core verifier (``core/verifier.py``).

    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.middleware.authentication import AuthenticationMiddleware
    from tokenversion.standalone import make_verifier
    from tokenversion.starlette import TokenVersionBackend, bearer_required, on_error

    verifier = make_verifier(issuer=..., audience=..., store=..., store_options=...)
    app = Starlette(routes=[...], middleware=[
        Middleware(AuthenticationMiddleware, backend=TokenVersionBackend(verifier), on_error=on_error)])

    @bearer_required
    async def whoami(request):
        return JSONResponse({"sub": request.auth.claims["sub"]})

A request with a bearer token gets ``request.user`` (a ``TokenUser``, or what ``user_factory`` returns) and
``request.auth`` (``TokenCredentials``: scope ``authenticated`` and the validated ``claims``), or is refused
with the same status, code, body and RFC 6750 challenge as the DRF class (503 with ``Retry-After`` when
freshness cannot be proven). A request without one passes through unauthenticated; ``bearer_required``
answers it 401 with the bare challenge. Starlette's own ``@requires`` would answer 403 without a challenge.

No Django is imported here (``lint-imports``).
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from starlette.authentication import AuthCredentials, AuthenticationBackend, AuthenticationError
from starlette.concurrency import run_in_threadpool
from starlette.requests import HTTPConnection, Request
from starlette.responses import JSONResponse, Response

from .core.errors import TokenRejected, Unavailable
from .core.verifier import Answer, MalformedRequest, Verifier
from .reporting import report_asgi_refusal

SCOPE_KEY = "tokenversion.verifier"


class TokenCredentials(AuthCredentials):
    """Starlette's credentials with the token's validated claims."""

    def __init__(self, claims: Mapping[str, Any]) -> None:
        super().__init__(["authenticated"])
        self.claims = claims


class Refused(AuthenticationError):
    """A refusal carrying the verifier's answer; ``on_error`` sends it."""

    def __init__(self, answer: Answer) -> None:
        super().__init__(answer.body["detail"])
        self.answer = answer


def refusal(answer: Answer) -> JSONResponse:
    return JSONResponse(answer.body, status_code=answer.status, headers=answer.headers)


class TokenVersionBackend(AuthenticationBackend):
    """Authenticates ``Authorization: Bearer`` with tokenversion's validation and revocation check."""

    def __init__(self, verifier: Verifier) -> None:
        self.verifier = verifier

    async def authenticate(self, conn: HTTPConnection) -> tuple[TokenCredentials, Any] | None:
        verifier = self.verifier
        conn.scope[SCOPE_KEY] = verifier  # for bearer_required's answer to a request without a token
        try:
            raw = verifier.token_from_header(conn.headers.get("authorization"))
            if raw is None:
                return None
            # A worker thread: the first sight of a token may fetch the JWKS (blocking I/O, bounded by
            # jwks_timeout); the event loop keeps serving meanwhile.
            claims, user = await run_in_threadpool(verifier.verify, raw)
        except (MalformedRequest, TokenRejected, Unavailable) as exc:
            report_asgi_refusal(verifier, exc, conn)
            raise Refused(verifier.answer(exc)) from None
        return TokenCredentials(claims), user


def on_error(conn: HTTPConnection, exc: AuthenticationError) -> Response:
    """``AuthenticationMiddleware``'s ``on_error``: the verifier's answer (400, 401 or 503)."""
    if isinstance(exc, Refused):
        return refusal(exc.answer)
    return JSONResponse({"detail": str(exc), "code": "authentication_failed"}, status_code=401)


def bearer_required(endpoint: Callable[[Request], Awaitable[Response]]) -> Callable[[Request], Awaitable[Response]]:
    """The endpoint runs only for a request authenticated by ``TokenVersionBackend``; otherwise 401 with the
    bare RFC 6750 challenge (the realm of the backend's verifier)."""

    @functools.wraps(endpoint)
    async def wrapper(request: Request) -> Response:
        if isinstance(request.auth, TokenCredentials):
            return await endpoint(request)
        return refusal(_not_authenticated(request))

    return wrapper


def _not_authenticated(request: Request) -> Answer:
    verifier = request.scope.get(SCOPE_KEY)
    if verifier is None:
        raise RuntimeError("bearer_required needs TokenVersionBackend in the app's AuthenticationMiddleware")
    return verifier.answer(None)
