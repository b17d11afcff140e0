"""The ``TOKENVERSION`` settings dict, read lazily into a frozen object.

Read on first use rather than at import, and dropped on Django's ``setting_changed`` signal, so that
``override_settings`` works in tests and nothing is frozen before settings are configured.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from functools import cached_property
from typing import Any

from django.conf import settings as django_settings
from django.core.signals import setting_changed
from django.dispatch import receiver

from .core.logout_tokens import LogoutTokenPolicy
from .core.revocation import RevocationPolicy
from .core.tokens import TokenPolicy, audience_tuple

DEFAULTS: dict[str, Any] = {
    # Token validation
    "ISSUER": None,
    "AUDIENCE": None,
    "JWKS_URL": None,  # default: ISSUER + "/protocol/openid-connect/certs"
    "ALGORITHMS": ["RS256"],
    "LEEWAY": 5,
    "TOKEN_TYPE": "Bearer",
    "MAX_TOKEN_BYTES": 8192,
    "JWKS_LIFESPAN": 300,
    "JWKS_COOLDOWN": 30,
    "JWKS_TIMEOUT": 2.0,
    "JWKS_STALE_GRACE": 600,
    "CLAIMS_CACHE_SIZE": 10_000,  # verified tokens kept until exp (0: verify every signature)
    # Revocation
    "CLAIM": "token_version",
    "REQUIRE_VERSION_CLAIM": True,
    "CHECK_LOGOUT_TIME": False,
    "STORE": "tokenversion_server.store.DatabaseStore",
    "STORE_OPTIONS": {},
    "CACHE_TTL": 1.0,
    "CACHE_MAX_ENTRIES": 100_000,
    # The longest access-token lifetime the issuer hands out: how long session revocations are kept.
    "MAX_TOKEN_LIFETIME": 3600,
    # Users
    "USER_LOOKUP": None,  # dotted path: callable(claims) -> user or None
    "ROLES_CLIENT": None,  # also take roles from resource_access[ROLES_CLIENT]
    "WWW_AUTHENTICATE_REALM": "api",
    # Provider side
    "MAPPER_SECRETS": [],
    "EVENT_SECRETS": [],
    "INITIAL_VERSION": 0,
    "PROVISION_USER": None,  # dotted path: callable(issuer, subject, attributes) called by the claims endpoint
    "SUBJECT_RESOLVER": None,  # dotted path: callable(issuer, "username or email") -> subject or None
    # Back-channel logout receiver (docs/backchannel-logout.md): the Keycloak client id(s) that logout tokens
    # name in ``aud``. No fallback to AUDIENCE (that is the APIs' audience, not a client id Keycloak sends
    # logout tokens for): unset, the endpoint refuses every call with 400 ``not_configured``.
    "BACKCHANNEL_AUDIENCE": None,
    "BACKCHANNEL_MAX_AGE": 300,  # seconds: logout tokens issued longer ago are refused, whatever their exp
    # Revocation feed for services without the provider's database (docs/scaling.md).
    "FEED_SECRETS": [],  # X-TokenVersion-Secret values accepted by /tokenversion/feed/*; the first signs Redis messages
    "FEED_MAX_WAIT": 25.0,  # seconds a long-poll may wait
    "FEED_PAGE_SIZE": 1000,  # events or snapshot entries per answer, at most
    "FEED_POLL_INTERVAL": 0.05,  # seconds between the long-poll watcher's looks at the audit trail
    # Open /tokenversion/feed/stream responses per provider process; each holds a worker thread for minutes, so
    # 0 (streams off: services long-poll) until the operator sizes threads for them (docs/scaling.md).
    "FEED_MAX_STREAMS": 0,
    "FEED_STREAM_MAX_AGE": 300.0,  # seconds before the provider ends a stream (the service reconnects at once)
    "REDIS_URL": None,  # where the provider publishes revocations (fast path and tokenversion_publisher)
    "REDIS_CHANNEL": "tokenversion:revocations",
    "PUBLISH_INTERVAL": 0.2,  # seconds between the publisher's heartbeats
}


# Stores that moved; the old path keeps working for one release, with check tokenversion.W012.
MOVED_STORES = {"tokenversion.stores.db.DatabaseStore": "tokenversion_server.store.DatabaseStore"}


@dataclass(frozen=True)
class TokenVersionSettings:
    issuer: str | None
    audience: tuple[str, ...]
    jwks_url: str | None
    algorithms: tuple[str, ...]
    leeway: float
    token_type: str | None
    max_token_bytes: int
    jwks_lifespan: float
    jwks_cooldown: float
    jwks_timeout: float
    jwks_stale_grace: float
    claims_cache_size: int
    claim: str
    require_version_claim: bool
    check_logout_time: bool
    store: str
    store_options: dict[str, Any]
    cache_ttl: float
    cache_max_entries: int
    max_token_lifetime: int
    user_lookup: str | None
    roles_client: str | None
    www_authenticate_realm: str
    mapper_secrets: tuple[str, ...]
    event_secrets: tuple[str, ...]
    initial_version: int
    provision_user: str | None
    subject_resolver: str | None
    backchannel_audience: tuple[str, ...]
    backchannel_max_age: float
    feed_secrets: tuple[str, ...] = ()
    feed_max_wait: float = 25.0
    feed_page_size: int = 1000
    feed_poll_interval: float = 0.05
    feed_max_streams: int = 0
    feed_stream_max_age: float = 300.0
    redis_url: str | None = None
    redis_channel: str = "tokenversion:revocations"
    publish_interval: float = 0.2
    store_moved_from: str | None = None  # the old dotted path STORE named, when it names a moved store (W012)

    def token_policy(self) -> TokenPolicy:
        if not self.issuer or not self.audience or not self.jwks_url:
            from django.core.exceptions import ImproperlyConfigured

            raise ImproperlyConfigured("TOKENVERSION needs ISSUER and AUDIENCE (see `manage.py check`)")
        return TokenPolicy(
            issuer=self.issuer,
            audience=self.audience,
            jwks_url=self.jwks_url,
            algorithms=self.algorithms,
            leeway=self.leeway,
            token_type=self.token_type,
            max_token_bytes=self.max_token_bytes,
            jwks_lifespan=self.jwks_lifespan,
            jwks_cooldown=self.jwks_cooldown,
            jwks_timeout=self.jwks_timeout,
            jwks_stale_grace=self.jwks_stale_grace,
            claims_cache_size=self.claims_cache_size,
        )

    def logout_token_policy(self) -> LogoutTokenPolicy:
        if not self.issuer or not self.backchannel_audience:
            from django.core.exceptions import ImproperlyConfigured

            raise ImproperlyConfigured("back-channel logout needs ISSUER and BACKCHANNEL_AUDIENCE")
        return LogoutTokenPolicy(
            issuer=self.issuer,
            audience=self.backchannel_audience,
            algorithms=self.algorithms,
            leeway=self.leeway,
            max_age=self.backchannel_max_age,
            max_token_bytes=self.max_token_bytes,
        )

    def revocation_policy(self) -> RevocationPolicy:
        """Built once per settings object: it is read on every request."""
        return self._revocation_policy

    @cached_property
    def _revocation_policy(self) -> RevocationPolicy:
        return RevocationPolicy(
            claim=self.claim,
            require_version_claim=self.require_version_claim,
            check_logout_time=self.check_logout_time,
        )


def _secrets(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        value = value.split(",")
    return tuple(s.strip() for s in value or () if s and s.strip())


def _load() -> TokenVersionSettings:
    user = getattr(django_settings, "TOKENVERSION", {}) or {}
    unknown = set(user) - set(DEFAULTS)
    if unknown:
        from django.core.exceptions import ImproperlyConfigured

        raise ImproperlyConfigured(f"unknown TOKENVERSION settings: {', '.join(sorted(unknown))}")
    merged = {**DEFAULTS, **user}
    store, moved_from = merged["STORE"], None
    if store in MOVED_STORES:
        store, moved_from = MOVED_STORES[store], store
    issuer = merged["ISSUER"].rstrip("/") if merged["ISSUER"] else None
    jwks_url = merged["JWKS_URL"] or (f"{issuer}/protocol/openid-connect/certs" if issuer else None)
    values = {
        "issuer": issuer,
        "audience": audience_tuple(merged["AUDIENCE"]),
        "jwks_url": jwks_url,
        "algorithms": tuple(merged["ALGORITHMS"]),
        "leeway": float(merged["LEEWAY"]),
        "token_type": merged["TOKEN_TYPE"],
        "max_token_bytes": int(merged["MAX_TOKEN_BYTES"]),
        "jwks_lifespan": float(merged["JWKS_LIFESPAN"]),
        "jwks_cooldown": float(merged["JWKS_COOLDOWN"]),
        "jwks_timeout": float(merged["JWKS_TIMEOUT"]),
        "jwks_stale_grace": float(merged["JWKS_STALE_GRACE"]),
        "claims_cache_size": int(merged["CLAIMS_CACHE_SIZE"]),
        "claim": merged["CLAIM"],
        "require_version_claim": bool(merged["REQUIRE_VERSION_CLAIM"]),
        "check_logout_time": bool(merged["CHECK_LOGOUT_TIME"]),
        "store": store,
        "store_moved_from": moved_from,
        "store_options": dict(merged["STORE_OPTIONS"]),
        "cache_ttl": float(merged["CACHE_TTL"]),
        "cache_max_entries": int(merged["CACHE_MAX_ENTRIES"]),
        "max_token_lifetime": int(merged["MAX_TOKEN_LIFETIME"]),
        "user_lookup": merged["USER_LOOKUP"],
        "roles_client": merged["ROLES_CLIENT"],
        "www_authenticate_realm": merged["WWW_AUTHENTICATE_REALM"],
        "mapper_secrets": _secrets(merged["MAPPER_SECRETS"]),
        "event_secrets": _secrets(merged["EVENT_SECRETS"]),
        "initial_version": int(merged["INITIAL_VERSION"]),
        "provision_user": merged["PROVISION_USER"],
        "subject_resolver": merged["SUBJECT_RESOLVER"],
        "backchannel_audience": audience_tuple(merged["BACKCHANNEL_AUDIENCE"] or None),
        "backchannel_max_age": float(merged["BACKCHANNEL_MAX_AGE"]),
        "feed_secrets": _secrets(merged["FEED_SECRETS"]),
        "feed_max_wait": float(merged["FEED_MAX_WAIT"]),
        "feed_page_size": int(merged["FEED_PAGE_SIZE"]),
        "feed_poll_interval": float(merged["FEED_POLL_INTERVAL"]),
        "feed_max_streams": int(merged["FEED_MAX_STREAMS"]),
        "feed_stream_max_age": float(merged["FEED_STREAM_MAX_AGE"]),
        "redis_url": merged["REDIS_URL"] or None,
        "redis_channel": str(merged["REDIS_CHANNEL"]),
        "publish_interval": float(merged["PUBLISH_INTERVAL"]),
    }
    assert {f.name for f in fields(TokenVersionSettings)} == set(values)
    return TokenVersionSettings(**values)


_cached: TokenVersionSettings | None = None
_reset_hooks: list = []


def get_settings() -> TokenVersionSettings:
    global _cached
    if _cached is None:
        _cached = _load()
    return _cached


def on_reset(hook) -> None:
    """Register a callable run when settings change (to drop objects built from them)."""
    _reset_hooks.append(hook)


def reset() -> None:
    global _cached
    _cached = None
    for hook in _reset_hooks:
        hook()


@receiver(setting_changed, dispatch_uid="tokenversion.conf.reset")
def _on_setting_changed(*, setting: str, **_: Any) -> None:
    if setting in ("TOKENVERSION", "DATABASES"):
        reset()
