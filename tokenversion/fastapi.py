"""FastAPI: ``TokenVersionBearer``, a dependency in the shape of ``fastapi.security.HTTPBearer``, a thin
adapter over the core verifier (``core/verifier.py``).

    from fastapi import Depends, FastAPI
    from tokenversion.fastapi import Authenticated, TokenVersionBearer, add_exception_handlers
    from tokenversion.standalone import make_verifier

    bearer = TokenVersionBearer(make_verifier(issuer=..., audience=..., store=..., store_options=...))
    app = add_exception_handlers(FastAPI())

    @app.get("/whoami")
    def whoami(auth: Authenticated = Depends(bearer)):
        return {"sub": auth.claims["sub"], "roles": sorted(auth.user.roles)}

The dependency returns ``Authenticated`` (the validated ``claims`` and the ``user``) or raises ``Refused``
with the DRF class's status, RFC 6750 challenge and ``Retry-After``. ``add_exception_handlers`` makes the
body the same too (``{"detail": ..., "code": ...}``); without it FastAPI's own handler still sends the status
and headers, with ``{"detail": ...}``. With ``auto_error=False`` a request without a bearer token gets
``None`` instead of the 401 (a refused token is still refused). Being an ``HTTPBearer``, it appears in the
OpenAPI schema as a bearer security scheme.

No Django is imported here (``lint-imports``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from fastapi.security import HTTPBearer

from .core.errors import TokenRejected, Unavailable
from .core.verifier import Answer, MalformedRequest, Verifier
from .reporting import report_asgi_refusal


@dataclass(frozen=True)
class Authenticated:
    """What the dependency gives the endpoint: the validated claims and the request's user."""

    claims: Mapping[str, Any]
    user: Any


class Refused(HTTPException):
    """An ``HTTPException`` with the verifier's answer: FastAPI's default handler sends its status and
    headers; ``add_exception_handlers`` sends its body as well."""

    def __init__(self, answer: Answer) -> None:
        super().__init__(answer.status, detail=answer.body["detail"], headers=answer.headers)
        self.answer = answer


class TokenVersionBearer(HTTPBearer):
    def __init__(self, verifier: Verifier, *, auto_error: bool = True, scheme_name: str | None = None,
                 description: str | None = None) -> None:
        super().__init__(bearerFormat="JWT", scheme_name=scheme_name, description=description,
                         auto_error=auto_error)
        self.verifier = verifier

    async def __call__(self, request: Request) -> Authenticated | None:  # type: ignore[override]
        verifier = self.verifier
        try:
            raw = verifier.token_from_header(request.headers.get("authorization"))
            if raw is None:
                if self.auto_error:
                    raise Refused(verifier.answer(None))
                return None
            # A worker thread: the first sight of a token may fetch the JWKS (blocking I/O).
            claims, user = await run_in_threadpool(verifier.verify, raw)
        except (MalformedRequest, TokenRejected, Unavailable) as exc:
            report_asgi_refusal(verifier, exc, request)
            raise Refused(verifier.answer(exc)) from None
        request.state.user = user
        return Authenticated(claims, user)


async def _answer(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, Refused)
    return JSONResponse(exc.answer.body, status_code=exc.answer.status, headers=exc.answer.headers)


def add_exception_handlers(app: FastAPI) -> FastAPI:
    """Send refusals with the body every tokenversion front door sends (``{"detail", "code"}``)."""
    app.add_exception_handler(Refused, _answer)
    return app
