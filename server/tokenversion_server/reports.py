"""``POST /tokenversion/reports``: services report how far they enforce revocations, and the revoked tokens they
refused (issue 14; the wire contract is docs/contract.md, "Service reports").

The order of the checks is the cost of each: method (405), the service key (401), the service's rate limit
(429), content type (415), size (413), JSON and every field (400), the instance's rate limit (429); only then
is anything written, and the whole report is one transaction. Nothing here answers 500: a database outage is
a 503 with ``Retry-After`` (``http.machine_endpoint``).

Rate limits are **database-backed** fixed one-minute windows: a counter on the ``ServiceCredential`` row (every
report of that key, all processes) and one on the ``ServiceInstance`` row, each updated under a row lock, so
they hold across gunicorn workers and provider hosts without a shared cache. The service's counter is
committed before the body is read (a flood of malformed reports is limited too); the instance's counter is in
the report's transaction.

Unknown members are ignored (a newer service may report to an older provider); every known member is typed
and bounded, and one bad member refuses the whole report.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import logging
import math
import re
import time
from dataclasses import dataclass
from typing import Any

from django.db import DatabaseError, IntegrityError, transaction
from django.db.models import Q
from django.http import HttpRequest, HttpResponse
from django.utils import timezone

from . import escalation, metrics, security
from .conf import get_server_settings
from .http import HttpError, json_response, loads_strict, machine_endpoint, read_body
from .models import FreshnessPoint, RevocationEvent, RevokedTokenUse, ServiceCredential, ServiceInstance

logger = logging.getLogger("tokenversion.server")

MAX_REPORT_BYTES = 64 * 1024
MAX_POINTS = 64
MAX_USES = 100
EARLIEST = 946684800.0  # 2000-01-01: an instant before it is a bug, not a report
FUTURE_SLACK = 86400.0  # an instant further ahead of the provider's clock is refused
HIT_SLACK = dt.timedelta(seconds=2)  # a use's time is the service's clock: the revocation may look a bit later
LAG_SAMPLE = 1000  # enforcement lags observed per freshness point at most (the histogram, not the answer)
STORE_NAME = re.compile(r"[a-z0-9][a-z0-9_.-]{0,31}")
METHOD = re.compile(r"[A-Za-z-]{1,16}")
_CONTROL_OR_SURROGATE = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
Hit = RevokedTokenUse.Hit
Scope = RevocationEvent.Scope


def _refuse(detail: str) -> HttpError:
    return HttpError(400, "invalid_request", detail)


# --- validation -----------------------------------------------------------------------------------------


def _object(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _refuse(f"{where} must be a JSON object")
    return value


def _list(value: Any, where: str, most: int) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list) or len(value) > most:
        raise _refuse(f"{where} must be a list of at most {most} entries")
    return value


def _instant(data: dict[str, Any], key: str, where: str, now: float) -> float:
    value = data.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _refuse(f"{where}.{key} must be a number (unix seconds)")
    try:
        number = float(value)
    except OverflowError:
        raise _refuse(f"{where}.{key} is out of range") from None
    if not math.isfinite(number) or not EARLIEST <= number <= now + FUTURE_SLACK:
        raise _refuse(f"{where}.{key} must be unix seconds between 2000 and a day from now")
    return number


def _count(data: dict[str, Any], key: str, where: str, low: int, high: int, required: bool = True) -> int | None:
    value = data.get(key)
    if value is None and not required:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise _refuse(f"{where}.{key} must be a whole number from {low} to {high}")
    return value


def _text(data: dict[str, Any], key: str, where: str, most: int, *, required: bool = False,
          pattern: re.Pattern[str] | None = None) -> str:
    value = data.get(key)
    if value is None or value == "":
        if required:
            raise _refuse(f"{where}.{key} is required")
        return ""
    if (not isinstance(value, str) or len(value) > most or _CONTROL_OR_SURROGATE.search(value)
            or (pattern is not None and not pattern.fullmatch(value))):
        raise _refuse(f"{where}.{key} must be a string of at most {most} characters"
                      + (" in the documented form" if pattern else ", without control characters"))
    return value


def _address(data: dict[str, Any], key: str, where: str) -> str:
    text = _text(data, key, where, 45)
    if text:
        try:
            text = str(ipaddress.ip_address(text))
        except ValueError:
            raise _refuse(f"{where}.{key} must be an IP address") from None
    return text


def _utc(seconds: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(seconds, tz=dt.UTC)


@dataclass(frozen=True)
class Report:
    host: str
    pid: int
    started_at: dt.datetime
    store: str
    points: list[tuple[dt.datetime, dt.datetime]]  # (as_of, reached_at), reached_at ascending
    uses: list[dict[str, Any]]
    dropped_uses: int
    dropped_freshness: int


def parse_report(data: dict[str, Any], now: float) -> Report:
    """The report, every field checked; ``invalid_request`` naming the first bad member otherwise."""
    instance = _object(data.get("instance"), "instance")
    host = _text(instance, "host", "instance", 255, required=True)
    pid = _count(instance, "pid", "instance", 1, 2**31 - 1)
    started_at = _instant(instance, "started_at", "instance", now)
    store = _text(instance, "store", "instance", 32, required=True, pattern=STORE_NAME)

    points: list[tuple[dt.datetime, dt.datetime]] = []
    previous = -math.inf
    for n, raw in enumerate(_list(data.get("freshness"), "freshness", MAX_POINTS)):
        where = f"freshness[{n}]"
        point = _object(raw, where)
        as_of, reached_at = _instant(point, "as_of", where, now), _instant(point, "reached_at", where, now)
        if as_of > reached_at + 0.001:
            raise _refuse(f"{where}: as_of is after reached_at (nothing is enforced before it is reached)")
        if reached_at < previous:
            raise _refuse(f"{where}: freshness points must be in ascending reached_at order")
        previous = reached_at
        points.append((_utc(as_of), _utc(reached_at)))

    uses = []
    for n, raw in enumerate(_list(data.get("uses"), "uses", MAX_USES)):
        where = f"uses[{n}]"
        use = _object(raw, where)
        hit = _text(use, "hit", where, 16, required=True)
        if hit not in Hit.values:
            raise _refuse(f"{where}.hit must be one of {', '.join(Hit.values)}")
        uses.append({
            "at": _utc(_instant(use, "at", where, now)),
            "issuer": _text(use, "iss", where, 255, required=True),
            "subject": _text(use, "sub", where, 255),
            "session_id": _text(use, "sid", where, 255),
            "jti": _text(use, "jti", where, 255),
            "token_version": _count(use, "token_version", where, 0, 2**63 - 1, required=False),
            "hit": hit,
            "client_address": _address(use, "client_address", where),
            "user_agent": _text(use, "user_agent", where, 256),
            "method": _text(use, "method", where, 16, pattern=METHOD).upper(),
            "path": _text(use, "path", where, 512),
        })

    dropped = _object(data.get("dropped") or {}, "dropped")
    return Report(
        host=host, pid=pid, started_at=_utc(started_at), store=store, points=points, uses=uses,
        dropped_uses=_count(dropped, "uses", "dropped", 0, 10**12, required=False) or 0,
        dropped_freshness=_count(dropped, "freshness", "dropped", 0, 10**12, required=False) or 0,
    )


# --- authentication and rate limits ---------------------------------------------------------------------


def _credential(request: HttpRequest) -> ServiceCredential:
    header = request.META.get("HTTP_AUTHORIZATION", "")
    scheme, _, key = header.partition(" ")
    credential = None
    if scheme.lower() == "bearer" and key:
        credential = ServiceCredential.objects.authenticate(key.strip())
    if credential is None:
        raise HttpError(401, "invalid_key", "missing, unknown or revoked service key (Authorization: Bearer tvs_...)",
                        {"WWW-Authenticate": 'Bearer realm="tokenversion-reports"'})
    return credential


def _too_many(window: int, what: str) -> HttpError:
    retry = max(1, math.ceil((window + 1) * 60 - time.time()))
    return HttpError(429, "rate_limited", f"too many reports from this {what}; retry later",
                     {"Retry-After": str(retry)})


def _count_service_report(credential: ServiceCredential, limit: int) -> None:
    """One more report in the key's window, committed now, whatever becomes of the report (see module doc)."""
    window = int(time.time() // 60)
    now = timezone.now()
    with transaction.atomic():
        row = (ServiceCredential.objects.select_for_update()
               .only("rate_window", "rate_count", "last_used_at").get(pk=credential.pk))
        if row.rate_window != window:
            row.rate_window, row.rate_count = window, 0
        row.rate_count += 1
        fields = ["rate_window", "rate_count"]
        if row.last_used_at is None or now - row.last_used_at > dt.timedelta(minutes=1):
            row.last_used_at = now
            fields.append("last_used_at")
        row.save(update_fields=fields)
    if row.rate_count > limit:
        raise _too_many(window, "service key")


# --- ingest -----------------------------------------------------------------------------------------------


def likely_revocation(issuer: str, subject: str, session_id: str, hit: str,
                      at: dt.datetime) -> RevocationEvent | None:
    """The revocation event the use most likely hit: the latest one, up to ``at`` (plus ``HIT_SLACK`` of
    clock skew), of the scope the service named (all three for ``unknown``) for that subject, session or realm."""
    match = Q()
    if hit in (Hit.VERSION, Hit.LOGOUT_TIME, Hit.UNKNOWN) and subject:
        match |= Q(scope=Scope.USER, subject=subject)
    if hit in (Hit.SESSION, Hit.UNKNOWN) and session_id:
        match |= Q(scope=Scope.SESSION, session_id=session_id)
    if hit in (Hit.REALM, Hit.UNKNOWN):
        match |= Q(scope=Scope.REALM)
    if not match:
        return None
    return (RevocationEvent.objects.filter(match, issuer=issuer, created_at__lte=at + HIT_SLACK)
            .order_by("-created_at", "-id").first())


@dataclass
class Ingested:
    points_stored: int
    lags: list[float]  # seconds, for the histogram
    uses: list[RevokedTokenUse]
    instance: ServiceInstance


def ingest(service: str, report: Report, client_address: str, per_instance: int) -> Ingested:
    """Write one report in one transaction: the instance, the freshness points that decide an enforcement, the
    uses. Raises ``HttpError`` 429 (rolled back) when the instance is over its rate limit."""
    received = timezone.now()
    window = int(time.time() // 60)
    with transaction.atomic():
        instance = _locked_instance(service, report, received)
        if instance.rate_window != window:
            instance.rate_window, instance.rate_count = window, 0
        instance.rate_count += 1
        if instance.rate_count > per_instance:
            raise _too_many(window, "service process")

        stored, lags = _freshness(instance, report.points, received)
        instance.store = report.store
        instance.last_report_at = received
        instance.client_address = client_address
        instance.reports += 1
        instance.dropped_uses += report.dropped_uses
        instance.dropped_freshness += report.dropped_freshness
        instance.save()

        rows = [RevokedTokenUse(service=service, instance=instance, received_at=received,
                                revocation=likely_revocation(u["issuer"], u["subject"], u["session_id"], u["hit"],
                                                             u["at"]), **u)
                for u in report.uses]
        if rows:
            rows = RevokedTokenUse.objects.bulk_create(rows)
        if instance.reports % 100 == 1:  # now and then: this instance's points past the retention
            cutoff = received - dt.timedelta(seconds=get_server_settings().enforcement_retention)
            FreshnessPoint.objects.filter(instance=instance, reached_at__lt=cutoff).delete()
    return Ingested(stored, lags, rows, instance)


def _locked_instance(service: str, report: Report, received: dt.datetime) -> ServiceInstance:
    """The reporting process's row, locked for this transaction; made on its first report."""
    identity = {"service": service, "host": report.host, "pid": report.pid, "started_at": report.started_at}
    instance = ServiceInstance.objects.select_for_update().filter(**identity).first()
    if instance is not None:
        return instance
    try:
        with transaction.atomic():  # a savepoint: two first reports of one process may race
            return ServiceInstance.objects.create(**identity, store=report.store, first_report_at=received,
                                                  last_report_at=received)
    except IntegrityError:
        return ServiceInstance.objects.select_for_update().get(**identity)


def _freshness(instance: ServiceInstance, points: list[tuple[dt.datetime, dt.datetime]],
               received: dt.datetime) -> tuple[int, list[float]]:
    """Move the instance's ``last_as_of``; keep a point only when it enforces some event for the first time.

    ``as_of`` is capped at the report's arrival: no process enforces what was committed after it reported
    (a service clock running ahead cannot claim the future)."""
    previous = instance.last_as_of
    stored: list[FreshnessPoint] = []
    lags: list[float] = []
    for as_of, reached_at in points:
        as_of = min(as_of, received)
        instance.last_reached_at = reached_at
        if previous is not None and as_of <= previous:
            continue  # a heartbeat: nothing newly enforced
        newly = RevocationEvent.objects.filter(created_at__lte=as_of)
        if previous is not None:
            newly = newly.filter(created_at__gt=previous)
        if newly.exists():
            stored.append(FreshnessPoint(instance=instance, as_of=as_of, reached_at=reached_at))
            # The lag is measured for events the process was running for; a later process enforces older
            # events from its start.
            for created_at in (newly.filter(created_at__gte=instance.started_at).order_by("created_at")
                               .values_list("created_at", flat=True)[:LAG_SAMPLE]):
                lags.append(max(0.0, (reached_at - created_at).total_seconds()))
        previous = as_of
    instance.last_as_of = previous
    if stored:
        FreshnessPoint.objects.bulk_create(stored)
    return len(stored), lags


def _client_address(request: HttpRequest) -> str:
    address = request.META.get("REMOTE_ADDR", "") or ""
    return address[:45]


@machine_endpoint
def reports_view(request: HttpRequest) -> HttpResponse:
    """``POST /tokenversion/reports`` (see the module docstring and docs/contract.md)."""
    conf = get_server_settings()
    try:
        credential = _credential(request)
        _count_service_report(credential, conf.reports_per_minute_per_service)
        body = read_body(request, "application/json", MAX_REPORT_BYTES)
        try:
            data = loads_strict(body.decode("utf-8"))
        except UnicodeDecodeError:
            raise _refuse("body is not UTF-8") from None
        except (ValueError, RecursionError):
            raise _refuse("body is not valid JSON (or repeats a key, or has NaN or Infinity)") from None
        report = parse_report(_object(data, "body"), time.time())
        done = ingest(credential.name, report, _client_address(request), conf.reports_per_minute_per_instance)
    except DatabaseError:
        metrics.REPORTS.labels("503").inc()
        raise  # machine_endpoint: 503 with Retry-After
    except HttpError as exc:
        metrics.REPORTS.labels(str(exc.status)).inc()
        # The contract's error body: error and error_description (detail too, as the other endpoints have).
        return json_response({"error": exc.code, "error_description": exc.detail, "detail": exc.detail},
                             exc.status, exc.headers)
    metrics.REPORTS.labels("202").inc()
    service = credential.name
    uses = done.uses

    def after_commit() -> None:
        for lag in done.lags:
            metrics.ENFORCEMENT_LAG.observe(lag)
        if report.dropped_uses or report.dropped_freshness:
            metrics.SERVICE_DROPPED.labels(service, "uses").inc(report.dropped_uses)
            metrics.SERVICE_DROPPED.labels(service, "freshness").inc(report.dropped_freshness)
        for use in uses:
            metrics.REVOKED_TOKEN_USES.labels(service, use.hit).inc()
        security.emit(uses, done.instance)
        escalation.submit(uses)

    transaction.on_commit(after_commit)
    return json_response({"accepted": {"freshness": len(report.points), "uses": len(uses)}}, 202)
