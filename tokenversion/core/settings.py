"""A service's settings, framework-free: each key written once, built from a mapping or the environment.

Every key is one dataclass field made by :func:`setting`: its upper-case name (the ``TOKENVERSION`` key), its
default, the parser that turns a written value into the typed one (and refuses a bad one with
``ConfigurationError`` naming the key), and its one-line doc. ``from_mapping`` (a dict, e.g. Django's
``TOKENVERSION``) and ``from_env`` (``TOKENVERSION_<KEY>`` variables) read the same table, so there is no
second list of keys to keep in step. The Django reader is ``tokenversion.conf.get_settings``; the provider's
own keys (``TOKENVERSION_SERVER``) are a second table built with the same helpers in ``tokenversion_server``.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Mapping
from dataclasses import Field, dataclass, field, fields
from functools import cached_property
from typing import Any, ClassVar, TypeVar

from .errors import ConfigurationError
from .logout_tokens import LogoutTokenPolicy
from .revocation import RevocationPolicy
from .tokens import TokenPolicy, audience_tuple

__all__ = ["MOVED_STORES", "PROVIDER_KEYS", "ConfigurationError", "ServiceSettings", "Settings", "setting"]

Parser = Callable[[Any], Any]
S = TypeVar("S", bound="Settings")


def setting(key: str, default: Any, parse: Parser, doc: str, *, env: Parser | None = None) -> Any:
    """One key: a dataclass field carrying its upper-case name, parser and doc (the default is typed).

    ``env`` turns an environment variable's text into what a settings file would hold (``comma_list`` for a
    list, ``json_object`` for a dict) before ``parse``; without it the text goes to ``parse`` as it is."""
    return field(default=default, metadata={"key": key, "parse": parse, "doc": doc, "env": env})


def comma_list(text: str) -> list[str]:
    """The environment's form of a list: comma-separated, blanks dropped."""
    return [s.strip() for s in text.split(",") if s.strip()]


def json_object(text: str) -> Any:
    if not text.strip():
        return {}
    try:
        return json.loads(text)
    except ValueError as exc:
        raise ValueError(f"expected a JSON object: {exc}") from None


# Parsers. Each takes what a settings file or the environment holds and returns the typed value, or raises
# ValueError/TypeError with what is wrong; ``Settings.from_mapping`` adds the key's name to the message.

def optional_str(value: Any) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise TypeError(f"expected a string, got {value!r}")
    return value.strip() or None


def required_str(value: Any) -> str:
    text = optional_str(value)
    if text is None:
        raise ValueError("must not be empty")
    return text


def str_list(value: Any) -> tuple[str, ...]:
    """A list of strings, or one comma-separated string (the environment's form); blanks dropped."""
    if value is None:
        return ()
    if isinstance(value, str):
        value = value.split(",")
    if not isinstance(value, (list, tuple, set, frozenset)):
        raise TypeError(f"expected a list of strings or a comma-separated string, got {value!r}")
    if not all(isinstance(s, str) for s in value):
        raise TypeError(f"expected strings, got {list(value)!r}")
    return tuple(s.strip() for s in value if s.strip())


def audience(value: Any) -> tuple[str, ...]:
    """A string or a list, kept as written: blank entries are the check's to report (E002), not dropped."""
    if value is not None and not isinstance(value, (str, list, tuple)):
        raise TypeError(f"expected a string or a list of strings, got {value!r}")
    return audience_tuple(value or None)


def algorithms(value: Any) -> tuple[str, ...]:
    """Kept as written, so the check can name what is wrong (E003), a bare string included."""
    if not isinstance(value, (str, list, tuple)):
        raise TypeError(f"expected a list of algorithm names, got {value!r}")
    return tuple(value)


def number(minimum: float | None = None) -> Parser:
    def parse(value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise TypeError(f"expected a number, got {value!r}")
        try:
            result = float(value)
        except ValueError:
            raise ValueError(f"expected a number, got {value!r}") from None
        if not math.isfinite(result):
            raise ValueError(f"expected a finite number, got {value!r}")
        if minimum is not None and result < minimum:
            raise ValueError(f"must be at least {minimum:g}, got {value!r}")
        return result

    return parse


def integer(minimum: int | None = None) -> Parser:
    def parse(value: Any) -> int:
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            raise TypeError(f"expected a whole number, got {value!r}")
        try:
            result = int(value)
        except ValueError:
            raise ValueError(f"expected a whole number, got {value!r}") from None
        if minimum is not None and result < minimum:
            raise ValueError(f"must be at least {minimum}, got {value!r}")
        return result

    return parse


_TRUE, _FALSE = {"1", "true", "yes", "on"}, {"0", "false", "no", "off", ""}


def boolean(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise TypeError(f"expected true or false (1/0, true/false, yes/no, on/off), got {value!r}")


def options(value: Any) -> dict[str, Any]:
    """A mapping of options (in the environment: a JSON object)."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise TypeError(f"expected a mapping of options, got {value!r}")
    return dict(value)


def issuer_url(value: Any) -> str | None:
    text = optional_str(value)
    return text.rstrip("/") if text else None


@dataclass(frozen=True)
class Settings:
    """What every settings table shares: the readers. Subclasses declare their keys with :func:`setting`."""

    namespace: ClassVar[str] = "TOKENVERSION"

    @classmethod
    def keys(cls) -> dict[str, Field]:
        """Each upper-case key and its field, in declaration order."""
        return {f.metadata["key"]: f for f in fields(cls) if "key" in f.metadata}

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        """Each key's default, typed (as a settings object built from nothing holds it)."""
        empty = cls()
        return {key: getattr(empty, f.name) for key, f in cls.keys().items()}

    @classmethod
    def from_mapping(cls: type[S], values: Mapping[str, Any], *, where: Callable[[str], str] | None = None,
                     convert: bool = False) -> S:
        """Settings from ``{"ISSUER": ..., ...}`` (unset keys take their defaults); an unknown key or a bad
        value raises ``ConfigurationError`` naming the key (``where`` says how: ``TOKENVERSION['LEEWAY']``).
        ``convert`` reads string values in their environment form (lists comma-separated, dicts JSON)."""
        name = where or (lambda key: f"{cls.namespace}[{key!r}]")
        table = cls.keys()
        unknown = sorted(set(values) - set(table))
        if unknown:
            raise ConfigurationError(f"unknown {cls.namespace} settings: {', '.join(map(str, unknown))}")
        parsed = {}
        for key, f in table.items():
            if key not in values:
                continue
            try:
                value = values[key]
                if convert and isinstance(value, str) and f.metadata["env"] is not None:
                    value = f.metadata["env"](value)
                parsed[f.name] = f.metadata["parse"](value)
            except (TypeError, ValueError) as exc:
                raise ConfigurationError(f"{name(key)}: {exc}") from None
        return cls(**parsed)

    @classmethod
    def from_env(cls: type[S], prefix: str | None = None, environ: Mapping[str, str] | None = None) -> S:
        """Settings from ``<prefix><KEY>`` environment variables, e.g. ``TOKENVERSION_ISSUER``.

        Only the table's keys are read (other variables with the prefix are left alone); lists are
        comma-separated, booleans ``1``/``0`` (or true/false, yes/no, on/off), ``STORE_OPTIONS`` a JSON object,
        and an empty value means ``None`` for a key that takes it."""
        prefix = f"{cls.namespace}_" if prefix is None else prefix
        environ = os.environ if environ is None else environ
        values = {key: environ[prefix + key] for key in cls.keys() if prefix + key in environ}
        return cls.from_mapping(values, where=lambda key: prefix + key, convert=True)


# The provider's keys, which moved from TOKENVERSION to TOKENVERSION_SERVER (read by tokenversion_server). Named
# here so a service's reader can set them aside (and its check name them) without importing the provider;
# tests/test_settings.py proves this list is exactly the provider's table.
PROVIDER_KEYS = frozenset({
    "MAPPER_SECRETS", "EVENT_SECRETS", "INITIAL_VERSION", "PROVISION_USER", "SUBJECT_RESOLVER",
    "BACKCHANNEL_AUDIENCE", "BACKCHANNEL_MAX_AGE", "SSO_SESSION_MAX",
    "FEED_SECRETS", "FEED_SIGNING_KEY", "FEED_MAX_WAIT", "FEED_PAGE_SIZE", "FEED_POLL_INTERVAL",
    "FEED_MAX_LONG_POLLS", "FEED_MAX_STREAMS", "FEED_STREAM_MAX_AGE", "REDIS_URL", "REDIS_CHANNEL",
    "PUBLISH_INTERVAL", "ATTRIBUTE_SYNC", "ATTRIBUTE_NAME", "ATTRIBUTE_SYNC_INTERVAL", "ATTRIBUTE_RETRY_MAX",
    "ATTRIBUTE_SCAN_INTERVAL",
})

# Stores that moved; the old path keeps working for one release, with check tokenversion.W012.
MOVED_STORES = {"tokenversion.stores.db.DatabaseStore": "tokenversion_server.store.DatabaseStore"}


@dataclass(frozen=True)
class ServiceSettings(Settings):
    """A service's settings (``TOKENVERSION``): validating tokens and reading revocations."""

    # Token validation
    issuer: str | None = setting("ISSUER", None, issuer_url,
                                 "exact `iss` of accepted tokens (trailing `/` dropped)")
    audience: tuple[str, ...] = setting("AUDIENCE", (), audience,
                                        "string or list; a token's `aud` must contain one of them", env=comma_list)
    jwks_url: str | None = setting("JWKS_URL", None, optional_str,
                                   "where keys come from; default ISSUER + /protocol/openid-connect/certs")
    algorithms: tuple[str, ...] = setting("ALGORITHMS", ("RS256",), algorithms, "allow-list, asymmetric only",
                                            env=comma_list)
    leeway: float = setting("LEEWAY", 5.0, number(0), "seconds of clock skew for exp, iat, nbf")
    token_type: str | None = setting("TOKEN_TYPE", "Bearer", optional_str, "required payload typ; None: no check")
    max_token_bytes: int = setting("MAX_TOKEN_BYTES", 8192, integer(1), "longer tokens are refused unparsed")
    jwks_lifespan: float = setting("JWKS_LIFESPAN", 300.0, number(0), "seconds a key set is cached")
    jwks_cooldown: float = setting("JWKS_COOLDOWN", 30.0, number(0), "least seconds between unknown-kid refetches")
    jwks_timeout: float = setting("JWKS_TIMEOUT", 2.0, number(0), "JWKS fetch timeout, seconds")
    jwks_stale_grace: float = setting("JWKS_STALE_GRACE", 600.0, number(0),
                                      "seconds the last good key set serves while the issuer is unreachable")
    claims_cache_size: int = setting("CLAIMS_CACHE_SIZE", 10_000, integer(0),
                                     "verified tokens kept until exp (0: verify every signature)")
    # Revocation
    claim: str = setting("CLAIM", "token_version", required_str, "name of the version claim")
    require_version_claim: bool = setting("REQUIRE_VERSION_CLAIM", True, boolean, "refuse tokens without it")
    check_logout_time: bool = setting("CHECK_LOGOUT_TIME", False, boolean,
                                      "also refuse tokens issued before the user's last logout")
    store: str = setting("STORE", "tokenversion_server.store.DatabaseStore", required_str,
                         "dotted path of the revocation store")
    store_options: Mapping[str, Any] = setting("STORE_OPTIONS", None, options,
                                            "the store's options (a JSON object in the environment)",
                                            env=json_object)
    cache_ttl: float = setting("CACHE_TTL", 1.0, number(0), "the store's per-process cache: staleness bound, s")
    cache_max_entries: int = setting("CACHE_MAX_ENTRIES", 100_000, integer(0), "the cache's size bound")
    max_token_lifetime: int = setting("MAX_TOKEN_LIFETIME", 3600, integer(),
                                      "longest access-token lifetime: how long session revocations are kept")
    # Users
    user_lookup: str | None = setting("USER_LOOKUP", None, optional_str,
                                      "dotted path: callable(claims) -> user or None")
    roles_client: str | None = setting("ROLES_CLIENT", None, optional_str,
                                       "also take roles from resource_access[ROLES_CLIENT]")
    www_authenticate_realm: str = setting("WWW_AUTHENTICATE_REALM", "api", required_str,
                                          "the realm of the WWW-Authenticate challenge")
    metrics: bool = setting("METRICS", False, boolean,
                            "count the verifier's decisions for Prometheus (the metrics extra; docs/operations.md)")
    metrics_secrets: tuple[str, ...] = setting("METRICS_SECRETS", (), str_list,
                                               "bearer secrets /metrics answers; none: 404", env=comma_list)
    # Derived, not keys: the old dotted path STORE named, when it names a moved store (W012).
    store_moved_from: str | None = None

    def __post_init__(self) -> None:
        # Defaults that depend on other keys, and the one mutable default, filled once here.
        if self.store_options is None:
            object.__setattr__(self, "store_options", {})
        if self.jwks_url is None and self.issuer:
            object.__setattr__(self, "jwks_url", f"{self.issuer}/protocol/openid-connect/certs")
        if self.store in MOVED_STORES:
            object.__setattr__(self, "store_moved_from", self.store)
            object.__setattr__(self, "store", MOVED_STORES[self.store])

    def token_policy(self) -> TokenPolicy:
        if not self.issuer or not self.audience or not self.jwks_url:
            raise ConfigurationError("TOKENVERSION needs ISSUER and AUDIENCE (see `manage.py check`)")
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

    def logout_token_policy(self, audience: tuple[str, ...], max_age: float) -> LogoutTokenPolicy:
        """For a back-channel logout receiver (the provider's ``BACKCHANNEL_AUDIENCE`` and ``_MAX_AGE``)."""
        if not self.issuer or not audience:
            raise ConfigurationError("back-channel logout needs ISSUER and BACKCHANNEL_AUDIENCE")
        return LogoutTokenPolicy(
            issuer=self.issuer,
            audience=audience,
            algorithms=self.algorithms,
            leeway=self.leeway,
            max_age=max_age,
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
            leeway=self.leeway,
            max_token_lifetime=self.max_token_lifetime,
        )
