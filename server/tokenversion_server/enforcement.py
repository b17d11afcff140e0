"""Which service processes enforce a revocation event, and how fast (issue 14; docs/operations.md, "Enforcement").

For an event made at ``t`` (``RevocationEvent.created_at``):

- the processes considered are those that reported within ``SERVICE_FORGET_AFTER`` (a process that stopped
  reporting before the event may still be serving requests with what it knew then: it is listed, silent);
- a process **enforces** it when its latest ``as_of`` is at or after ``t``; it is **live** when it reported
  within ``SERVICE_LIVE_WINDOW``; live and not enforcing is **behind**; not live is **silent**;
- its **lag** is the first freshness point with ``as_of >= t``: ``reached_at - t``. The points that decide a
  lag are the only ones stored (``reports._freshness``), so one query answers for every process. A process
  started after ``t`` enforced the event from its start: it counts, without a lag. Past
  ``ENFORCEMENT_RETENTION`` the points are gone and no lag is given.

"Enforced by N of M live service processes, the slowest after X ms": N and M count live processes only.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from django.db.models import Max, Min
from django.utils import timezone

from .conf import get_server_settings
from .models import FreshnessPoint, RevocationEvent, ServiceInstance


@dataclass(frozen=True)
class InstanceEnforcement:
    instance: ServiceInstance
    live: bool
    enforced: bool
    enforced_at: dt.datetime | None  # the service's clock
    lag_ms: float | None  # None: not enforced, started after the event, or beyond the retention

    @property
    def state(self) -> str:
        if not self.live:
            return "silent"
        return "enforcing" if self.enforced else "behind"

    def as_dict(self) -> dict:
        i = self.instance
        return {"service": i.service, "host": i.host, "pid": i.pid, "started_at": i.started_at.isoformat(),
                "store": i.store, "state": self.state, "enforced": self.enforced,
                "enforced_at": self.enforced_at.isoformat() if self.enforced_at else None,
                "lag_ms": None if self.lag_ms is None else round(self.lag_ms, 1),
                "last_report_at": i.last_report_at.isoformat()}


@dataclass(frozen=True)
class Enforcement:
    event_id: int
    created_at: dt.datetime
    instances: list[InstanceEnforcement] = field(default_factory=list)

    @property
    def live(self) -> list[InstanceEnforcement]:
        return [i for i in self.instances if i.live]

    @property
    def enforcing(self) -> list[InstanceEnforcement]:
        return [i for i in self.instances if i.live and i.enforced]

    @property
    def behind(self) -> list[InstanceEnforcement]:
        return [i for i in self.instances if i.live and not i.enforced]

    @property
    def silent(self) -> list[InstanceEnforcement]:
        return [i for i in self.instances if not i.live]

    @property
    def slowest_ms(self) -> float | None:
        lags = [i.lag_ms for i in self.enforcing if i.lag_ms is not None]
        return max(lags) if lags else None

    def summary(self) -> str:
        m = len(self.live)
        if not m:
            return "no live service process reports"
        noun = "process" if m == 1 else "processes"
        text = f"enforced by {len(self.enforcing)} of {m} live service {noun}"
        if self.slowest_ms is not None:
            text += f", the slowest after {self.slowest_ms:.0f} ms"
        return text

    def as_dict(self) -> dict:
        return {"revocation": self.event_id, "created_at": self.created_at.isoformat(),
                "summary": self.summary(), "live": len(self.live), "enforced": len(self.enforcing),
                "slowest_ms": None if self.slowest_ms is None else round(self.slowest_ms, 1),
                "behind": [i.as_dict() for i in self.behind], "silent": [i.as_dict() for i in self.silent],
                "instances": [i.as_dict() for i in self.instances]}


def enforcement(event: RevocationEvent, now: dt.datetime | None = None) -> Enforcement:
    conf = get_server_settings()
    now = now or timezone.now()
    t = event.created_at
    live_since = now - dt.timedelta(seconds=conf.service_live_window)
    since = now - dt.timedelta(seconds=conf.service_forget_after)
    instances = list(ServiceInstance.objects.filter(last_report_at__gte=since).order_by("service", "host", "pid"))
    first = dict(FreshnessPoint.objects.filter(instance__in=instances, as_of__gte=t)
                 .values("instance").annotate(first=Min("reached_at")).values_list("instance", "first"))
    measured = t >= now - dt.timedelta(seconds=conf.enforcement_retention)
    rows = []
    for instance in instances:
        enforced = instance.last_as_of is not None and instance.last_as_of >= t
        # No stored point (the event committed just after the report that passed it): the latest reach is a
        # bound that can only overstate the lag.
        at = first.get(instance.pk) or (instance.last_reached_at if enforced else None)
        lag = None
        if enforced and at is not None and measured and instance.started_at <= t:
            lag = max(0.0, (at - t).total_seconds() * 1000)
        rows.append(InstanceEnforcement(instance, instance.last_report_at >= live_since, enforced,
                                        at if enforced else None, lag))
    return Enforcement(event.pk, t, rows)


def instance_states(now: dt.datetime | None = None) -> list[tuple[ServiceInstance, str]]:
    """Every process reported within ``SERVICE_FORGET_AFTER`` and its state now (``state_of``)."""
    conf = get_server_settings()
    now = now or timezone.now()
    latest = RevocationEvent.objects.aggregate(at=Max("created_at"))["at"]
    recent = ServiceInstance.objects.filter(
        last_report_at__gte=now - dt.timedelta(seconds=conf.service_forget_after))
    return [(instance, state_of(instance, latest, now)) for instance in recent]


def state_of(instance: ServiceInstance, latest: dt.datetime | None, now: dt.datetime | None = None) -> str:
    """``enforcing`` (live: reported within ``SERVICE_LIVE_WINDOW``, and enforcing the latest revocation event, made at
    ``latest``), ``behind`` (reporting, not yet enforcing it), ``silent`` (stopped reporting) or ``gone`` (silent
    longer than ``SERVICE_FORGET_AFTER``)."""
    conf = get_server_settings()
    now = now or timezone.now()
    if instance.last_report_at < now - dt.timedelta(seconds=conf.service_forget_after):
        return "gone"
    if instance.last_report_at < now - dt.timedelta(seconds=conf.service_live_window):
        return "silent"
    if latest is not None and (instance.last_as_of is None or instance.last_as_of < latest):
        return "behind"
    return "enforcing"


def purge(now: dt.datetime | None = None) -> dict[str, int]:
    """Drop what no enforcement answer needs any more: freshness points older than ``ENFORCEMENT_RETENTION``,
    and processes silent for longer than that (and than ``SERVICE_FORGET_AFTER``) that no revoked-token use
    names (those stay: the security events keep their process)."""
    from .models import RevokedTokenUse

    conf = get_server_settings()
    now = now or timezone.now()
    cutoff = now - dt.timedelta(seconds=conf.enforcement_retention)
    points, _ = FreshnessPoint.objects.filter(reached_at__lt=cutoff).delete()
    gone = now - dt.timedelta(seconds=max(conf.enforcement_retention, conf.service_forget_after))
    named = RevokedTokenUse.objects.filter(instance__isnull=False).values("instance")
    instances = ServiceInstance.objects.filter(last_report_at__lt=gone).exclude(pk__in=named)
    removed = 0
    for instance in instances.iterator():
        FreshnessPoint.objects.filter(instance=instance).delete()
        instance.delete()
        removed += 1
    return {"points": points, "instances": removed}
