"""An optional policy that turns a suspicious revoked-token use into a compromise revocation (issue 14 item 2).

Off unless ``TOKENVERSION_SERVER["ESCALATION_POLICY"] = "logout_replay"``. Then a recorded use escalates when

1. the revocation it hit was a **logout** (reason ``logout``, user or session scope) of a user (a subject);
2. it came more than ``ESCALATION_GRACE`` seconds (30) after that logout: the logged-out client's own stale
   calls (a tab still polling) land right after the logout, a replay of a stolen token later;
3. its client address is one **the session never had**: not the address of any use of the same user's revoked
   tokens within the grace (those are the logged-out client's), and not the address of any of the user's live
   Keycloak sessions (read with the Keycloak admin credentials, when configured: the user on another device).
   A use without a client address never escalates.

Escalating ends the user's Keycloak sessions (``keycloak_admin.end_user_sessions``; refresh tokens die), then
bumps the user with reason ``compromise`` (every access token dies), as the admin's "account compromised"
action does, sessions first. The audit row's actor is ``policy: revoked-token use <id>`` and its note names
the use (service, address, user agent, request), the logout it followed, and what became of the Keycloak
sessions. One escalation per logout event: further uses of the same stolen token add no revocation.

It runs off the report's path, in one daemon thread per provider process fed by a bounded queue (full: the
use is not evaluated and ``tokenversion_escalations_total{outcome="dropped"}`` counts it).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import threading
from collections.abc import Iterable

from django.db import IntegrityError, close_old_connections, transaction

from . import keycloak_admin, metrics, services
from .background import BatchQueue
from .conf import get_server_settings
from .models import RevocationEvent, RevokedTokenUse, SeenIdentifier

logger = logging.getLogger("tokenversion.server")
security_log = logging.getLogger("tokenversion.security")

POLICY_LOGOUT_REPLAY = "logout_replay"
POLICIES = (POLICY_LOGOUT_REPLAY,)
KIND_ESCALATED = "escalated"  # SeenIdentifier: one escalation per logout event
QUEUE_SIZE = 1000


def policy() -> str | None:
    name = get_server_settings().escalation_policy
    return name if name in POLICIES else None


def _known_addresses(use: RevokedTokenUse, logout: RevocationEvent, grace: dt.timedelta) -> tuple[set[str], str]:
    """Addresses the user's session had: those of uses within the grace, and of their live Keycloak sessions
    (and a note on whether Keycloak could be asked)."""
    known = set(RevokedTokenUse.objects.filter(
        issuer=use.issuer, subject=use.subject, at__gte=logout.created_at, at__lte=logout.created_at + grace,
    ).exclude(client_address="").values_list("client_address", flat=True))
    try:
        sessions = keycloak_admin.user_sessions(use.subject)
    except keycloak_admin.KeycloakUnavailable as exc:
        return known, f"live Keycloak sessions not consulted: {exc}"
    known |= {s.ip_address for s in sessions if s.ip_address}
    return known, f"{len(sessions)} live Keycloak session(s) consulted"


def evaluate(use: RevokedTokenUse) -> str:
    """Apply the policy to one recorded use; returns the outcome (``escalated``, ``ignored``, ``duplicate``)."""
    logout = use.revocation
    if (logout is None or logout.reason != RevocationEvent.Reason.LOGOUT or not use.subject
            or logout.scope not in (RevocationEvent.Scope.USER, RevocationEvent.Scope.SESSION)
            or not use.client_address):
        return "ignored"
    grace = dt.timedelta(seconds=get_server_settings().escalation_grace)
    if use.at <= logout.created_at + grace:
        return "ignored"
    known, consulted = _known_addresses(use, logout, grace)
    if use.client_address in known:
        return "ignored"
    try:
        with transaction.atomic():
            SeenIdentifier.objects.create(kind=KIND_ESCALATED, issuer=logout.issuer, value=str(logout.pk),
                                          expires_at=use.received_at + dt.timedelta(days=3650))
    except IntegrityError:
        return "duplicate"
    try:
        ended = f"{keycloak_admin.end_user_sessions(use.subject)} Keycloak session(s) ended"
    except keycloak_admin.KeycloakUnavailable as exc:
        ended = f"Keycloak sessions not ended: {exc}"
    note = (f"escalation policy {POLICY_LOGOUT_REPLAY}: revoked-token use {use.pk} at {use.at.isoformat()} on "
            f"{use.service} from {use.client_address} ({use.user_agent or 'no user agent'}; "
            f"{use.method} {use.path}) {int((use.at - logout.created_at).total_seconds())} s after logout "
            f"{logout.pk}, from an address the session never had ({consulted}); {ended}")
    try:
        rev = services.revoke_user(use.subject, reason=RevocationEvent.Reason.COMPROMISE, issuer=use.issuer,
                                   actor=services.Actor.system(f"policy: revoked-token use {use.pk}"), note=note)
    except Exception:
        # Not escalated after all: the next use of the token may try again.
        SeenIdentifier.objects.filter(kind=KIND_ESCALATED, issuer=logout.issuer, value=str(logout.pk)).delete()
        raise
    security_log.warning(json.dumps({"type": "escalation", "use": use.pk, "revocation": rev.audit_id,
                                     "subject": use.subject, "note": note}, separators=(",", ":")))
    return "escalated"


def evaluate_ids(ids: Iterable[int]) -> list[str]:
    outcomes = []
    for use in RevokedTokenUse.objects.filter(pk__in=list(ids)).select_related("revocation").order_by("id"):
        try:
            outcome = evaluate(use)
        except Exception:
            logger.exception("escalation: evaluating revoked-token use %s failed", use.pk)
            outcome = "failed"
        metrics.ESCALATIONS.labels(outcome).inc()
        outcomes.append(outcome)
    return outcomes


def _evaluate_batch(ids: list[int]) -> None:
    close_old_connections()
    try:
        evaluate_ids(ids)
    finally:
        close_old_connections()


class Escalator(BatchQueue[int]):
    """The bounded queue of use ids and its thread (one per process, made on first use, fork-safe)."""

    def __init__(self) -> None:
        super().__init__("tokenversion-escalation", QUEUE_SIZE, _evaluate_batch,
                         lambda n: metrics.ESCALATIONS.labels("dropped").inc(n))


_escalator: Escalator | None = None
_lock = threading.Lock()


def submit(uses: Iterable[RevokedTokenUse]) -> None:
    """Queue recorded uses for the policy (after the report's commit); a no-op when the policy is off."""
    if policy() is None:
        return
    global _escalator
    with _lock:
        if _escalator is None or _escalator.pid != os.getpid():
            _escalator = Escalator()
        escalator = _escalator
    escalator.put(use.pk for use in uses)
