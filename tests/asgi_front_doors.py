"""The FastAPI and Starlette front doors as a service would write them, around a given verifier
(tests/test_front_doors.py runs them in process; tests/test_fastapi_install.py serves one with uvicorn)."""

from __future__ import annotations

from fastapi import Depends, FastAPI
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.authentication import AuthenticationMiddleware
from starlette.responses import JSONResponse
from starlette.routing import Route

from tokenversion.core.verifier import Verifier
from tokenversion.fastapi import Authenticated, TokenVersionBearer, add_exception_handlers
from tokenversion.starlette import TokenVersionBackend, bearer_required, on_error


def fastapi_app(verifier: Verifier) -> FastAPI:
    bearer = TokenVersionBearer(verifier)
    app = add_exception_handlers(FastAPI())

    @app.get("/whoami")
    def whoami(auth: Authenticated = Depends(bearer)):  # noqa: B008 (FastAPI's idiom)
        return {"sub": auth.claims["sub"], "username": auth.user.username}

    return app


def starlette_app(verifier: Verifier) -> Starlette:
    @bearer_required
    async def whoami(request):
        return JSONResponse({"sub": request.auth.claims["sub"], "username": request.user.username})

    return Starlette(routes=[Route("/whoami", whoami)], middleware=[
        Middleware(AuthenticationMiddleware, backend=TokenVersionBackend(verifier), on_error=on_error)])
