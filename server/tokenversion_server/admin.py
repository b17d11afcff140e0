"""Revocation state in the Django admin: the audit trail read-only, session revocation through the service,
and the realm-wide revocation behind a confirmation page."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied
from django.http import HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse

from tokenversion.conf import get_settings

from . import services
from .models import ApiKey, RealmRevocation, RevocationEvent, RevokedSession, SubjectVersion

REVOKE_PERMISSION = "tokenversion_server.revoke_tokens"


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(RevocationEvent)
class RevocationEventAdmin(ReadOnlyAdmin):
    list_display = ("created_at", "scope", "subject", "session_id", "reason", "actor_type", "actor",
                    "old_version", "new_version")
    list_filter = ("scope", "reason", "actor_type")
    search_fields = ("subject", "session_id", "actor", "note")
    date_hierarchy = "created_at"


@admin.register(SubjectVersion)
class SubjectVersionAdmin(ReadOnlyAdmin):
    list_display = ("subject", "token_version", "last_logout_time", "updated_at", "issuer")
    search_fields = ("subject",)


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
class RevokedSessionAdmin(admin.ModelAdmin):
    list_display = ("session_id", "subject", "revoked_at", "expires_at")
    search_fields = ("session_id", "subject")
    form = RevokeSessionForm

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        # Deleting a row would un-revoke the session, with no audit row; expired rows go by purge_revocations.
        return False

    def has_add_permission(self, request) -> bool:
        return request.user.has_perm("tokenversion_server.revoke_tokens")

    def save_model(self, request, obj, form, change) -> None:
        rev = services.revoke_session(
            obj.session_id, subject=obj.subject, reason=form.cleaned_data["reason"],
            actor=services.Actor.admin(request.user), note=form.cleaned_data["note"] or "Django admin",
        )
        saved = RevokedSession.objects.get(issuer=rev.issuer, session_id=rev.session_id)
        obj.pk, obj.issuer = saved.pk, saved.issuer
        obj.revoked_at, obj.expires_at = saved.revoked_at, saved.expires_at
        obj._state.adding = False


class RealmRevocationForm(forms.Form):
    confirm = forms.BooleanField(required=True, label="I understand that every user must log in again")
    note = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}))


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
        context = {
            **self.admin_site.each_context(request),
            "title": "Revoke every token of the realm",
            "form": form,
            "issuer": get_settings().issuer,
            "opts": self.model._meta,
        }
        return TemplateResponse(request, "admin/tokenversion_server/revoke_all.html", context)


def may_hold_key(creator, holder) -> bool:
    """Who a key may be created for: a superuser, for any active user; anyone else, only for themselves.

    A key acts as its holder, so a key for someone else borrows that someone's permissions and name in the
    audit trail: that is the attack of issue 9 (an "add token" permission creating a key for the superuser).
    """
    if not holder.is_active:
        return False
    return creator.is_superuser or holder.pk == creator.pk


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    """API keys for the REST API. Only users who may revoke see this page at all, and a non-superuser sees and
    creates only keys they hold. No key is ever shown but once, on the page after "Save"."""

    list_display = ("prefix", "name", "holder", "created_at", "created_by", "last_used_at", "revoked_at")
    list_filter = ("revoked_at",)
    search_fields = ("prefix", "name", "holder__username")
    fields = ("name", "holder")
    readonly_fields = ("prefix", "created_at", "created_by", "last_used_at", "revoked_at", "revoked_by")
    actions = ["revoke_keys"]

    # --- permissions: revoke_tokens, and (below superuser) one's own keys only ---

    @staticmethod
    def _may_manage(request) -> bool:
        return request.user.is_active and request.user.has_perm(REVOKE_PERMISSION)

    def has_module_permission(self, request) -> bool:
        return self._may_manage(request)

    def has_view_permission(self, request, obj=None) -> bool:
        if not self._may_manage(request):
            return False
        return obj is None or request.user.is_superuser or obj.holder_id == request.user.pk

    def has_add_permission(self, request) -> bool:
        return self._may_manage(request)

    def has_change_permission(self, request, obj=None) -> bool:
        return False  # a key's holder and name are what it was created with; revoke it and make another

    def has_delete_permission(self, request, obj=None) -> bool:
        return False  # revoked, not deleted: the list keeps who held which key

    def has_revoke_permission(self, request) -> bool:
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
        by = f"admin: {request.user.get_username()}"
        done = sum(key.revoke(by) for key in queryset)
        self.message_user(request, f"{done} API key(s) revoked; they no longer authenticate.", messages.SUCCESS)
