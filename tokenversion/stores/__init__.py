"""Revocation stores. The process's store is the runtime's (``tokenversion.runtime``), built once from
``TOKENVERSION["STORE"]`` and ``STORE_OPTIONS``."""

from __future__ import annotations

from ..core.revocation import RevocationStore


def get_store() -> RevocationStore:
    from ..runtime import get_runtime

    return get_runtime().store


def reset_store() -> None:
    """Close the store and build a new one on next use (with the rest of the runtime)."""
    from ..runtime import reset_runtime

    reset_runtime()
