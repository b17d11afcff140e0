"""Keycloak users in the Django admin, with the revocation actions support staff need.

Both actions show a confirmation page first (who, which Keycloak sessions end, what happens next); only its
Confirm button revokes. Users come from Keycloak (first token, ``sync_users``), so there is no "add user".
"""

from __future__ import annotations

from collections.abc import Iterable

from django.contrib import admin, messages
from django.db.models import OuterRef, Q, Subquery
from django.urls import reverse
from django.utils.translation import ngettext

from tokenversion.conf import get_settings
from tokenversion_server import admin_pages, keycloak_admin, services
from tokenversion_server.conf import get_server_settings
from tokenversion_server.models import SubjectVersion

from .models import KeycloakUser

admin.site.site_header = "tokenversion"
admin.site.site_title = "tokenversion admin"
admin.site.index_title = "Token revocation"

CONFIRM = "tv_confirm"  # the confirmation page's submit button; without it an action only shows the page


class KeycloakUserDirectory:
    """Tells the server app's admin pages who is behind a subject (username, email, link)."""

    def lookup(self, pairs: Iterable[tuple[str, str]]) -> dict[tuple[str, str], admin_pages.UserRef]:
        pairs = set(pairs)
        rows = KeycloakUser.objects.filter(subject__in={s for _, s in pairs}).values_list(
            "pk", "issuer", "subject", "username", "email")
        return {(i, s): admin_pages.UserRef(u, e, reverse("admin:accounts_keycloakuser_change", args=[pk]))
                for pk, i, s, u, e in rows if (i, s) in pairs}

    def search(self, term: str) -> list[str]:
        found = KeycloakUser.objects.filter(Q(username__icontains=term) | Q(email__icontains=term))
        return list(found.values_list("subject", flat=True)[:1000])


admin_pages.register_user_directory(KeycloakUserDirectory())


def _next_steps(reason: str, n: int, sessions_unavailable: str) -> list[str]:
    them = ngettext("the user", "these users", n)
    steps = [
        f"The token version of {them} goes up by one: every access token issued until now is refused by every "
        f"service within {admin_pages.staleness_bound()} (the CACHE_TTL bound; services on the feed, within "
        f"milliseconds).",
        ngettext("The user must log in again.", "The users must log in again.", n),
    ]
    if sessions_unavailable:
        steps.append(f"Their Keycloak sessions are NOT ended, so refresh tokens of {them} still work: clients can "
                     "refresh into new, valid tokens until the sessions are signed out in Keycloak (Users → "
                     "Sessions → Sign out). Do that now.")
    elif reason == services.Reason.COMPROMISE:
        steps.append(f"Their Keycloak sessions are ended, so refresh tokens of {them} are dead: nobody holding "
                     "one can get a new access token.")
    else:
        steps.append("Their Keycloak sessions are ended, so clients cannot refresh into new tokens.")
    if reason == services.Reason.COMPROMISE:
        steps.append("Change the password or credentials in Keycloak if they may be known.")
    steps.append("Each revocation is written to the audit trail, with your name and note.")
    return steps


def _revoke(modeladmin, request, queryset, reason: str, label: str):
    """Show the confirmation page; on Confirm, end the users' Keycloak sessions, then bump their versions.

    Sessions first: Keycloak re-runs the mappers on refresh, so a client refreshing between a bump and the
    session's end would get a token with the new version. In this order every token issued before the bump,
    including one refreshed in between, carries an old version. When Keycloak cannot be reached, the bump is
    still made (every access token dies), the admin is told that refresh tokens may still work, and the audit
    note says the sessions were not ended.
    """
    if not request.user.has_perm("tokenversion_server.revoke_tokens"):
        modeladmin.message_user(request, "You lack the permission to revoke tokens.", messages.ERROR)
        return None
    users = list(queryset.order_by("username", "pk"))
    form = admin_pages.NoteForm(request.POST if CONFIRM in request.POST else None)
    if not (CONFIRM in request.POST and form.is_valid()):
        return _confirmation_page(modeladmin, request, users, reason, label, form)

    ended, not_ended = _end_keycloak_sessions(users)
    actor = services.Actor.admin(request.user)
    staff_note = form.cleaned_data["note"].strip()
    done = 0
    skipped = []
    for user in users:
        if user.subject in ended:
            n = ended[user.subject]
            sessions = ngettext("%d Keycloak session ended", "%d Keycloak sessions ended", n) % n
        else:
            sessions = f"Keycloak sessions not ended: {not_ended.get(user.subject, 'unknown')}"
        note = "; ".join(p for p in (f"Django admin: {label}", sessions, staff_note) if p)
        try:
            services.revoke_user(user.subject, reason=reason, actor=actor, issuer=user.issuer, note=note)
        except services.InvalidRequest as exc:
            # e.g. a row left from a previous ISSUER: report it rather than fail half way with a 500.
            skipped.append(f"{user} ({exc})")
            continue
        done += 1
    if skipped:
        modeladmin.message_user(request, f"Not revoked: {', '.join(skipped)}.", messages.ERROR)
    if not_ended:
        why = "; ".join(sorted(set(not_ended.values())))
        modeladmin.message_user(
            request,
            f"Keycloak sessions not ended ({why}): access tokens are revoked, but the users' clients may "
            f"still refresh into new tokens until their Keycloak sessions end. Sign them out in Keycloak.",
            messages.WARNING,
        )
    revoked = ngettext("Revoked every token of %(n)d user (%(label)s)", "Revoked every token of %(n)d users "
                       "(%(label)s)", done) % {"n": done, "label": label}
    modeladmin.message_user(request, f"{revoked}; Keycloak sessions ended: {sum(ended.values())}.",
                            messages.SUCCESS)
    return None


def _confirmation_page(modeladmin, request, users, reason: str, label: str, form):
    n = len(users)
    listed = n <= admin_pages.SESSIONS_LISTED_MAX  # one Keycloak call per user: not for a whole realm
    preview = admin_pages.preview_sessions([u.subject for u in users] if listed else [])
    sessions_note = "" if listed or preview.unavailable else (
        f"The Keycloak sessions of these {n} users will be ended (not listed here for more than "
        f"{admin_pages.SESSIONS_LISTED_MAX} users).")
    issuer = get_settings().issuer
    rows = [{
        "username": u.username, "email": u.email, "subject": u.subject,
        "url": reverse("admin:accounts_keycloakuser_change", args=[u.pk]),
        "sessions": preview.by_subject.get(u.subject, []) if listed and not preview.unavailable else None,
        "problem": "" if u.issuer == issuer else f"not revoked: issued by {u.issuer}, not this provider's issuer",
    } for u in users]
    title = (ngettext("Revoke every token of %d user", "Revoke every token of %d users", n) % n
             + (": account compromised" if reason == services.Reason.COMPROMISE else ": logout"))
    hidden = [("action", request.POST.get("action", "")),
              *((admin.helpers.ACTION_CHECKBOX_NAME, str(u.pk)) for u in users)]
    return admin_pages.confirmation(
        request, modeladmin, title=title, users=rows, sessions=preview, sessions_note=sessions_note, form=form,
        hidden=hidden,
        next_steps=_next_steps(reason, n, preview.unavailable),
        cancel_url=reverse("admin:accounts_keycloakuser_changelist"),
        confirm_label=ngettext("Confirm: revoke %d user", "Confirm: revoke %d users", n) % n,
    )


def _end_keycloak_sessions(users) -> tuple[dict[str, int], dict[str, str]]:
    """Sessions ended per subject, and why not for the others (empty when all were)."""
    try:
        admin_client = keycloak_admin.admin_client()
    except keycloak_admin.KeycloakUnavailable as exc:
        return {}, {u.subject: str(exc) for u in users}
    ended: dict[str, int] = {}
    failures: dict[str, str] = {}
    for user in users:
        try:
            ended[user.subject] = keycloak_admin.end_user_sessions(user.subject, admin_client)
        except keycloak_admin.KeycloakUnavailable as exc:
            failures[user.subject] = str(exc)
    return ended, failures


@admin.action(description="Revoke all tokens: logout…")
def revoke_for_logout(modeladmin, request, queryset):
    return _revoke(modeladmin, request, queryset, services.Reason.LOGOUT, "logout")


@admin.action(description="Revoke all tokens: account compromised…")
def revoke_for_compromise(modeladmin, request, queryset):
    return _revoke(modeladmin, request, queryset, services.Reason.COMPROMISE, "compromise")


@admin.register(KeycloakUser)
class KeycloakUserAdmin(admin.ModelAdmin):
    list_display = ("username", "email", "subject_short", "token_version", "last_logout_time", "seen")
    list_display_links = ("username",)
    search_fields = ("username", "email", "subject")
    list_filter = ("issuer",)
    readonly_fields = ("issuer", "subject", "first_seen", "last_seen", "token_version", "last_logout_time",
                       "revocation_enforcement", "revoked_token_uses")
    fields = ("issuer", "subject", "username", "email", "last_client_id", "token_version",
              "last_logout_time", "first_seen", "last_seen", "revocation_enforcement", "revoked_token_uses")
    actions = [revoke_for_logout, revoke_for_compromise]
    ordering = ("username",)

    def has_add_permission(self, request) -> bool:
        # Users come from Keycloak (their first token, or sync_users); one made here would match no one.
        return False

    def get_queryset(self, request):
        versions = SubjectVersion.objects.filter(issuer=OuterRef("issuer"), subject=OuterRef("subject"))
        return super().get_queryset(request).annotate(
            _token_version=Subquery(versions.values("token_version")[:1]),
            _last_logout_time=Subquery(versions.values("last_logout_time")[:1]),
        )

    @admin.display(description="subject", ordering="subject")
    def subject_short(self, obj):
        return admin_pages.subject_cell(obj.subject, None)

    @admin.display(description="token version", ordering="_token_version")
    def token_version(self, obj) -> int:
        # No row yet: the user's tokens carry the initial version (what the claims endpoint would create).
        return obj._token_version if obj._token_version is not None else get_server_settings().initial_version

    @admin.display(description="last logout", ordering="_last_logout_time")
    def last_logout_time(self, obj):
        return admin_pages.compact_time(obj._last_logout_time)

    @admin.display(description="last seen", ordering="last_seen")
    def seen(self, obj):
        return admin_pages.compact_time(obj.last_seen)

    @admin.display(description="revocations enforced")
    def revocation_enforcement(self, obj):
        """Each of the user's latest revocations: by how many live service processes, how fast (issue 14)."""
        return admin_pages.subject_enforcement_html(obj.issuer, obj.subject)

    @admin.display(description="revoked-token uses")
    def revoked_token_uses(self, obj):
        """The user's revoked tokens presented to services since: security events (issue 14)."""
        return admin_pages.subject_uses_html(obj.issuer, obj.subject)
