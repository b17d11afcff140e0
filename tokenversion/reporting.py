"""Service reports: how far this process enforces revocations, and every use of a revoked token, sent to the
provider in the background (``POST /tokenversion/reports``; the wire contract is docs/contract.md, "Service
reports").

Framework-free (the standard library only: every front door uses it, with or without Django). One
``Reporter`` per process, owned by the verifier (``Verifier.reporter``):

- **Uses.** A front door that refuses a token as revoked calls ``Verifier.report_refusal`` with what it
  knows of the request; the reporter appends one tuple to a bounded queue (``queue_size``). That is the whole
  cost in the request: O(1), no lock, no I/O, never an exception. A full queue drops the use and counts it.
- **Freshness.** The reporter's thread asks the store every ``SAMPLE_EVERY`` seconds how fresh it is
  (``store.freshness()``: the wall-clock instant before which every committed revocation is enforced, and
  when that became true) and keeps the points that moved forward; at most ``MAX_FRESHNESS_POINTS`` wait for
  a report: beyond that they are thinned (every other older point dropped, the newest always kept), which can
  only make a measured lag longer, never shorter. A report with nothing new repeats the latest point: a
  heartbeat.
- **Sending.** Every ``interval`` seconds one report: the instance (host, pid, start time, store), the
  freshness points, up to ``MAX_USES`` uses (and no more than fits the provider's 64 KiB), and what was
  dropped since the last accepted report. ``202``: the uses sent leave the queue. The provider unreachable or
  answering 5xx: everything stays (points coalesced, uses kept while the queue has room) and the next try
  backs off exponentially up to ``MAX_BACKOFF``; ``429``: the next try waits ``Retry-After``; ``400``/
  ``413``/``415`` (a report the provider will never take): its uses are dropped and counted; ``401``/``403``
  (the key refused): kept, retried with back-off, and logged, so a rotated key delivers them.
- **Processes.** The thread starts on the first request the process decides (``idle``), never at import:
  under gunicorn's ``--preload`` the master never reports; each forked worker starts its own, with an
  empty queue and its own identity. At exit (``atexit``, or ``close`` when the runtime is replaced), one last
  report is sent within ``SHUTDOWN_BOUND`` seconds.

The figures (``stats``) are read by ``tokenversion.metrics`` (``METRICS``); docs/operations.md lists them.
"""

from __future__ import annotations

import atexit
import collections
import email.utils
import http.client
import ipaddress
import itertools
import json
import logging
import math
import os
import random
import re
import socket
import threading
import time
import urllib.error
import urllib.request
import weakref
from collections.abc import Iterable, Mapping, Sequence
from typing import Any
from urllib.parse import urlparse

from .core.errors import ConfigurationError, TokenRevoked
from .core.settings import networks

logger = logging.getLogger("tokenversion")

MAX_USES = 100  # per report (the contract's bound)
MAX_FRESHNESS_POINTS = 64  # per report (the contract's bound)
MAX_BODY_BYTES = 64 * 1024  # the provider refuses larger reports (413)
MAX_USER_AGENT, MAX_PATH, MAX_IDENTIFIER, MAX_METHOD = 256, 512, 255, 16
SAMPLE_EVERY = 0.1  # seconds between looks at the store's freshness: the resolution of a measured lag
MAX_BACKOFF = 30.0  # seconds, the longest wait between tries while the provider fails
MAX_RETRY_AFTER = 300.0  # a longer Retry-After is taken as this
SHUTDOWN_BOUND = 2.0  # seconds the last report may take at exit
STORE_NAMES = {"DatabaseStore": "database", "HttpFeedStore": "feed", "RedisStore": "redis"}

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A redirect would carry the key to wherever it points: refuse it."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        raise urllib.error.HTTPError(req.full_url, code, f"redirect to {newurl} refused", headers, fp)


def check_report_options(url: Any, key: Any, interval: Any = 1.0, queue_size: Any = 1000) -> list[str]:
    """What is wrong with reporting options (for ``Reporter`` and the system checks)."""
    problems = []
    parsed = urlparse(url) if isinstance(url, str) else None
    if parsed is None or parsed.scheme not in ("http", "https") or not parsed.hostname:
        problems.append("REPORT_URL must be the provider's http(s) reports URL, e.g. "
                        "https://provider.example.com/tokenversion/reports")
    if not isinstance(key, str) or not key.strip():
        problems.append("REPORT_KEY (the service key printed by `manage.py create_service_key`) is required "
                        "with REPORT_URL")
    if type(interval) not in (int, float) or not math.isfinite(interval) or interval <= 0:
        problems.append("REPORT_INTERVAL must be a positive number of seconds")
    if type(queue_size) is not int or queue_size < 1:
        problems.append("REPORT_QUEUE_SIZE must be a whole number of at least 1")
    return problems


def store_name(store: Any) -> str:
    """The contract's ``store``: ``database``, ``feed``, ``redis``, or a custom store's class name (lower case)."""
    name = type(store).__name__
    if name in STORE_NAMES:
        return STORE_NAMES[name]
    name = name.lower().lstrip("_.-")[:32]
    return name if _STORE.fullmatch(name) else "custom"


def freshness_of(store: Any) -> tuple[float, float] | None:
    """``(as_of, reached_at)`` in wall-clock seconds from ``store.freshness()``; ``None`` when the store cannot
    vouch for any instant (never synchronised, or a custom store without ``freshness``)."""
    freshness = getattr(store, "freshness", None)
    if freshness is None:
        return None
    point = freshness()
    if point is None:
        return None
    as_of, reached_at = point
    return float(as_of), float(reached_at)


# Client addresses.

def parse_networks(values: Iterable[str] | str) -> tuple[Network, ...]:
    """``TRUSTED_PROXIES``: addresses or CIDR ranges (a list or comma-separated); ``ValueError`` naming a bad
    one. Networks already parsed are taken as they are."""
    return networks(values if isinstance(values, str) else [str(value) for value in values])


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    text = text.strip()
    if text.startswith("["):  # [v6]:port
        text = text[1:].partition("]")[0]
    elif text.count(":") == 1:  # v4:port
        text = text.partition(":")[0]
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _trusted(address: ipaddress.IPv4Address | ipaddress.IPv6Address, trusted: Sequence[Network]) -> bool:
    return any(address in network for network in trusted)


def is_trusted(peer: str, trusted: Sequence[Network]) -> bool:
    """True when ``peer`` (an address, maybe with a port) is one of the trusted proxies."""
    address = _ip(peer)
    return address is not None and _trusted(address, trusted)


def client_address(peer: str | None, forwarded_for: str | None, trusted: Sequence[Network]) -> str | None:
    """The request's client: ``peer`` (the TCP peer), unless it is a trusted proxy; then the right-most
    ``X-Forwarded-For`` entry that is not a trusted proxy (each proxy appends the address it got the request
    from, so entries to the left of the first untrusted one may be the client's own invention). A malformed
    entry stops the walk at the last trusted hop."""
    if not trusted or not peer:
        return peer or None
    address = _ip(peer)
    if address is None or not _trusted(address, trusted) or not forwarded_for:
        return peer
    last = peer
    for hop in reversed(forwarded_for.split(",")):
        address = _ip(hop)
        if address is None:
            return last
        if not _trusted(address, trusted):
            return str(address)
        last = str(address)
    return last


def facts_from_meta(meta: Mapping[str, Any], trusted: Sequence[Network]) -> dict[str, str | None]:
    """Client address and user agent from a WSGI environ (Django's ``request.META``): ``REMOTE_ADDR``, and
    ``X-Forwarded-For`` only when ``REMOTE_ADDR`` is one of ``TRUSTED_PROXIES``."""
    return {"client_address": client_address(meta.get("REMOTE_ADDR"), meta.get("HTTP_X_FORWARDED_FOR"), trusted),
            "user_agent": meta.get("HTTP_USER_AGENT")}


# The reporter.

# The provider refuses a whole report over one bad member (docs/contract.md), and a refused report's uses are
# lost: so every value is cut to its bound and cleaned to the form the provider takes before it is sent.
_UNSENDABLE = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
_METHOD = re.compile(r"[A-Za-z-]{1,16}")
_STORE = re.compile(r"[a-z0-9][a-z0-9_.-]{0,31}")


def _text(value: Any, limit: int) -> str | None:
    """Printable text of at most ``limit`` characters (control characters and lone surrogates replaced)."""
    if value is None:
        return None
    text = value if isinstance(value, str) else json.dumps(value) if not isinstance(value, bytes) else repr(value)
    return _UNSENDABLE.sub("?", text[:limit]) or None


def _address(value: Any) -> str | None:
    """An IP address, or nothing (a test client's "testclient", a Unix socket's empty peer)."""
    address = _ip(value) if isinstance(value, str) else None
    return str(address) if address is not None else None


def _count_value(counter: itertools.count) -> int:
    """How many times ``next`` was called on an ``itertools.count()`` (its repr is ``count(N)``)."""
    return int(repr(counter)[6:-1])


class Reporter:
    """One process's reports to the provider; see the module docstring."""

    def __init__(self, url: str, key: str, *, store: Any = None, service_name: str | None = None,
                 interval: float = 1.0, queue_size: int = 1000, timeout: float | None = None,
                 trusted_proxies: Iterable[str | Network] = ()) -> None:
        problems = check_report_options(url, key, interval, queue_size)
        if problems:
            raise ConfigurationError("; ".join(problems))
        self.url = url
        self.key = key.strip()
        self.store = store
        self.service_name = service_name
        self.interval = float(interval)
        self.queue_size = queue_size
        self.timeout = float(timeout) if timeout is not None else min(5.0, max(1.0, 2 * self.interval))
        self.trusted_proxies = parse_networks(trusted_proxies)
        self._opener = urllib.request.build_opener(_NoRedirects())
        # SERVICE_NAME is informational (the provider takes the name from the key): it names the sender in logs.
        self._user_agent = "tokenversion-reporter" + (f" ({_text(service_name, 64)})" if service_name else "")
        self.stats: dict[str, int] = {}
        self._reset_process_state()
        _live_reporters.add(self)

    def _reset_process_state(self) -> None:
        """Everything that belongs to one process (a forked child starts from nothing: the parent's queued
        uses are the parent's to send)."""
        self.idle = True
        self._closed = False
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._stop = threading.Event()
        self._queue: collections.deque[tuple] = collections.deque()
        self._full_drops = itertools.count()  # counted in request threads: next() is atomic under the GIL
        self._points: list[tuple[float, float]] = []
        self._last_point: tuple[float, float] | None = None
        self._dropped_reported = {"uses": 0, "freshness": 0}
        self._started_at = 0.0
        self._pid = os.getpid()
        self._not_before = 0.0
        self._failures = 0
        self._last_error_log = -math.inf
        self.stats.clear()
        self.stats.update(reports_sent=0, reports_failed=0, uses_sent=0, uses_refused=0, freshness_dropped=0,
                          rate_limited=0)

    # The request side.

    def revoked_use(self, error: TokenRevoked, *, client_address: str | None, user_agent: str | None,
                    method: str | None, path: str | None) -> None:
        """Queue one use of a revoked token (O(1), never blocks, never raises); dropped and counted when the
        queue is full."""
        if self.idle:
            self.start()
        queue = self._queue
        if len(queue) >= self.queue_size:
            next(self._full_drops)
            return
        queue.append((time.time(), error.claims or {}, error.hit, client_address, user_agent, method, path))

    @property
    def uses_dropped(self) -> int:
        """Uses lost so far in this process: the queue was full, or the provider refused the report."""
        return _count_value(self._full_drops) + self.stats["uses_refused"]

    @property
    def queue_length(self) -> int:
        return len(self._queue)

    # The thread.

    def start(self) -> None:
        """Start the thread in this process (once; again in a forked child, never after ``close``). Never
        raises: it runs inside requests (a thread that cannot start, at interpreter shutdown, is logged)."""
        with self._start_lock:
            if self._thread is not None or self._closed:
                self.idle = False
                return
            self._started_at = time.time()
            self._pid = os.getpid()
            self._stop.clear()
            thread = threading.Thread(target=self._run_safely, name="tokenversion-reporter", daemon=True)
            try:
                thread.start()
            except RuntimeError as exc:
                logger.warning("tokenversion reports: the reporter thread cannot start: %s", exc)
                self._closed = True
            else:
                self._thread = thread
                _register_exit_flush()
            self.idle = False

    def close(self, bound: float = SHUTDOWN_BOUND) -> None:
        """Stop the thread after one last report (within ``bound`` seconds). Calling it twice is harmless."""
        thread = self._thread
        self._closed = True  # no restart by a late request: the runtime is replaced, or the process exits
        self.idle = False
        self._final_bound = bound
        self._stop.set()
        if thread is not None and thread is not threading.current_thread():
            thread.join(bound + 0.5)
        self._thread = None

    def _run_safely(self) -> None:
        try:
            self._run()
        except Exception:  # never let the thread die silently; the process goes on serving
            logger.exception("tokenversion reporter stopped")

    def _run(self) -> None:
        next_report = time.monotonic() + self.interval
        while not self._stop.is_set():
            self._sample()
            now = time.monotonic()
            if now >= next_report:
                next_report = now + self._send_and_schedule()
            self._stop.wait(max(0.0, min(SAMPLE_EVERY, next_report - time.monotonic())))
        # The last report: what is queued, and where freshness stands, within the bound.
        self._sample()
        if (self._queue or self._points) and time.monotonic() >= self._not_before:
            self._send(timeout=min(self.timeout, getattr(self, "_final_bound", SHUTDOWN_BOUND)))

    def _send_and_schedule(self) -> float:
        """One report; the seconds until the next try."""
        outcome = self._send(self.timeout)
        if outcome == "sent":
            self._failures = 0
            return self.interval
        self._failures += 1
        delay = min(MAX_BACKOFF, self.interval * 2 ** min(self._failures, 16)) * random.uniform(0.8, 1.0)  # noqa: S311 (jitter)
        return max(delay, self._not_before - time.monotonic())

    def _sample(self) -> None:
        try:
            point = freshness_of(self.store)
        except Exception:
            logger.debug("reporter: the store's freshness could not be read", exc_info=True)
            return
        if point is None:
            return
        last = self._points[-1] if self._points else self._last_point
        if last is not None and point[0] <= last[0]:
            return
        as_of, reached_at = point
        if last is not None:  # a wall-clock step back must not break the order the provider requires
            reached_at = max(reached_at, last[1])
        self._points.append((min(as_of, reached_at), reached_at))
        if len(self._points) > MAX_FRESHNESS_POINTS:
            self._thin()

    def _thin(self) -> None:
        """Halve the older points (keeping the oldest and the newest): a point dropped only lets a later one
        vouch for its revocations, so a lag can come out longer, never shorter."""
        points = self._points
        kept = [*points[:-1:2], points[-1]]
        self.stats["freshness_dropped"] += len(points) - len(kept)
        self._points = kept

    def _body(self) -> tuple[bytes, int, int]:
        """The report's JSON, how many uses it carries, and the full-queue drops it accounts for."""
        points = self._points or ([self._last_point] if self._last_point is not None else [])
        full_drops = _count_value(self._full_drops)
        dropped_uses = full_drops + self.stats["uses_refused"] - self._dropped_reported["uses"]
        dropped_points = self.stats["freshness_dropped"] - self._dropped_reported["freshness"]
        head = {
            "instance": {"host": socket.gethostname()[:255] or "unknown", "pid": self._pid,
                         "started_at": self._started_at, "store": store_name(self.store)},
            "freshness": [{"as_of": as_of, "reached_at": reached_at} for as_of, reached_at in points],
            "dropped": {"uses": dropped_uses, "freshness": dropped_points},
        }
        budget = MAX_BODY_BYTES - len(json.dumps(head)) - 64
        uses: list[str] = []
        queue = self._queue
        for index in range(min(MAX_USES, len(queue))):
            encoded = json.dumps(self._use(queue[index]), separators=(",", ":"))
            budget -= len(encoded) + 1
            if budget < 0:
                break
            uses.append(encoded)
        text = json.dumps(head, separators=(",", ":"))
        body = text[:-1] + ',"uses":[' + ",".join(uses) + "]}"
        return body.encode("utf-8"), len(uses), dropped_uses

    @staticmethod
    def _use(entry: tuple) -> dict[str, Any]:
        at, claims, hit, address, agent, method, path = entry
        version = claims.get("token_version")
        return {"at": at, "iss": _text(claims.get("iss"), MAX_IDENTIFIER),
                "sub": _text(claims.get("sub"), MAX_IDENTIFIER), "sid": _text(claims.get("sid"), MAX_IDENTIFIER),
                "jti": _text(claims.get("jti"), MAX_IDENTIFIER),
                "token_version": version if type(version) is int else None, "hit": hit,
                "client_address": _address(address), "user_agent": _text(agent, MAX_USER_AGENT),
                "method": method if isinstance(method, str) and _METHOD.fullmatch(method) else None,
                "path": _text(path, MAX_PATH)}

    def _send(self, timeout: float) -> str:
        """POST one report: ``sent``, ``retry`` (kept for the next try) or ``refused`` (its uses and points
        dropped, counted, and said in the next report's ``dropped``)."""
        body, n_uses, dropped_uses = self._body()
        dropped_points = self.stats["freshness_dropped"]
        points = self._points
        request = urllib.request.Request(self.url, data=body, method="POST", headers={  # noqa: S310 (http(s) checked)
            "Authorization": f"Bearer {self.key}", "Content-Type": "application/json",
            "Accept": "application/json", "User-Agent": self._user_agent})
        status, retry_after = 0, None
        try:
            with self._opener.open(request, timeout=timeout) as response:
                status = response.status
                response.read(4096)
        except urllib.error.HTTPError as exc:
            status, retry_after = exc.code, exc.headers.get("Retry-After") if exc.headers else None
            exc.close()
        except (OSError, http.client.HTTPException, ValueError) as exc:
            self._failed(f"provider unreachable: {type(exc).__name__}: {exc}")
            return "retry"
        if 200 <= status < 300:
            for _ in range(n_uses):
                self._queue.popleft()
            if points:
                self._last_point = points[-1]
            self._points = self._points[len(points):]
            self._dropped_reported = {"uses": self._dropped_reported["uses"] + dropped_uses,
                                      "freshness": dropped_points}
            self.stats["reports_sent"] += 1
            self.stats["uses_sent"] += n_uses
            return "sent"
        if status == 429:
            self.stats["rate_limited"] += 1
            self._not_before = time.monotonic() + _retry_after(retry_after, self.interval)
            self._failed("provider answered 429 (rate limited)")
            return "retry"
        if status in (400, 413, 415):
            # This report will never be taken: its uses go (counted), or they would block every later one.
            for _ in range(n_uses):
                self._queue.popleft()
            self.stats["uses_refused"] += n_uses
            self.stats["freshness_dropped"] += len(self._points)  # the points go too: they may be what it refused
            self._points, self._last_point = [], None
            self._failed(f"provider refused the report ({status}); {n_uses} uses dropped", level=logging.ERROR)
            return "refused"
        level = logging.ERROR if status in (401, 403) else logging.WARNING
        self._failed(f"provider answered {status}" + (" (REPORT_KEY refused)" if status in (401, 403) else ""),
                     level=level)
        return "retry"

    def _failed(self, message: str, level: int = logging.WARNING) -> None:
        self.stats["reports_failed"] += 1
        now = time.monotonic()
        if now - self._last_error_log >= 60.0:  # an outage must not flood the logs
            self._last_error_log = now
            logger.log(level, "tokenversion reports: %s (%d uses queued)", message, len(self._queue))


def _retry_after(value: str | None, default: float) -> float:
    """Seconds to wait from a ``Retry-After`` (delta-seconds or HTTP-date), bounded."""
    if value:
        value = value.strip()
        try:
            seconds = float(value)
        except ValueError:
            try:
                seconds = email.utils.parsedate_to_datetime(value).timestamp() - time.time()
            except (TypeError, ValueError, IndexError, OverflowError):
                seconds = default
        if math.isfinite(seconds):
            return min(max(seconds, 0.0), MAX_RETRY_AFTER)
    return default


_live_reporters: weakref.WeakSet[Reporter] = weakref.WeakSet()
_exit_registered = False


def _register_exit_flush() -> None:
    global _exit_registered
    if not _exit_registered:
        _exit_registered = True
        atexit.register(flush_at_exit)


def flush_at_exit() -> None:
    """At interpreter exit: each running reporter sends its last report, all within ``SHUTDOWN_BOUND``."""
    deadline = time.monotonic() + SHUTDOWN_BOUND
    for reporter in list(_live_reporters):
        if reporter._thread is not None:
            reporter.close(max(0.1, deadline - time.monotonic()))


def _after_fork_in_child() -> None:
    for reporter in list(_live_reporters):
        reporter._reset_process_state()


os.register_at_fork(after_in_child=_after_fork_in_child)


# The front doors' side: gather a refused request's facts only when a reporter wants them.

def report_wsgi_refusal(verifier: Any, error: BaseException, meta: Mapping[str, Any], method: str | None,
                        path: str | None) -> None:
    """For the Django doors: a revoked token's refusal, with ``REMOTE_ADDR`` (or, from a trusted proxy,
    ``X-Forwarded-For``) and ``User-Agent``. Nothing happens unless a reporter wants it."""
    if verifier.wants_report(error):
        try:
            facts = facts_from_meta(meta, verifier.reporter.trusted_proxies)
        except Exception:  # an odd request must not turn its refusal into an error
            logger.debug("reporting: the request's facts could not be read", exc_info=True)
            facts = {}
        verifier.report_refusal(error, method=method, path=path, **facts)


def report_asgi_refusal(verifier: Any, error: BaseException, connection: Any) -> None:
    """For FastAPI and Starlette: ``request.client`` (which uvicorn's ``--proxy-headers`` sets from
    ``X-Forwarded-For`` for the proxies of ``--forwarded-allow-ips``) and ``User-Agent``."""
    if verifier.wants_report(error):
        try:
            client = connection.client
            facts = {"client_address": client.host if client else None,
                     "user_agent": connection.headers.get("user-agent"),
                     "method": connection.scope.get("method"), "path": connection.url.path}
        except Exception:  # an odd request must not turn its refusal into an error
            logger.debug("reporting: the request's facts could not be read", exc_info=True)
            facts = {}
        verifier.report_refusal(error, **facts)
