"""The issuer's signing keys, through PyJWT's ``PyJWKClient`` with two guarantees added.

PyJWT already caches the key set, refetches once on an unknown ``kid`` (rate limited by a cooldown) and, since
2.15, keeps its cache when a fetch fails. Two gaps remain for a resource server that must stay up while its
issuer blips, and this subclass closes only those:

- when the cached set has expired and the refetch fails, the last good set keeps serving for a bounded
  grace period instead of every request failing;
- after a failed fetch, further fetches wait ``retry_after_failure`` seconds, so a flood of tokens with
  random ``kid`` values cannot turn an issuer outage into one blocking network call per request.

It also indexes the cached set by ``kid``, because PyJWT rebuilds and scans the key list on every lookup.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from jwt import PyJWK, PyJWKClient
from jwt.exceptions import PyJWKClientConnectionError, PyJWKClientError


class ResilientJWKClient(PyJWKClient):
    """A ``PyJWKClient`` that serves the last good key set through short issuer outages."""

    def __init__(
        self,
        uri: str,
        *,
        lifespan: float = 300,
        cooldown: float = 30,
        timeout: float = 2.0,
        stale_grace: float = 600,
        retry_after_failure: float = 5.0,
    ) -> None:
        # cache_keys stays off: PyJWT's per-kid LRU never expires, so a removed key would live forever.
        super().__init__(
            uri,
            cache_keys=False,
            cache_jwk_set=True,
            lifespan=lifespan,
            timeout=timeout,
            cooldown_duration=cooldown,
        )
        self.stale_grace = stale_grace
        self.retry_after_failure = retry_after_failure
        self._last_good: dict[str, Any] | None = None
        self._last_good_at = 0.0
        self._last_failure_at: float | None = None
        self._fetch_count = 0
        self._state_lock = threading.Lock()
        self._indexed_set: object | None = None
        self._index: dict[str, PyJWK] = {}

    @property
    def fetch_count(self) -> int:
        """Network fetches attempted so far (for tests and metrics)."""
        return self._fetch_count

    def get_signing_key(self, kid: str) -> PyJWK:
        """PyJWT's lookup, with a kid index over the cached set so the common case is one dict read."""
        key = self.cached_key(kid)
        if key is not None:
            return key
        key = super().get_signing_key(kid)
        current = self.jwk_set_cache.get() if self.jwk_set_cache is not None else None
        if current is not None and current is not self._indexed_set:
            self._index = {k.key_id: k for k in self._get_signing_keys_from_jwk_set(current)}
            self._indexed_set = current
        return key

    def cached_key(self, kid: str) -> PyJWK | None:
        """The key for ``kid`` from the current, unexpired cached set; None otherwise. Never fetches."""
        cache = self.jwk_set_cache
        current = cache.get() if cache is not None else None
        if current is None or current is not self._indexed_set:
            return None
        return self._index.get(kid)

    def fetch_data(self) -> Any:
        now = time.monotonic()
        if self._last_failure_at is not None and now - self._last_failure_at < self.retry_after_failure:
            return self._stale_or_raise(now, "the issuer's key set failed to load moments ago")
        with self._state_lock:
            self._fetch_count += 1
        try:
            data = super().fetch_data()
        except (PyJWKClientConnectionError, PyJWKClientError, ValueError) as exc:
            self._last_failure_at = now
            return self._stale_or_raise(now, str(exc))
        self._last_failure_at = None
        self._last_good, self._last_good_at = data, now
        return data

    def _stale_or_raise(self, now: float, why: str) -> Any:
        if self._last_good is not None and now - self._last_good_at <= self.stale_grace:
            return self._last_good
        raise PyJWKClientConnectionError(f"no usable key set: {why}")
