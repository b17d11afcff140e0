"""A ``Verifier`` from plain values, for the front doors that run without Django (FastAPI, Starlette,
the forward-auth service).

The Django front doors build theirs from the ``TOKENVERSION`` setting (``tokenversion.runtime``); a service
with no Django has no settings module, so it says the same things as arguments::

    from tokenversion.standalone import make_verifier

    verifier = make_verifier(
        issuer="https://sso.example.com/realms/acme",
        audience="orders-api",
        store="tokenversion.stores.feed.HttpFeedStore",          # or a store instance
        store_options={"feed_url": "https://provider.example.com/tokenversion/feed", "secret": "..."},
    )

The defaults are the ``TOKENVERSION`` defaults (``docs/configuration.md``), so a token gets the same answer
from a FastAPI service as from a DRF one configured with the same issuer and audience. Only the remote stores
(``HttpFeedStore``, ``RedisStore``) make sense here: the database store is the provider's, and needs Django.

No Django is imported here (``lint-imports``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from .core.errors import ConfigurationError
from .core.revocation import RevocationPolicy, RevocationStore
from .core.tokens import AccessTokenValidator, TokenPolicy, audience_tuple
from .core.verifier import Verifier
from .users import TokenUser

JWKS_PATH = "/protocol/openid-connect/certs"


def build_store(store: str | type | RevocationStore, options: Mapping[str, Any] | None = None, *,
                issuer: str, leeway: float, max_token_lifetime: float) -> RevocationStore:
    """A store instance: ``store`` itself when it is one, else the class (or its dotted path) built with
    ``options`` and the service values it declares it takes (``settings_options``), as the runtime does."""
    if not isinstance(store, (str, type)):
        if options:
            raise ConfigurationError("store_options are for a store class, not a store instance")
        return store
    if isinstance(store, str):
        from .stores.remote import import_object

        store = import_object(store)
    given = dict(options or {})
    service_values = {"issuer": issuer, "leeway": leeway, "max_token_lifetime": max_token_lifetime}
    for name in getattr(store, "settings_options", ()):
        if name in service_values:
            given.setdefault(name, service_values[name])
    try:
        return store(**given)
    except TypeError as exc:  # an unknown or missing option: say which, in one line
        raise ConfigurationError(f"cannot build {store.__name__}: {exc}") from None


def make_verifier(*, issuer: str, audience: str | Sequence[str], store: str | type | RevocationStore,
                  store_options: Mapping[str, Any] | None = None, jwks_url: str | None = None,
                  algorithms: Sequence[str] = ("RS256",), leeway: float = 5.0,
                  max_token_lifetime: float | None = 3600, claim: str = "token_version",
                  require_version_claim: bool = True, check_logout_time: bool = False,
                  roles_client: str | None = None,
                  user_factory: Callable[[Mapping[str, Any]], Any] | None = None, realm: str = "api",
                  observer: Callable[[str], None] | None = None, report_url: str | None = None,
                  report_key: str | None = None, service_name: str | None = None, report_interval: float = 1.0,
                  report_queue_size: int = 1000, trusted_proxies: Sequence[str] = (),
                  **token_options: Any) -> Verifier:
    """One process's verifier. ``user_factory(claims)`` defaults to a ``TokenUser`` (roles from
    ``realm_access`` and, with ``roles_client``, that client's ``resource_access``). ``token_options`` are
    the rest of ``TokenPolicy`` (``max_token_bytes``, ``jwks_lifespan``, ``jwks_timeout``, ...). ``observer``
    hears each decision (``"accepted"`` or the refusal's code), as ``TOKENVERSION["METRICS"]`` wires it for
    the Django doors. ``report_url`` and ``report_key`` turn on service reports (``tokenversion.reporting``;
    the ``REPORT_*`` settings of the Django doors); ``trusted_proxies`` are the addresses whose forwarded headers
    name a refused request's client (the forward-auth service's gateways)."""
    problems = []
    if not isinstance(issuer, str) or not issuer.startswith(("https://", "http://")):
        problems.append("issuer must be the realm's URL (the tokens' exact iss)")
    audiences = audience_tuple(audience)
    if not audiences:
        problems.append("audience is required (this service's client id in the tokens' aud)")
    if max_token_lifetime is not None and not max_token_lifetime > 0:
        problems.append("max_token_lifetime must be positive (or None)")
    if report_url:
        from .reporting import check_report_options, parse_networks

        problems.extend(check_report_options(report_url, report_key, report_interval, report_queue_size))
        try:
            trusted_proxies = parse_networks(trusted_proxies)
        except ValueError as exc:
            problems.append(f"trusted_proxies: {exc}")
    if problems:
        raise ConfigurationError("; ".join(problems))
    issuer = issuer.rstrip("/")  # as the TOKENVERSION setting does
    policy = TokenPolicy(issuer=issuer, audience=audiences, jwks_url=jwks_url or issuer + JWKS_PATH,
                         algorithms=tuple(algorithms), leeway=float(leeway), **token_options)
    revocation = RevocationPolicy(claim=claim, require_version_claim=require_version_claim,
                                  check_logout_time=check_logout_time, leeway=float(leeway),
                                  max_token_lifetime=max_token_lifetime)
    built = build_store(store, store_options, issuer=issuer, leeway=float(leeway),
                        max_token_lifetime=3600.0 if max_token_lifetime is None else float(max_token_lifetime))
    if user_factory is None:
        def user_factory(claims: Mapping[str, Any]) -> TokenUser:
            return TokenUser(claims, roles_client)
    reporter = None
    if report_url:
        from .reporting import Reporter

        reporter = Reporter(report_url, report_key or "", store=built, service_name=service_name,
                            interval=report_interval, queue_size=report_queue_size,
                            trusted_proxies=trusted_proxies)
    return Verifier(AccessTokenValidator(policy), built, revocation, user_factory, realm=realm, observer=observer,
                    reporter=reporter)
