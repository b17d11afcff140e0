"""The process's one runtime: the settings, and the validator, store and verifier built from them.

One object replaces what used to be three module-level singletons (the validator in the DRF module, the store
in ``stores``, the resolved policy), each with its own reset hook. Built lazily on first use, dropped (and its
store closed) when Django's settings change, so ``override_settings`` works. Every front door and the
provider's back-channel receiver share it, so a process holds one JWKS client and one store.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from typing import Any

from django.utils.module_loading import import_string

from .conf import TokenVersionSettings, get_settings, on_reset
from .core.errors import ConfigurationError
from .core.revocation import RevocationStore
from .core.tokens import AccessTokenValidator
from .core.verifier import Verifier
from .reporting import Reporter
from .users import TokenUser

logger = logging.getLogger("tokenversion")


class Runtime:
    """What one process needs to decide on tokens, each part built once, on first use."""

    def __init__(self, settings: TokenVersionSettings) -> None:
        self.settings = settings
        self._lock = threading.RLock()
        self._validator: AccessTokenValidator | None = None
        self._store: RevocationStore | None = None
        self._verifier: Verifier | None = None
        self._reporter: Reporter | None = None

    @property
    def validator(self) -> AccessTokenValidator:
        if self._validator is None:
            with self._lock:
                if self._validator is None:
                    self._validator = AccessTokenValidator(self.settings.token_policy())
        return self._validator

    @property
    def store(self) -> RevocationStore:
        if self._store is None:
            with self._lock:
                if self._store is None:
                    self._store = build_store(self.settings)
        return self._store

    @property
    def verifier(self) -> Verifier:
        if self._verifier is None:
            with self._lock:
                if self._verifier is None:
                    conf = self.settings
                    self._reporter = self.build_reporter()
                    self._verifier = Verifier(self.validator, self.store, conf.revocation_policy(),
                                              self.user_factory(), realm=conf.www_authenticate_realm,
                                              observer=self.observer(), reporter=self._reporter)
        return self._verifier

    @property
    def reporter(self) -> Reporter | None:
        """The service reports' sender (``REPORT_URL``), once the verifier is built; ``None`` when off."""
        return self._reporter

    def build_reporter(self) -> Reporter | None:
        """``REPORT_URL``: a reporter over this runtime's store; its thread starts with the first request.
        A reporting misconfiguration (also system check E051) is logged and reporting stays off: it must never
        take requests down."""
        conf = self.settings
        if not conf.report_url:
            return None
        try:
            return Reporter(conf.report_url, conf.report_key or "", store=self.store,
                            service_name=conf.service_name, interval=conf.report_interval,
                            queue_size=conf.report_queue_size, trusted_proxies=conf.trusted_proxies)
        except ConfigurationError as exc:
            logger.error("service reports are off: %s", exc)
            return None

    def use_validator(self, validator: AccessTokenValidator) -> None:
        """Put ``validator`` in place of the runtime's (benchmarks compare a fresh one with a warm one)."""
        with self._lock:
            self._validator = validator
            if self._verifier is not None:
                self._verifier.validator = validator

    def observer(self) -> Callable[[str], None] | None:
        """``METRICS``: the Prometheus observer (the ``metrics`` extra), imported only when asked for."""
        if not self.settings.metrics:
            return None
        from .metrics import ServiceMetrics

        return ServiceMetrics(self)

    def user_factory(self) -> Callable[[Mapping[str, Any]], Any]:
        """``USER_LOOKUP`` (imported once) first, then a ``TokenUser``."""
        conf = self.settings
        lookup = import_string(conf.user_lookup) if conf.user_lookup else None
        roles_client = conf.roles_client

        def user_for(claims: Mapping[str, Any]) -> Any:
            if lookup is not None:
                user = lookup(claims)
                if user is not None:
                    return user
            return TokenUser(claims, roles_client)

        return user_for

    def close(self) -> None:
        reporter = self._reporter
        if reporter is not None:
            reporter.close()
        observer_close = getattr(getattr(self._verifier, "observer", None), "close", None)
        if observer_close is not None:
            observer_close()
        store = self._store
        if store is not None:
            close = getattr(store, "close", None)
            if close is not None:
                close()


def build_store(settings: TokenVersionSettings) -> RevocationStore:
    """The configured store, given its options and the service settings it declares it takes
    (``settings_options``: e.g. a remote store's ``max_token_lifetime``, ``leeway`` and ``issuer``)."""
    store_class = import_string(settings.store)
    options = dict(settings.store_options)
    for name in getattr(store_class, "settings_options", ()):
        options.setdefault(name, getattr(settings, name))
    return store_class(**options)


_runtime: Runtime | None = None
_lock = threading.Lock()


def get_runtime() -> Runtime:
    runtime = _runtime
    if runtime is None:
        with _lock:
            runtime = _runtime
            if runtime is None:
                runtime = _set(Runtime(get_settings()))
    return runtime


def _set(runtime: Runtime | None) -> Runtime | None:
    global _runtime
    _runtime = runtime
    return runtime


def reset_runtime() -> None:
    """Drop the runtime (closing its store); the next use builds a new one from the current settings."""
    with _lock:
        old = _runtime
        _set(None)
    if old is not None:
        old.close()


on_reset(reset_runtime)
