"""System checks with stable ids, so misconfiguration is caught by ``manage.py check``, not by users."""

from __future__ import annotations

import importlib.util
import os
from urllib.parse import urlparse

from django.apps import apps
from django.conf import settings
from django.core.checks import Error, Tags, Warning, register
from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string
from jwt.algorithms import get_default_algorithms

from .conf import PROVIDER_KEYS, get_settings

_LOOPBACK = {"localhost", "127.0.0.1", "::1"}
_CLASS_PATH = "tokenversion.authentication.TokenVersionAuthentication"
# The provider's Django app (its own distribution): named, never imported, from the service side.
PROVIDER_APP = "tokenversion_server"
SERVER_NAMESPACE = "TOKENVERSION_SERVER"  # the provider's settings (tokenversion_server.conf)
# The asymmetric algorithms PyJWT can verify (names are case-sensitive, as in a token's "alg" header).
_ASYMMETRIC = frozenset(a for a in get_default_algorithms() if a != "none" and not a.startswith("HS"))


@register(Tags.security, "tokenversion")
def check_settings(app_configs=None, **kwargs):
    try:
        conf = get_settings()
    except (ImproperlyConfigured, TypeError, ValueError, AttributeError) as exc:
        return [Error(str(exc), id="tokenversion.E000")]
    errors = []
    if not conf.issuer:
        errors.append(Error("TOKENVERSION['ISSUER'] is not set: no token can be validated.",
                            hint="Set it to the realm URL, e.g. https://sso.example.com/realms/main",
                            id="tokenversion.E001"))
    if not conf.audience or not all(isinstance(a, str) and a.strip() for a in conf.audience):
        errors.append(Error("TOKENVERSION['AUDIENCE'] is not set: tokens for any client would be accepted.",
                            hint="Set it to this API's audience and add an Audience mapper in Keycloak.",
                            id="tokenversion.E002"))
    bad_algs = [a for a in conf.algorithms if a not in _ASYMMETRIC]
    if not conf.algorithms or bad_algs:
        errors.append(Error(f"TOKENVERSION['ALGORITHMS'] must list asymmetric algorithms only, got "
                            f"{list(conf.algorithms)}.", id="tokenversion.E003"))
    try:
        store_class = import_string(conf.store)
    except ImportError as exc:
        store_class = None
        if conf.store.startswith(PROVIDER_APP + ".") and importlib.util.find_spec(PROVIDER_APP) is None:
            errors.append(_no_provider_tables(conf.store))
        else:
            errors.append(Error(f"TOKENVERSION['STORE'] cannot be imported: {exc}", id="tokenversion.E004"))
    errors.extend(_check_store_options(store_class, conf.store_options))
    required_app = getattr(store_class, "required_app", None)
    if required_app and not apps.is_installed(required_app):
        errors.append(_no_provider_tables(conf.store))
    if conf.store_moved_from:
        errors.append(Warning(f"TOKENVERSION['STORE'] names {conf.store_moved_from}, which moved to {conf.store} "
                              "(the provider's distribution).",
                              hint=f"Write {conf.store!r}; the old path will stop working in the next release.",
                              id="tokenversion.W012"))
    for name, url in (("ISSUER", conf.issuer), ("JWKS_URL", conf.jwks_url)):
        if not url:
            continue
        parsed = urlparse(url)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            errors.append(Error(f"TOKENVERSION['{name}'] must be an http(s) URL, got {url!r}.",
                                id="tokenversion.E005"))
        elif parsed.scheme == "http" and parsed.hostname not in _LOOPBACK:
            errors.append(Warning(f"TOKENVERSION['{name}'] uses plain http off loopback.",
                                  hint="Use https so keys and tokens cannot be tampered with in transit.",
                                  id="tokenversion.W001"))
    if not conf.require_version_claim and not conf.check_logout_time:
        errors.append(Warning("Tokens without the version claim are accepted with no per-user check.",
                              hint="Keep REQUIRE_VERSION_CLAIM on, or turn CHECK_LOGOUT_TIME on.",
                              id="tokenversion.W002"))
    workers = _int(os.environ.get("WEB_CONCURRENCY"))
    if workers > 1 and conf.store.endswith("DatabaseStore") and conf.cache_ttl > 1:
        errors.append(Warning(f"CACHE_TTL is {conf.cache_ttl:g} s with {workers} workers: a revocation made "
                              f"in one worker reaches the others only that long after it commits.",
                              hint="Keep CACHE_TTL at 1 s or less, or use a pushed store.",
                              id="tokenversion.W003"))
    classes = getattr(settings, "REST_FRAMEWORK", {}).get("DEFAULT_AUTHENTICATION_CLASSES", [])
    if _CLASS_PATH in classes and classes[0] != _CLASS_PATH:
        errors.append(Warning("TokenVersionAuthentication is not the first authentication class: DRF takes "
                              "the WWW-Authenticate header from the first one, so RFC 6750 errors are lost.",
                              id="tokenversion.W004"))
    if conf.leeway > 60:
        errors.append(Warning(f"LEEWAY is {conf.leeway:g} s: expired tokens stay valid that long.",
                              id="tokenversion.W005"))
    signing_key_at = _provider_key_at("FEED_SIGNING_KEY")
    if signing_key_at and not apps.is_installed(PROVIDER_APP):
        errors.append(Warning(f"{signing_key_at} is set on a service: it can sign Redis messages "
                              "that every service believes. Services need only the public key (verify_keys).",
                              hint="Remove it here; keep it on the provider and the publisher only.",
                              id="tokenversion.W020"))
    errors.extend(_check_token_lifetime(conf.max_token_lifetime))
    return errors


@register(Tags.security, "tokenversion")
def check_moved_settings(app_configs=None, **kwargs):
    """W013: a provider key still in ``TOKENVERSION``. Read from there for one release; named, with its new home."""
    service = getattr(settings, "TOKENVERSION", None) or {}
    server = getattr(settings, SERVER_NAMESPACE, None) or {}
    found = []
    for key in sorted(set(service) & PROVIDER_KEYS):
        wins = (f" {SERVER_NAMESPACE}[{key!r}] is also set and is the value used."
                if key in server else " It is still read from TOKENVERSION for this release.")
        found.append(Warning(f"TOKENVERSION[{key!r}] is a provider setting: it moved to "
                             f"{SERVER_NAMESPACE}[{key!r}].{wins}",
                             hint=f"Move it to {SERVER_NAMESPACE} (read by {PROVIDER_APP}); TOKENVERSION stops "
                                  "accepting it in the next release. A service without the provider needs none of "
                                  "them: remove it (docs/configuration.md).",
                             id="tokenversion.W013"))
    return found


def _provider_key_at(key: str) -> str | None:
    """Where a provider key is set (its namespace, or the deprecated one), without reading it."""
    if (getattr(settings, SERVER_NAMESPACE, None) or {}).get(key):
        return f"{SERVER_NAMESPACE}[{key!r}]"
    if (getattr(settings, "TOKENVERSION", None) or {}).get(key):
        return f"TOKENVERSION[{key!r}]"
    return None


# Keycloak's default access-token lifespan (realm "Access Token Lifespan").
KEYCLOAK_DEFAULT_LIFESPAN = 300


def _check_token_lifetime(limit: int):
    """E014 / W014: the class refuses tokens living longer than MAX_TOKEN_LIFETIME (token_lifetime_exceeded),
    because revocations are kept only that long; a value below Keycloak's lifespan refuses sound tokens."""
    rule = ("tokens whose exp - iat exceeds it are refused with token_lifetime_exceeded, since revocations "
            "are kept only that long")
    if limit < 1:
        return [Error(f"TOKENVERSION['MAX_TOKEN_LIFETIME'] is {limit}: every token would be refused ({rule}).",
                      hint="Set it to the realm's longest access-token lifespan, in seconds.",
                      id="tokenversion.E014")]
    if limit < KEYCLOAK_DEFAULT_LIFESPAN:
        return [Warning(f"TOKENVERSION['MAX_TOKEN_LIFETIME'] is {limit} s, below Keycloak's default access-token "
                        f"lifespan of {KEYCLOAK_DEFAULT_LIFESPAN} s: {rule}.",
                        hint="Set it to the realm's longest access-token lifespan (realm and client settings), "
                             "or lower that lifespan in Keycloak to match (docs/authentication.md).",
                        id="tokenversion.W014")]
    return []


def _check_store_options(store_class, options):
    """E006: options a remote store cannot work with; W011: a feed or Redis reached in clear off loopback."""
    check = getattr(store_class, "check_options", None)
    if check is None:
        return []
    found = [Error(f"TOKENVERSION['STORE_OPTIONS']: {problem}", id="tokenversion.E006") for problem in check(options)]
    for key, clear in (("feed_url", "http"), ("redis_url", "redis")):
        url = options.get(key)
        parsed = urlparse(url) if isinstance(url, str) else None
        if parsed and parsed.scheme == clear and parsed.hostname and parsed.hostname not in _LOOPBACK:
            found.append(Warning(f"STORE_OPTIONS['{key}'] is not encrypted ({parsed.scheme}://) off loopback: the "
                                 "feed secret and the revocations travel in clear.",
                                 hint="Use https:// and rediss://, or a private network you trust.",
                                 id="tokenversion.W011"))
    return found


def _no_provider_tables(store: str) -> Error:
    return Error(f"TOKENVERSION['STORE'] is {store}, which reads the provider's tables, but this project does "
                 f"not have them ({PROVIDER_APP!r} is not installed): every token would be answered 503.",
                 hint="A service without the provider's database sets STORE to "
                      "tokenversion.stores.feed.HttpFeedStore (or RedisStore) with STORE_OPTIONS "
                      "(README, docs/scaling.md).",
                 id="tokenversion.E007")


def _int(value: str | None) -> int:
    try:
        return int(value or 0)
    except ValueError:
        return 0


@register(Tags.compatibility, "tokenversion")
def check_metrics(app_configs=None, **kwargs):
    """``METRICS`` needs prometheus-client (the ``metrics`` extra): say so at start, not as 503s later."""
    try:
        conf = get_settings()
    except (ImproperlyConfigured, TypeError, ValueError, AttributeError):
        return []  # reported by check_settings
    if conf.metrics and importlib.util.find_spec("prometheus_client") is None:
        return [Error("TOKENVERSION['METRICS'] is on but prometheus-client is not installed.",
                      hint="pip install 'django-tokenversion[metrics]'", id="tokenversion.E031")]
    return []


# The provider's default rate limit on reports (docs/contract.md, "Service reports"): per instance.
REPORTS_PER_MINUTE = 120


@register(Tags.security, "tokenversion")
def check_reporting(app_configs=None, **kwargs):
    """E050-E051, W050-W054: service reports (``REPORT_URL``, ``REPORT_KEY``; docs/operations.md). The provider's
    checks for service reports are E055-E057 and W057-W058 (``tokenversion_server.checks``)."""
    try:
        conf = get_settings()
    except (ImproperlyConfigured, TypeError, ValueError, AttributeError):
        return []  # reported by check_settings
    found = []
    if not conf.report_url:
        if conf.report_key:
            found.append(Warning("TOKENVERSION['REPORT_KEY'] is set but REPORT_URL is empty: this service sends "
                                 "no reports.",
                                 hint="Set REPORT_URL to the provider's https://.../tokenversion/reports, or remove "
                                      "REPORT_KEY.", id="tokenversion.W051"))
        return found
    parsed = urlparse(conf.report_url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        found.append(Error(f"TOKENVERSION['REPORT_URL'] must be an http(s) URL, got {conf.report_url!r}: no report "
                           "can be sent.",
                           hint="e.g. https://provider.example.com/tokenversion/reports", id="tokenversion.E050"))
    elif parsed.scheme == "http" and parsed.hostname not in _LOOPBACK:
        found.append(Warning("TOKENVERSION['REPORT_URL'] uses plain http off loopback: the service key and the "
                             "reports (client addresses included) travel in clear.",
                             hint="Use https, or a private network you trust.", id="tokenversion.W050"))
    if not conf.report_key:
        found.append(Error("TOKENVERSION['REPORT_URL'] is set without REPORT_KEY: the provider refuses unsigned "
                           "reports, so reporting is off.",
                           hint="On the provider: python3 manage.py create_service_key <service-name>; put the key "
                                "it prints in REPORT_KEY (from the environment: TOKENVERSION_REPORT_KEY).",
                           id="tokenversion.E051"))
    elif not conf.report_key.startswith("tvs_"):
        found.append(Warning("TOKENVERSION['REPORT_KEY'] does not look like a service key (tvs_...).",
                             hint="Use the key `manage.py create_service_key` printed, not a feed secret or API key.",
                             id="tokenversion.W052"))
    if conf.report_interval < 60 / REPORTS_PER_MINUTE:
        found.append(Warning(f"TOKENVERSION['REPORT_INTERVAL'] is {conf.report_interval:g} s: more than the "
                             f"provider's default {REPORTS_PER_MINUTE} reports a minute per process, so some are "
                             "answered 429 and wait.",
                             hint="Keep it at 0.5 s or more (default 1 s).", id="tokenversion.W053"))
    if conf.report_queue_size < 100:
        found.append(Warning(f"TOKENVERSION['REPORT_QUEUE_SIZE'] is {conf.report_queue_size}: a burst of revoked-token "
                             "uses beyond it is dropped (counted) before it can be reported.",
                             hint="Keep it at 100 or more (default 1000).", id="tokenversion.W054"))
    return found
