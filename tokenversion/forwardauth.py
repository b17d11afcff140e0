"""The forward-auth service for gateways: ``python -m tokenversion.forwardauth``.

A gateway (nginx ``auth_request``, Traefik ``ForwardAuth``, Caddy ``forward_auth``, Envoy ``ext_authz`` in
HTTP mode) sends it each request's headers as a subrequest, and forwards the request only on a 2xx. It is a
thin adapter over the core verifier (``core/verifier.py``), with its revocation state from the provider's
HTTP feed or Redis (no database), so it answers as every other front door:

- a valid, unrevoked token: ``200`` with the identity headers ``X-Auth-Subject``, ``X-Auth-Username``,
  ``X-Auth-Roles`` (comma-separated, sorted; empty without roles) and ``X-Auth-Session`` (the ``sid``;
  empty without one), always all four; each value is
  percent-encoded (RFC 3986 unreserved characters kept), so a header never carries a byte a gateway or an
  upstream could misread;
- no token, or a bad, expired or revoked one: ``401`` with the RFC 6750 challenge (``400`` for a malformed
  ``Authorization`` header);
- freshness cannot be proven (feed or Redis out of reach) or keys unavailable: ``503`` with ``Retry-After``.

The body is the other doors' ``{"detail": ..., "code": ...}``. Every path answers the check, whatever the
gateway's subrequest URI, except ``GET /-/ready`` (200 once the store can prove freshness, 503 until then:
for a readiness probe). The identity headers it returns are set from the token alone; the gateway must
overwrite (or strip) the same headers on the request it forwards, so that a client cannot send its own:
``docs/gateways.md`` shows how for each gateway.

Configuration, from the environment (``TOKENVERSION_*``) or the command line (which wins); the secrets only
from the environment, so they never show in ``ps``:

    TOKENVERSION_ISSUER          the realm's URL (the tokens' exact iss)                   --issuer
    TOKENVERSION_AUDIENCE        this API's client id(s), comma-separated                  --audience
    TOKENVERSION_JWKS_URL        default: ISSUER/protocol/openid-connect/certs              --jwks-url
    TOKENVERSION_FEED_URL        the provider's feed, https://.../tokenversion/feed         --feed-url
    TOKENVERSION_FEED_SECRET     one of the provider's FEED_SECRETS                        (environment only)
    TOKENVERSION_REDIS_URL       with it, RedisStore (and the feed as its fallback)         --redis-url
    TOKENVERSION_FEED_VERIFY_KEYS  the feed's Ed25519 public keys, comma-separated (Redis)  --feed-verify-keys
    TOKENVERSION_REDIS_CHANNEL   the provider's REDIS_CHANNEL                               --redis-channel
    TOKENVERSION_MAX_STALENESS   seconds (default 1.0)                                      --max-staleness
    TOKENVERSION_MAX_TOKEN_LIFETIME  seconds (default 3600)                                 --max-token-lifetime
    TOKENVERSION_LEEWAY          seconds (default 5)                                        --leeway
    TOKENVERSION_ROLES_CLIENT    also take roles from resource_access[client]               --roles-client
    TOKENVERSION_REALM           the challenge's realm (default "api")                      --realm
    TOKENVERSION_REPORT_URL      the provider's reports endpoint (service reports; off when empty)  --report-url
    TOKENVERSION_REPORT_KEY      this service's key (create_service_key on the provider)   (environment only)
    TOKENVERSION_SERVICE_NAME    informational name in the reporter's User-Agent            --service-name
    TOKENVERSION_REPORT_INTERVAL seconds between reports (default 1)                        --report-interval
    TOKENVERSION_TRUSTED_PROXIES the gateways whose X-Forwarded-For / X-Forwarded-Method / X-Forwarded-Uri
                                 describe a refused request (default 127.0.0.1,::1)         --trusted-proxies
    --host (default 127.0.0.1), --port (default 9180)

A configuration error is one line on stderr and exit status 2. No Django is imported here (``lint-imports``).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any
from urllib.parse import quote

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .core.errors import ConfigurationError, TokenRejected, Unavailable
from .core.verifier import MalformedRequest, Verifier
from .reporting import client_address, is_trusted
from .standalone import make_verifier

logger = logging.getLogger("tokenversion")

METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


def header_value(text: str) -> str:
    """``text`` percent-encoded but for RFC 3986 unreserved characters (and ``@``, common in usernames)."""
    return quote(text, safe="@")


def identity_headers(claims: Mapping[str, Any], user: Any) -> dict[str, str]:
    """Every identity header, always (empty when the token has no such value): a gateway that copies a header
    the check did not send may pass the client's own, or worse (Caddy 2.6 sends its placeholder's name)."""
    username = getattr(user, "username", None)
    sid = claims.get("sid")
    return {
        "X-Auth-Subject": header_value(claims["sub"]),
        "X-Auth-Username": header_value(username) if isinstance(username, str) else "",
        "X-Auth-Roles": ",".join(header_value(role) for role in sorted(getattr(user, "roles", ()))),
        "X-Auth-Session": header_value(sid) if isinstance(sid, str) else "",
    }


def report_refusal(verifier: Verifier, error: BaseException, request: Request) -> None:
    """A revoked token's refusal, described from the gateway's forwarded headers when the subrequest comes from a
    trusted proxy (``TRUSTED_PROXIES``): the client is the right-most ``X-Forwarded-For`` (else ``X-Real-IP``)
    entry that is not a trusted proxy, the method ``X-Forwarded-Method`` (else ``X-Original-Method``), the path
    ``X-Forwarded-Uri`` (else ``X-Original-URI``). From any other peer, the subrequest's own values: a client
    that reaches this service directly cannot put words in a gateway's mouth."""
    if not verifier.wants_report(error):
        return
    try:
        trusted = verifier.reporter.trusted_proxies  # type: ignore[union-attr]
        peer = request.client.host if request.client else None
        headers = request.headers
        method, path, address = request.method, request.url.path, peer
        if peer and is_trusted(peer, trusted):
            address = client_address(peer, headers.get("x-forwarded-for") or headers.get("x-real-ip"), trusted)
            method = headers.get("x-forwarded-method") or headers.get("x-original-method") or method
            path = headers.get("x-forwarded-uri") or headers.get("x-original-uri") or path
        facts = {"client_address": address, "user_agent": headers.get("user-agent"), "method": method, "path": path}
    except Exception:  # an odd request must not turn its refusal into an error
        logger.debug("reporting: the request's facts could not be read", exc_info=True)
        facts = {}
    verifier.report_refusal(error, **facts)


def create_app(verifier: Verifier) -> Starlette:
    """The forward-auth ASGI app around ``verifier`` (its store already started)."""

    async def check(request: Request) -> Response:
        try:
            raw = verifier.token_from_header(request.headers.get("authorization"))
            if raw is None:
                answer = verifier.answer(None)
            else:
                claims, user = await run_in_threadpool(verifier.verify, raw)
                return Response(status_code=200, headers=identity_headers(claims, user))
        except (MalformedRequest, TokenRejected, Unavailable) as exc:
            report_refusal(verifier, exc, request)
            answer = verifier.answer(exc)
        return JSONResponse(answer.body, status_code=answer.status, headers=answer.headers)

    async def ready(request: Request) -> Response:
        staleness = getattr(verifier.store, "staleness", None)
        max_staleness = getattr(verifier.store, "max_staleness", None)
        if staleness is not None and max_staleness is not None and not staleness() <= max_staleness:
            return JSONResponse({"ready": False}, status_code=503, headers={"Retry-After": "1"})
        return JSONResponse({"ready": True})

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        if verifier.reporter is not None:
            verifier.reporter.close()  # one last report, bounded
        close = getattr(verifier.store, "close", None)  # the feed thread ends with the server
        if close is not None:
            close()

    app = Starlette(routes=[Route("/-/ready", ready, methods=["GET"]), Route("/{path:path}", check, methods=METHODS)],
                    lifespan=lifespan)
    app.state.verifier = verifier
    return app


def _list(value: str | None) -> list[str]:
    return [part.strip() for part in (value or "").split(",") if part.strip()]


def parse_args(argv: Sequence[str] | None, environ: Mapping[str, str]) -> argparse.Namespace:
    env = environ.get
    parser = argparse.ArgumentParser(prog="python -m tokenversion.forwardauth",
                                     description="tokenversion's forward-auth service for gateways")
    parser.add_argument("--issuer", default=env("TOKENVERSION_ISSUER"))
    parser.add_argument("--audience", default=env("TOKENVERSION_AUDIENCE"))
    parser.add_argument("--jwks-url", default=env("TOKENVERSION_JWKS_URL"))
    parser.add_argument("--feed-url", default=env("TOKENVERSION_FEED_URL"))
    parser.add_argument("--redis-url", default=env("TOKENVERSION_REDIS_URL"))
    parser.add_argument("--feed-verify-keys", default=env("TOKENVERSION_FEED_VERIFY_KEYS"))
    parser.add_argument("--redis-channel", default=env("TOKENVERSION_REDIS_CHANNEL", "tokenversion:revocations"))
    parser.add_argument("--max-staleness", type=float, default=float(env("TOKENVERSION_MAX_STALENESS", "1.0")))
    parser.add_argument("--max-token-lifetime", type=float,
                        default=float(env("TOKENVERSION_MAX_TOKEN_LIFETIME", "3600")))
    parser.add_argument("--leeway", type=float, default=float(env("TOKENVERSION_LEEWAY", "5")))
    parser.add_argument("--roles-client", default=env("TOKENVERSION_ROLES_CLIENT"))
    parser.add_argument("--realm", default=env("TOKENVERSION_REALM", "api"))
    parser.add_argument("--report-url", default=env("TOKENVERSION_REPORT_URL"))
    parser.add_argument("--service-name", default=env("TOKENVERSION_SERVICE_NAME"))
    parser.add_argument("--report-interval", type=float, default=float(env("TOKENVERSION_REPORT_INTERVAL", "1.0")))
    parser.add_argument("--trusted-proxies", default=env("TOKENVERSION_TRUSTED_PROXIES", "127.0.0.1,::1"))
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9180)
    parser.add_argument("--log-level", default="warning")
    return parser.parse_args(argv)


def verifier_from(args: argparse.Namespace, environ: Mapping[str, str]) -> Verifier:
    problems = [f"{name} is required" for name, value in
                (("--issuer (TOKENVERSION_ISSUER)", args.issuer), ("--audience (TOKENVERSION_AUDIENCE)",
                 args.audience), ("--feed-url (TOKENVERSION_FEED_URL)", args.feed_url),
                 ("TOKENVERSION_FEED_SECRET", environ.get("TOKENVERSION_FEED_SECRET"))) if not value]
    if problems:
        raise ConfigurationError("; ".join(problems))
    options: dict[str, Any] = {"feed_url": args.feed_url, "secret": environ["TOKENVERSION_FEED_SECRET"],
                               "max_staleness": args.max_staleness}
    if args.redis_url:
        store = "tokenversion.stores.redis.RedisStore"
        options.update(redis_url=args.redis_url, verify_keys=_list(args.feed_verify_keys),
                       channel=args.redis_channel)
    else:
        store = "tokenversion.stores.feed.HttpFeedStore"
    return make_verifier(issuer=args.issuer, audience=_list(args.audience), jwks_url=args.jwks_url or None,
                         store=store, store_options=options, leeway=args.leeway,
                         max_token_lifetime=args.max_token_lifetime, roles_client=args.roles_client or None,
                         realm=args.realm, report_url=args.report_url or None,
                         report_key=environ.get("TOKENVERSION_REPORT_KEY"), service_name=args.service_name or None,
                         report_interval=args.report_interval, trusted_proxies=_list(args.trusted_proxies))


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    environ = os.environ if environ is None else environ
    try:
        args = parse_args(argv, environ)
        verifier = verifier_from(args, environ)
    except (ConfigurationError, ValueError) as exc:
        print(f"tokenversion.forwardauth: {exc}", file=sys.stderr)
        return 2
    import uvicorn

    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(name)s %(levelname)s %(message)s")
    # proxy_headers off: the peer must stay the gateway, whose forwarded headers this service reads itself,
    # under its own trust rule (report_refusal).
    uvicorn.run(create_app(verifier), host=args.host, port=args.port, log_level=args.log_level,
                access_log=False, proxy_headers=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
