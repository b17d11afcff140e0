"""Django's reader of the ``TOKENVERSION`` settings dict, read lazily into a frozen ``ServiceSettings``.

The table of keys, their defaults, parsers and docs is ``tokenversion.core.settings`` (framework-free, also
built from a plain mapping or the environment); this module only reads Django's settings into it. Read on
first use rather than at import, and dropped on Django's ``setting_changed`` signal, so that
``override_settings`` works in tests and nothing is frozen before settings are configured.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings as django_settings
from django.core.signals import setting_changed
from django.dispatch import receiver

from .core.settings import MOVED_STORES, PROVIDER_KEYS, ServiceSettings

__all__ = ["DEFAULTS", "MOVED_STORES", "PROVIDER_KEYS", "ServiceSettings", "TokenVersionSettings", "get_settings",
           "on_reset", "reset"]

TokenVersionSettings = ServiceSettings  # the name before the table moved to the core
DEFAULTS: dict[str, Any] = ServiceSettings.defaults()

# The namespaces whose change drops what was built from them (the provider's is read by tokenversion_server,
# whose cache registers with on_reset).
_WATCHED = frozenset({"TOKENVERSION", "TOKENVERSION_SERVER", "DATABASES"})


def _load() -> ServiceSettings:
    user = getattr(django_settings, "TOKENVERSION", {}) or {}
    # Provider keys still written here are the provider's to read (for one release, check W013), not ours.
    return ServiceSettings.from_mapping({key: value for key, value in user.items() if key not in PROVIDER_KEYS})


_cached: ServiceSettings | None = None
_reset_hooks: list = []


def get_settings() -> ServiceSettings:
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
    if setting in _WATCHED:
        reset()
