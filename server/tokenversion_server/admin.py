"""Revocation state in the Django admin: the audit trail read-only, session revocation through the service,
and the realm-wide revocation; every revocation goes through a confirmation page (see ``admin_pages``)."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied
from django.http import HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html
from django.utils.text import Truncator

from tokenversion.conf import get_settings

from . import admin_pages, services
from .models import (
    ApiKey,
    AttributeWrite,
    RealmRevocation,
    RevocationEvent,
    RevokedSession,
    RevokedTokenUse,
    ServiceCredential,
    ServiceInstance,
    SubjectVersion,
)

REVOKE_PERMISSION = "tokenversion_server.revoke_tokens"


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(RevocationEvent)
class RevocationEventAdmin(admin_pages.UserColumnMixin, ReadOnlyAdmin):
    # Few, narrow columns: the list fits 1280 px; the detail page has every field.
    list_display = ("when", "user", "session", "what", "by", "versions", "short_note")
    list_filter = ("scope", "reason", "actor_type")
    search_fields = ("subject", "session_id", "actor", "note")
    date_hierarchy = "created_at"
    readonly_fields = ("user", "enforcement")

    @admin.display(description="enforcement")
    def enforcement(self, obj):
        """Which service processes enforce this revocation, and how fast (docs/revocation.md)."""
        from .enforcement import enforcement

        return admin_pages.enforcement_html(enforcement(obj))

    @admin.display(description="when", ordering="created_at")
    def when(self, obj):
        return admin_pages.compact_time(obj.created_at, seconds=True)

    @admin.display(description="session", ordering="session_id")
    def session(self, obj):
        if not obj.session_id:
            return "—"
        return format_html('<span title="{}">{}</span>', obj.session_id, Truncator(obj.session_id).chars(12))

    @admin.display(description="reason", ordering="reason")
    def what(self, obj):
        # The scope under the reason, quieter: one column instead of two.
        return format_html('{}<br><span class="tv-quiet">{}</span>', obj.get_reason_display(),
                           obj.get_scope_display())

    @admin.display(description="by", ordering="actor")
    def by(self, obj):
        # Keycloak actors carry an event or token id: cut short here, whole in the tooltip and detail page.
        return format_html('<span title="{}">{}</span>', obj.actor, Truncator(obj.actor).chars(24)) if obj.actor else ""

    @admin.display(description="version")
    def versions(self, obj) -> str:
        return "—" if obj.new_version is None else f"{obj.old_version} → {obj.new_version}"

    @admin.display(description="note")
    def short_note(self, obj):
        return format_html('<span title="{}">{}</span>', obj.note, Truncator(obj.note).chars(40)) if obj.note else ""


@admin.register(SubjectVersion)
class SubjectVersionAdmin(admin_pages.UserColumnMixin, ReadOnlyAdmin):
    list_display = ("user", "token_version", "last_logout_time", "updated_at", "issuer")
    search_fields = ("subject",)
    readonly_fields = ("user",)


class AttributeFailingFilter(admin.SimpleListFilter):
    title = "state"
    parameter_name = "state"

    def lookups(self, request, model_admin):
        return [("failing", "failing (tried, not landed)"), ("waiting", "waiting (not tried yet)")]

    def queryset(self, request, queryset):
        if self.value() == "failing":
            return queryset.filter(attempts__gt=0)
        if self.value() == "waiting":
            return queryset.filter(attempts=0)
        return queryset


@admin.register(AttributeWrite)
class AttributeWriteAdmin(admin_pages.UserColumnMixin, ReadOnlyAdmin):
    """Attribute mode's backlog: versions not yet in Keycloak. Read only: the worker owns the rows, and deleting
    one would leave the user's attribute behind for good (docs/operations.md#attribute-mode-backlog)."""

    list_display = ("user", "version", "waiting_since", "attempts", "next_try", "error")
    list_filter = (AttributeFailingFilter,)
    search_fields = ("subject", "last_error")
    readonly_fields = ("user",)

    def changelist_view(self, request, extra_context=None):
        from .attribute_sync import backlog

        pending = backlog()
        summary = (f"{pending.pending} pending, {pending.failing} failing, oldest {pending.oldest_age:.1f} s"
                   if pending.pending else "Nothing pending: every bump has reached Keycloak.")
        return super().changelist_view(request, {**(extra_context or {}), "title": f"Pending attribute writes: "
                                                 f"{summary}"})

    @admin.display(description="waiting since", ordering="created_at")
    def waiting_since(self, obj):
        return admin_pages.compact_time(obj.created_at, seconds=True)

    @admin.display(description="next try", ordering="next_attempt_at")
    def next_try(self, obj):
        return admin_pages.compact_time(obj.next_attempt_at, seconds=True)

    @admin.display(description="last error")
    def error(self, obj):
        if not obj.last_error:
            return ""
        return format_html('<span title="{}">{}</span>', obj.last_error, Truncator(obj.last_error).chars(60))


class RevokeSessionForm(forms.ModelForm):
    reason = forms.ChoiceField(choices=RevocationEvent.Reason.choices, initial=RevocationEvent.Reason.LOGOUT)
    note = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}))

    class Meta:
        model = RevokedSession
        fields = ("session_id", "subject")

    def clean_session_id(self):
        try:
            return services.check_identifier(self.cleaned_data["session_id"], "session id")
        except services.InvalidRequest as exc:
            raise forms.ValidationError(str(exc)) from None

    def clean_subject(self):
        subject = self.cleaned_data["subject"]
        if not subject:
            return subject
        try:
            return services.check_identifier(subject, "subject")
        except services.InvalidRequest as exc:
            raise forms.ValidationError(str(exc)) from None

    def validate_unique(self):
        """Revoking an already revoked session just renews it; the service handles that."""


@admin.register(RevokedSession)
class RevokedSessionAdmin(admin_pages.UserColumnMixin, admin.ModelAdmin):
    list_display = ("session_id", "user", "revoked_at", "expires_at")
    search_fields = ("session_id", "subject")
    form = RevokeSessionForm
    readonly_fields = ("user",)
    # Whether saving also ends the session in Keycloak: the confirmation page says what saving does.
    ends_keycloak_session = True  # revoke_session_everywhere ends it (or keeps the row for SSO_SESSION_MAX)

    def add_view(self, request, form_url="", extra_context=None):
        """A valid form first shows the confirmation page; its Confirm button posts again and saves."""
        if (request.method == "POST" and "tv_confirm" not in request.POST
                and self.has_add_permission(request)):
            form = self.get_form(request)(request.POST)
            if form.is_valid():
                return self._confirmation_page(request, form)
        return super().add_view(request, form_url, extra_context)

    def _confirmation_page(self, request, form):
        sid, subject = form.cleaned_data["session_id"], form.cleaned_data["subject"]
        issuer = get_settings().issuer
        user = admin_pages.lookup_users([(issuer, subject)]).get((issuer, subject))
        sessions, sessions_note = None, ""
        if self.ends_keycloak_session:
            sessions = admin_pages.preview_sessions([subject] if subject else [])
            if not subject and not sessions.unavailable:
                sessions_note = "The Keycloak session is ended by its id."
        else:
            sessions_note = ("Keycloak sessions will not be ended: this page revokes the session's tokens only. "
                             "Its refresh token keeps working until the session is signed out in Keycloak.")
        listed = None
        if sessions is not None and not sessions.unavailable:
            listed = [s for s in sessions.by_subject.get(subject, []) if s.id == sid]
        rows = [{"username": user.username if user else "", "email": user.email if user else "",
                 "url": user.url if user else "", "subject": subject or "(not given)", "sessions": listed}]
        note_form = admin_pages.NoteForm(initial={"note": form.cleaned_data["note"]})
        hidden = [("session_id", sid), ("subject", subject), ("reason", form.cleaned_data["reason"])]
        return admin_pages.confirmation(
            request, self, title="Revoke one session", users=rows, sessions=sessions,
            sessions_note=sessions_note, form=note_form, hidden=hidden,
            cancel_url=reverse("admin:tokenversion_server_revokedsession_changelist"),
            confirm_label="Confirm: revoke this session",
            next_steps=[
                f"Every access token of session {sid} is refused by every service within "
                f"{admin_pages.staleness_bound()}; the user's other sessions keep working.",
                "The user must log in again on that device.",
                f"The revocation is written to the audit trail with reason "
                f"“{form.cleaned_data['reason']}”, your name and note.",
            ],
            extra={"session_id": sid},
        )

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        # Deleting a row would un-revoke the session, with no audit row; expired rows go by purge_revocations.
        return False

    def has_add_permission(self, request) -> bool:
        return request.user.has_perm("tokenversion_server.revoke_tokens")

    def save_model(self, request, obj, form, change) -> None:
        rev = services.revoke_session_everywhere(
            obj.session_id, subject=obj.subject, reason=form.cleaned_data["reason"],
            actor=services.Actor.admin(request.user), note=form.cleaned_data["note"] or "Django admin",
        )
        level = messages.WARNING if rev.keycloak_session == "not_ended" else messages.INFO
        self.message_user(request, rev.keycloak_detail, level)
        saved = RevokedSession.objects.get(issuer=rev.issuer, session_id=rev.session_id)
        obj.pk, obj.issuer = saved.pk, saved.issuer
        obj.revoked_at, obj.expires_at = saved.revoked_at, saved.expires_at
        obj._state.adding = False


class RealmRevocationForm(forms.Form):
    confirm = forms.BooleanField(required=True, label="I understand that every user must log in again")
    note = admin_pages.NoteForm.base_fields["note"]


@admin.register(RealmRevocation)
class RealmRevocationAdmin(ReadOnlyAdmin):
    list_display = ("issuer", "not_before", "updated_at")
    change_list_template = "admin/tokenversion_server/realmrevocation/change_list.html"

    def get_urls(self):
        custom = [
            path("revoke-all/", self.admin_site.admin_view(self.revoke_all_view),
                 name="tokenversion_server_realmrevocation_revoke_all"),
        ]
        return custom + super().get_urls()

    def has_view_permission(self, request, obj=None) -> bool:
        return super().has_view_permission(request, obj) or request.user.has_perm(
            "tokenversion_server.revoke_tokens")

    def revoke_all_view(self, request):
        if not request.user.has_perm("tokenversion_server.revoke_tokens"):
            raise PermissionDenied
        form = RealmRevocationForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            services.revoke_realm(actor=services.Actor.admin(request.user),
                                  note=form.cleaned_data["note"] or "Django admin: realm-wide revocation")
            self.message_user(request, "Every token of the realm issued until now is revoked.",
                              messages.SUCCESS)
            return HttpResponseRedirect(reverse("admin:tokenversion_server_realmrevocation_changelist"))
        return admin_pages.confirmation(
            request, self, title="Revoke every token of the realm", form=form,
            cancel_url=reverse("admin:tokenversion_server_realmrevocation_changelist"),
            confirm_label="Confirm: revoke every token",
            sessions_note="Keycloak sessions will not be ended: a realm-wide revocation refuses tokens by their "
                          "issue time. Users whose Keycloak session lives get new tokens by refreshing; to end "
                          "every session too, sign them out in Keycloak's admin console (Sessions).",
            next_steps=[
                "Every access token issued until now, for every user, is refused by every service within "
                f"{admin_pages.staleness_bound()}.",
                "Every user must log in again (or refresh, if their Keycloak session is alive).",
                "This is one write, recorded in the audit trail with your name and note.",
            ],
            extra={"issuer": get_settings().issuer},
        )


def may_hold_key(creator, holder) -> bool:
    """Who a key may be created for: a superuser, for any active user; anyone else, only for themselves.

    A key acts as its holder, so a key for someone else borrows that someone's permissions and name in the
    audit trail: that is the attack of issue 9 (an "add token" permission creating a key for the superuser).
    """
    if not holder.is_active:
        return False
    return creator.is_superuser or holder.pk == creator.pk


class RevocableKeyAdmin(admin.ModelAdmin):
    """Keys managed under ``revoke_tokens`` (API keys, service keys): revoked, never changed or deleted, so
    the list keeps who held which key."""

    actions = ["revoke_keys"]

    @staticmethod
    def _may_manage(request) -> bool:
        return request.user.is_active and request.user.has_perm(REVOKE_PERMISSION)

    def has_module_permission(self, request) -> bool:
        return self._may_manage(request)

    def has_change_permission(self, request, obj=None) -> bool:
        return False  # what a key was created with stays; revoke it and make another

    def has_delete_permission(self, request, obj=None) -> bool:
        return False  # revoked, not deleted

    def has_revoke_permission(self, request) -> bool:
        return self._may_manage(request)

    def _revoke(self, request, queryset) -> int:
        by = f"admin: {request.user.get_username()}"
        return sum(key.revoke(by) for key in queryset)


@admin.register(ApiKey)
class ApiKeyAdmin(RevocableKeyAdmin):
    """API keys for the REST API. Only users who may revoke see this page at all, and a non-superuser sees and
    creates only keys they hold. No key is ever shown but once, on the page after "Save"."""

    list_display = ("prefix", "name", "holder", "created_at", "created_by", "last_used_at", "revoked_at")
    list_filter = ("revoked_at",)
    search_fields = ("prefix", "name", "holder__username")
    fields = ("name", "holder")
    readonly_fields = ("prefix", "created_at", "created_by", "last_used_at", "revoked_at", "revoked_by")

    # --- permissions: revoke_tokens, and (below superuser) one's own keys only ---

    def has_view_permission(self, request, obj=None) -> bool:
        if not self._may_manage(request):
            return False
        return obj is None or request.user.is_superuser or obj.holder_id == request.user.pk

    def has_add_permission(self, request) -> bool:
        return self._may_manage(request)


    def get_queryset(self, request):
        queryset = super().get_queryset(request).select_related("holder")
        return queryset if request.user.is_superuser else queryset.filter(holder=request.user)

    def get_fields(self, request, obj=None):
        return ("name", "holder") if obj is None else ("name", "holder", *self.readonly_fields)

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.name == "holder":
            users = get_user_model()._default_manager.filter(is_active=True)
            kwargs["queryset"] = users if request.user.is_superuser else users.filter(pk=request.user.pk)
            kwargs["initial"] = request.user.pk
        field = super().formfield_for_foreignkey(db_field, request, **kwargs)
        if db_field.name == "holder":
            # No "add user" or "change user" links next to the choice: this page creates keys, not users.
            field.widget.can_add_related = field.widget.can_change_related = False
            field.widget.can_delete_related = field.widget.can_view_related = False
        return field

    # --- creating: the key is generated here and shown once ---

    def save_model(self, request, obj, form, change) -> None:
        # The form's choices already hold only allowed holders; this is the rule itself, checked again here.
        if change or not self._may_manage(request) or not may_hold_key(request.user, obj.holder):
            raise PermissionDenied
        obj.created_by = f"admin: {request.user.get_username()}"[:255]
        request._tokenversion_new_api_key = obj.set_new_key()
        obj.save(force_insert=True)

    def response_add(self, request, obj, post_url_continue=None):
        key = getattr(request, "_tokenversion_new_api_key", None)
        if key is None:
            return super().response_add(request, obj, post_url_continue)
        del request._tokenversion_new_api_key
        if not obj.holder.has_perm(REVOKE_PERMISSION):
            self.message_user(request, f"The holder, {obj.holder.get_username()}, lacks the permission "
                              f"{REVOKE_PERMISSION}: the key is refused (403) until they have it.",
                              messages.WARNING)
        context = {
            **self.admin_site.each_context(request),
            "title": "API key created",
            "api_key": obj,
            "key": key,
            "opts": self.model._meta,
            "revocations_url": request.build_absolute_uri(reverse("tokenversion:revocations")),
        }
        response = TemplateResponse(request, "admin/tokenversion_server/apikey/created.html", context)
        response["Cache-Control"] = "no-store"  # the one page that shows the key: no copy in any cache
        return response

    @admin.action(description="Revoke the selected API keys", permissions=["revoke"])
    def revoke_keys(self, request, queryset) -> None:
        done = self._revoke(request, queryset)
        self.message_user(request, f"{done} API key(s) revoked; they no longer authenticate.", messages.SUCCESS)



# --- service reports (issue 14) --------------------------------------------------------------------------


@admin.register(ServiceCredential)
class ServiceCredentialAdmin(RevocableKeyAdmin):
    """The keys services report with. Made with ``manage.py create_service_key`` (which prints the key once);
    listed and revoked here. The key itself is never stored, so never shown."""

    list_display = ("name", "prefix", "created_at", "created_by", "last_used_at", "revoked_at")
    list_filter = ("revoked_at",)
    search_fields = ("name", "prefix")
    fields = ("name", "prefix", "created_at", "created_by", "last_used_at", "revoked_at", "revoked_by")
    readonly_fields = fields

    def has_view_permission(self, request, obj=None) -> bool:
        return self._may_manage(request)

    def has_add_permission(self, request) -> bool:
        return False  # manage.py create_service_key: the key goes to a deployment's secrets, not a web page

    @admin.action(description="Revoke the selected service keys", permissions=["revoke"])
    def revoke_keys(self, request, queryset) -> None:
        done = self._revoke(request, queryset)
        self.message_user(request, f"{done} service key(s) revoked; their reports are refused (401).",
                          messages.SUCCESS)


class InstanceStateFilter(admin.SimpleListFilter):
    title = "state"
    parameter_name = "state"

    def lookups(self, request, model_admin):
        return [("enforcing", "enforcing"), ("behind", "behind"), ("silent", "silent"), ("gone", "gone")]

    def queryset(self, request, queryset):
        import datetime as dt

        from django.db.models import Max, Q
        from django.utils import timezone

        from .conf import get_server_settings

        conf = get_server_settings()
        now = timezone.now()
        live_since = now - dt.timedelta(seconds=conf.service_live_window)
        forget = now - dt.timedelta(seconds=conf.service_forget_after)
        latest = RevocationEvent.objects.aggregate(at=Max("created_at"))["at"]
        late = Q(last_as_of__isnull=True) | Q(last_as_of__lt=latest) if latest else Q(pk__in=[])
        if self.value() == "enforcing":
            return queryset.filter(last_report_at__gte=live_since).exclude(late)
        if self.value() == "behind":
            return queryset.filter(late, last_report_at__gte=live_since)
        if self.value() == "silent":
            return queryset.filter(last_report_at__lt=live_since, last_report_at__gte=forget)
        if self.value() == "gone":
            return queryset.filter(last_report_at__lt=forget)
        return queryset


@admin.register(ServiceInstance)
class ServiceInstanceAdmin(ReadOnlyAdmin):
    """Every service process that reported: live (enforcing the latest revocation), behind, silent or gone."""

    list_display = ("service", "process", "state", "store", "enforces_until", "last_report", "dropped")
    list_filter = (InstanceStateFilter, "service", "store")
    search_fields = ("service", "host")
    ordering = ("-last_report_at",)

    def get_changelist_instance(self, request):
        from django.db.models import Max

        cl = super().get_changelist_instance(request)
        latest = RevocationEvent.objects.aggregate(at=Max("created_at"))["at"]
        for row in cl.result_list:
            row._tv_latest = latest
        return cl

    @admin.display(description="process", ordering="host")
    def process(self, obj):
        text = f"{obj.host}:{obj.pid}"
        return format_html('<span title="{} (started {})">{}</span>', text, obj.started_at.isoformat(),
                           Truncator(obj.host).chars(24) + f":{obj.pid}")

    @admin.display(description="state")
    def state(self, obj):
        from .enforcement import state_of

        latest = getattr(obj, "_tv_latest", None)
        if not hasattr(obj, "_tv_latest"):
            from django.db.models import Max

            latest = RevocationEvent.objects.aggregate(at=Max("created_at"))["at"]
        state = state_of(obj, latest)
        return format_html('<span class="tv-state tv-state-{}">{}</span>', state, state)

    @admin.display(description="enforces until", ordering="last_as_of")
    def enforces_until(self, obj):
        return admin_pages.compact_time(obj.last_as_of, seconds=True)

    @admin.display(description="last report", ordering="last_report_at")
    def last_report(self, obj):
        return admin_pages.compact_time(obj.last_report_at, seconds=True)

    @admin.display(description="dropped")
    def dropped(self, obj):
        return format_html('<span title="uses / freshness points the process dropped">{}/{}</span>',
                           obj.dropped_uses, obj.dropped_freshness)


@admin.register(RevokedTokenUse)
class RevokedTokenUseAdmin(admin_pages.UserColumnMixin, ReadOnlyAdmin):
    """Revoked tokens presented to services: security events, append-only (docs/operations.md)."""

    list_display = ("when", "user", "service", "hit", "client_address", "agent", "request_line", "revocation_link")
    list_filter = ("service", "hit")
    search_fields = ("subject", "session_id", "jti", "client_address", "service")
    date_hierarchy = "at"
    readonly_fields = ("user",)
    list_select_related = ("revocation",)

    @admin.display(description="when", ordering="at")
    def when(self, obj):
        return admin_pages.compact_time(obj.at, seconds=True)

    @admin.display(description="user agent")
    def agent(self, obj):
        return format_html('<span title="{}">{}</span>', obj.user_agent, Truncator(obj.user_agent).chars(16))

    @admin.display(description="request")
    def request_line(self, obj):
        text = f"{obj.method} {obj.path}".strip()
        return format_html('<span title="{}">{}</span>', text, Truncator(text).chars(24))

    @admin.display(description="revocation hit")
    def revocation_link(self, obj):
        if obj.revocation is None:
            return "—"
        url = reverse("admin:tokenversion_server_revocationevent_change", args=[obj.revocation_id])
        return format_html('<a href="{}" title="{}">{} #{}</a>', url, obj.revocation,
                           obj.revocation.get_reason_display(), obj.revocation_id)
