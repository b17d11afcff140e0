"""What the admin's revocation pages share: the confirmation page, the Keycloak sessions a revocation will end,
and the people behind subjects.

The server app does not know the provider's user model (``accounts`` is one choice of it), so the app that owns
users registers a ``UserDirectory``; without one, pages show subjects alone.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from django import forms
from django.template.response import TemplateResponse
from django.utils import timezone
from django.utils.dateformat import format as date_format
from django.utils.html import format_html
from django.utils.text import Truncator
from django.utils.translation import ngettext

from tokenversion.conf import get_settings

from . import keycloak_admin

CONFIRM_TEMPLATE = "admin/tokenversion_server/confirm_revocation.html"
NOTE_MAX = 1000
SESSIONS_LISTED_MAX = 50  # a confirmation page lists Keycloak sessions for at most this many users


@dataclass(frozen=True)
class UserRef:
    """A person behind a subject, as the admin links to them."""

    username: str
    email: str = ""
    url: str = ""  # their admin page; empty when the viewer may not see it


class UserDirectory(Protocol):
    def lookup(self, pairs: Iterable[tuple[str, str]]) -> dict[tuple[str, str], UserRef]:
        """``(issuer, subject)`` -> the user, for those known."""

    def search(self, term: str) -> list[str]:
        """Subjects of the users whose username or email contains ``term``."""


_directory: UserDirectory | None = None


def register_user_directory(directory: UserDirectory) -> None:
    global _directory
    _directory = directory


def lookup_users(pairs: Iterable[tuple[str, str]]) -> dict[tuple[str, str], UserRef]:
    pairs = {(i, s) for i, s in pairs if s}
    return _directory.lookup(pairs) if _directory and pairs else {}


def search_subjects(term: str) -> list[str]:
    return _directory.search(term) if _directory and term else []


def subject_cell(subject: str, user: UserRef | None):
    """The username (linked) above the subject, which is cut short on screen but kept whole for copying."""
    if not subject:
        return "—"
    sub = format_html('<span class="tv-subject" title="{}">{}</span>', subject, subject)
    if user is None:
        return sub
    name = user.username or user.email or subject
    if user.url:
        return format_html('<a href="{}" class="tv-user" title="{}">{}</a> {}', user.url, name, name, sub)
    return format_html('<span class="tv-user" title="{}">{}</span> {}', name, name, sub)


def compact_time(value, seconds: bool = False):
    """``2026-11-27 07:51`` in the admin's time zone: narrow enough for lists that fit 1280 px."""
    if value is None:
        return "—"
    local = timezone.localtime(value)
    shown = date_format(local, "Y-m-d H:i:s" if seconds else "Y-m-d H:i")
    return format_html('<time datetime="{}" title="{}">{}</time>', local.isoformat(), date_format(local, "r"), shown)


class UserColumnMixin:
    """A ``user`` column and read-only field on admins of models with ``issuer`` and ``subject``.

    The changelist looks up the page's users in one query (not one per row).
    """

    def get_changelist_instance(self, request):
        cl = super().get_changelist_instance(request)
        rows = list(cl.result_list)
        found = lookup_users((r.issuer, r.subject) for r in rows)
        for row in rows:
            row._tv_user = found.get((row.issuer, row.subject))
        return cl

    def get_search_results(self, request, queryset, search_term):
        """Also find rows by the username or email of their subject: support staff know names, not UUIDs."""
        queryset, may_have_duplicates = super().get_search_results(request, queryset, search_term)
        subjects = search_subjects(search_term.strip())
        if subjects:
            queryset |= self.model._default_manager.filter(subject__in=subjects)
        return queryset, may_have_duplicates

    def get_fields(self, request, obj=None):
        """The ``user`` read-only field right after ``subject`` on the detail page."""
        fields = [f for f in super().get_fields(request, obj) if f != "user"]
        if obj is None:  # an add form: there is no user to show yet
            return fields
        at = fields.index("subject") + 1 if "subject" in fields else len(fields)
        return [*fields[:at], "user", *fields[at:]]

    def user(self, obj):
        if not hasattr(obj, "_tv_user"):
            obj._tv_user = lookup_users([(obj.issuer, obj.subject)]).get((obj.issuer, obj.subject))
        return subject_cell(obj.subject, obj._tv_user)

    user.short_description = "user"
    user.admin_order_field = "subject"


# --- Keycloak sessions ---------------------------------------------------------------------------------------


@dataclass
class SessionsPreview:
    """The Keycloak sessions a revocation will end, per subject, or why none will be."""

    by_subject: dict[str, list[keycloak_admin.UserSession]] = field(default_factory=dict)
    unavailable: str = ""  # non-empty: no Keycloak session will be ended, and this says why

    @property
    def total(self) -> int:
        return sum(len(s) for s in self.by_subject.values())


def preview_sessions(subjects: Sequence[str]) -> SessionsPreview:
    """The sessions of ``subjects``; with none, it only finds out whether Keycloak's admin API answers."""
    try:
        admin = keycloak_admin.admin_client()
        return SessionsPreview({s: keycloak_admin.user_sessions(s, admin) for s in subjects})
    except keycloak_admin.KeycloakUnavailable as exc:
        return SessionsPreview(unavailable=str(exc))


# --- the confirmation page ----------------------------------------------------------------------------------


class NoteForm(forms.Form):
    note = forms.CharField(
        required=False, max_length=NOTE_MAX, label="Note for the audit trail",
        help_text="Why, and the ticket number if there is one. Saved with each revocation.",
        widget=forms.Textarea(attrs={"rows": 2, "cols": 60}),
    )


def staleness_bound() -> str:
    ttl = get_settings().cache_ttl
    seconds = f"{ttl:g}"
    return ngettext("%(s)s second", "%(s)s seconds", 1 if ttl == 1 else 2) % {"s": seconds}


def confirmation(request, modeladmin, *, title: str, confirm_label: str, cancel_url: str,
                 next_steps: list[str], form: forms.Form, hidden: Sequence[tuple[str, str]] = (),
                 users: Sequence[dict] = (), sessions: SessionsPreview | None = None, sessions_note: str = "",
                 danger: bool = True, extra: dict | None = None) -> TemplateResponse:
    """One page for every revocation: who, which Keycloak sessions end, what happens next, Cancel/Confirm."""
    context = {
        **modeladmin.admin_site.each_context(request),
        "title": title,
        "subtitle": None,
        "opts": modeladmin.model._meta,
        "users": users,
        "sessions": sessions,
        "sessions_note": sessions_note,
        "next_steps": next_steps,
        "form": form,
        "hidden": hidden,
        "confirm_label": confirm_label,
        "cancel_url": cancel_url,
        "danger": danger,
        **(extra or {}),
    }
    return TemplateResponse(request, CONFIRM_TEMPLATE, context)


# --- service reports: enforcement and revoked-token uses (issue 14) ----------------------------------------

USES_SHOWN = 20  # revoked-token uses on a user's page (the full list is the "Revoked-token uses" page)
EVENTS_SHOWN = 5  # revocation events whose enforcement a user's page shows


def _instance_label(entry) -> str:
    i = entry.instance
    return f"{i.service} {i.host}:{i.pid}"


def enforcement_html(found):
    """One revocation event's enforcement: the sentence, then the behind and silent processes by name."""
    from django.utils.html import format_html_join

    parts = [format_html("<strong>{}</strong>", found.summary())]
    for title, entries in (("behind", found.behind), ("silent", found.silent)):
        if entries:
            items = format_html_join(", ", '<span title="last report {}">{}</span>{}', (
                (timezone.localtime(e.instance.last_report_at).isoformat(timespec="seconds"), _instance_label(e),
                 " (enforces it)" if e.enforced else "") for e in entries))
            parts.append(format_html('<br><span class="tv-quiet">{}:</span> {}', title, items))
    from django.utils.safestring import mark_safe

    return mark_safe("".join(str(p) for p in parts))  # noqa: S308 (every part is format_html output)


def subject_enforcement_html(issuer: str, subject: str):
    """The enforcement of the latest revocation events of one user (their page in the admin)."""
    from django.utils.safestring import mark_safe

    from .enforcement import enforcement
    from .models import RevocationEvent

    events = list(RevocationEvent.objects.filter(issuer=issuer, subject=subject)[:EVENTS_SHOWN])
    if not events:
        return "no revocation yet"
    rows = [format_html("<li>{} {}: {}</li>", compact_time(e.created_at, seconds=True), e.get_reason_display(),
                        enforcement_html(enforcement(e))) for e in events]
    return mark_safe('<ul class="tv-list">' + "".join(str(r) for r in rows) + "</ul>")  # noqa: S308


def subject_uses_html(issuer: str, subject: str):
    """The latest revoked-token uses of one user, and a link to all of them."""
    from django.urls import reverse
    from django.utils.safestring import mark_safe

    from .models import RevokedTokenUse

    uses = list(RevokedTokenUse.objects.filter(issuer=issuer, subject=subject)[:USES_SHOWN])
    if not uses:
        return "none"
    rows = [format_html('<li>{} <strong>{}</strong> from {} (<span title="{}">{}</span>) {} {} — hit {}</li>',
                        compact_time(u.at, seconds=True), u.service, u.client_address or "?", u.user_agent,
                        Truncator(u.user_agent or "no user agent").chars(40), u.method,
                        Truncator(u.path).chars(60), u.get_hit_display()) for u in uses]
    link = format_html('<a href="{}?subject={}">every use</a>',
                       reverse("admin:tokenversion_server_revokedtokenuse_changelist"), subject)
    return mark_safe('<ul class="tv-list">' + "".join(str(r) for r in rows) + "</ul>" + str(link))  # noqa: S308
