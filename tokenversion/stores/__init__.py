"""The process's revocation store, built once from settings (``TOKENVERSION["STORE"]``)."""

from __future__ import annotations

import threading

from django.utils.module_loading import import_string

from ..conf import get_settings, on_reset
from ..core.revocation import RevocationStore

_store: RevocationStore | None = None
_lock = threading.Lock()


def get_store() -> RevocationStore:
    global _store
    if _store is None:
        with _lock:
            if _store is None:
                conf = get_settings()
                store_class = import_string(conf.store)
                _store = store_class(**conf.store_options)
    return _store


def reset_store() -> None:
    global _store
    old, _store = _store, None
    close = getattr(old, "close", None)
    if close is not None:
        close()


on_reset(reset_store)
