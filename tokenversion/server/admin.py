"""Revocation state in the Django admin: the audit trail read-only, session revocation through the service,
and the realm-wide revocation behind a confirmation page."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse

from ..conf import get_settings
from . import services
from .models import RealmRevocation, RevocationEvent, RevokedSession, SubjectVersion


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
