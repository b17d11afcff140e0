"""Revocation state and its audit trail.

Four tables, one per scope of revocation, plus the audit log and a table of identifiers already seen
(replayed back-channel logout tokens and duplicate Keycloak events):

- ``SubjectVersion``: per user, the monotonic ``token_version`` and ``last_logout_time``;
- ``RevokedSession``: per Keycloak session (``sid``), kept until no token of that session can still be alive;
- ``RealmRevocation``: per issuer, one epoch: every token issued at or before it is dead (O(1) "log out all");
- ``RevocationEvent``: append-only: who revoked what, when, why, and the versions before and after.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models


class SubjectVersion(models.Model):
    issuer = models.CharField(max_length=255)
    subject = models.CharField(max_length=255)
    token_version = models.PositiveBigIntegerField(default=0)
    last_logout_time = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["issuer", "subject"], name="tv_subject_unique")]
        verbose_name = "token version"

    def __str__(self) -> str:
        return f"{self.subject} v{self.token_version}"


class RevokedSession(models.Model):
    issuer = models.CharField(max_length=255)
    session_id = models.CharField(max_length=255)
    subject = models.CharField(max_length=255, blank=True, default="")
    revoked_at = models.DateTimeField()
    # After this instant no access token of the session can still be valid, so the row can go.
    expires_at = models.DateTimeField(db_index=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["issuer", "session_id"], name="tv_session_unique")]

    def __str__(self) -> str:
        return f"session {self.session_id}"


class RealmRevocation(models.Model):
    issuer = models.CharField(max_length=255, unique=True)
    not_before = models.DateTimeField()
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"{self.issuer} not before {self.not_before.isoformat()}"


class SeenIdentifier(models.Model):
    """Identifiers that must be accepted once only: back-channel logout ``jti`` values, Keycloak event ids."""

    KIND_LOGOUT_TOKEN = "logout_jti"
    KIND_EVENT = "event"

    kind = models.CharField(max_length=16)
    issuer = models.CharField(max_length=255)
    value = models.CharField(max_length=255)
    expires_at = models.DateTimeField(db_index=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["kind", "issuer", "value"], name="tv_seen_unique"),
        ]


class AppendOnlyQuerySet(models.QuerySet):
    def update(self, **kwargs):
        raise TypeError("the revocation audit trail is append-only")

    def delete(self):
        raise TypeError("the revocation audit trail is append-only")


class RevocationEvent(models.Model):
    class Scope(models.TextChoices):
        SESSION = "session", "session"
        USER = "user", "user"
        REALM = "realm", "realm"

    class ActorType(models.TextChoices):
        ADMIN = "admin", "admin user"
        API = "api", "API client"
        CLI = "cli", "command line"
        KEYCLOAK = "keycloak", "Keycloak event"
        SYSTEM = "system", "system"

    class Reason(models.TextChoices):
        LOGOUT = "logout", "logout"
        COMPROMISE = "compromise", "compromise"
        PASSWORD_CHANGE = "password_change", "password change"
        ADMIN = "admin", "admin"

    created_at = models.DateTimeField(db_index=True)
    scope = models.CharField(max_length=16, choices=Scope.choices)
    issuer = models.CharField(max_length=255)
    subject = models.CharField(max_length=255, blank=True, default="", db_index=True)
    session_id = models.CharField(max_length=255, blank=True, default="")
    actor_type = models.CharField(max_length=16, choices=ActorType.choices)
    actor = models.CharField(max_length=255, blank=True, default="")
    admin_user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    reason = models.CharField(max_length=32, choices=Reason.choices)
    old_version = models.BigIntegerField(null=True, blank=True)
    new_version = models.BigIntegerField(null=True, blank=True)
    note = models.TextField(blank=True, default="")

    objects = AppendOnlyQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        permissions = [("revoke_tokens", "Can revoke tokens (sessions, users, realm)")]

    def save(self, *args, **kwargs):
        if not self._state.adding:
            raise TypeError("the revocation audit trail is append-only")
        # An INSERT, always: a new object given an existing id must fail, not overwrite that row.
        kwargs["force_insert"] = True
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise TypeError("the revocation audit trail is append-only")

    def __str__(self) -> str:
        who = self.subject or self.session_id or self.issuer
        return f"{self.created_at:%Y-%m-%d %H:%M:%S} {self.scope} {who} ({self.reason})"
