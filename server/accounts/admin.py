"""Keycloak users in the Django admin, with the revocation actions support staff need."""

from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import OuterRef, Subquery

from tokenversion.conf import get_settings
from tokenversion_server import keycloak, services
from tokenversion_server.models import SubjectVersion

from .models import KeycloakUser


def _revoke(modeladmin, request, queryset, reason: str, label: str) -> None:
    """End the users' Keycloak sessions, then bump their versions.

    Sessions first: Keycloak re-runs the mappers on refresh, so a client refreshing between a bump and the
    session's end would get a token with the new version. In this order every token issued before the bump,
    including one refreshed in between, carries an old version. When Keycloak cannot be reached, the bump is
    still made (every access token dies) and the admin is told that refresh tokens may still work.
    """
    if not request.user.has_perm("tokenversion_server.revoke_tokens"):
        modeladmin.message_user(request, "You lack the permission to revoke tokens.", messages.ERROR)
        return
    users = list(queryset)
    ended, not_ended = _end_keycloak_sessions(users)
    actor = services.Actor.admin(request.user)
    done = 0
    skipped = []
    for user in users:
        note = f"Django admin: {label}"
        if user.subject in ended:
            note += f"; {ended[user.subject]} Keycloak session(s) ended"
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
        modeladmin.message_user(
            request,
            f"Keycloak sessions not ended ({not_ended}): access tokens are revoked, but the users' clients may "
            f"still refresh into new tokens until their Keycloak sessions end. Sign them out in Keycloak.",
            messages.WARNING,
        )
    modeladmin.message_user(
        request,
        f"Revoked every token of {done} user(s) ({label}); Keycloak sessions ended: {sum(ended.values())}.",
        messages.SUCCESS,
    )


def _end_keycloak_sessions(users) -> tuple[dict[str, int], str]:
    """Sessions ended per subject, and why some could not be (empty when all were)."""
    try:
        admin = keycloak.admin_client()
    except keycloak.KeycloakUnavailable as exc:
        return {}, str(exc)
    ended: dict[str, int] = {}
    failures = []
    for user in users:
        try:
            ended[user.subject] = keycloak.end_user_sessions(user.subject, admin)
        except keycloak.KeycloakUnavailable as exc:
            failures.append(str(exc))
    return ended, "; ".join(failures)


@admin.action(description="Revoke all tokens: logout")
def revoke_for_logout(modeladmin, request, queryset):
    _revoke(modeladmin, request, queryset, services.Reason.LOGOUT, "logout")


@admin.action(description="Revoke all tokens: account compromised")
def revoke_for_compromise(modeladmin, request, queryset):
    _revoke(modeladmin, request, queryset, services.Reason.COMPROMISE, "compromise")


@admin.register(KeycloakUser)
class KeycloakUserAdmin(admin.ModelAdmin):
    list_display = ("username", "email", "subject", "token_version", "last_logout_time", "last_seen")
    search_fields = ("username", "email", "subject")
    list_filter = ("issuer",)
    readonly_fields = ("issuer", "subject", "first_seen", "last_seen", "token_version", "last_logout_time")
    fields = ("issuer", "subject", "username", "email", "last_client_id", "token_version",
              "last_logout_time", "first_seen", "last_seen")
    actions = [revoke_for_logout, revoke_for_compromise]
    ordering = ("username",)

    def get_queryset(self, request):
        versions = SubjectVersion.objects.filter(issuer=OuterRef("issuer"), subject=OuterRef("subject"))
        return super().get_queryset(request).annotate(
            _token_version=Subquery(versions.values("token_version")[:1]),
            _last_logout_time=Subquery(versions.values("last_logout_time")[:1]),
        )

    @admin.display(description="token version", ordering="_token_version")
    def token_version(self, obj) -> int:
        # No row yet: the user's tokens carry the initial version (what the claims endpoint would create).
        return obj._token_version if obj._token_version is not None else get_settings().initial_version

    @admin.display(description="last logout", ordering="_last_logout_time")
    def last_logout_time(self, obj):
        return obj._last_logout_time
