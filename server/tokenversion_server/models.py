"""Revocation state and its audit trail.

Four tables, one per scope of revocation, plus the audit log and a table of identifiers already seen
(replayed back-channel logout tokens and duplicate Keycloak events):

- ``SubjectVersion``: per user, the monotonic ``token_version`` and ``last_logout_time``;
- ``RevokedSession``: per Keycloak session (``sid``), kept until no token of that session can still be alive;
- ``RealmRevocation``: per issuer, one epoch: every token issued at or before it is dead (O(1) "log out all");
- ``RevocationEvent``: append-only: who revoked what, when, why, and the versions before and after.

``ApiKey`` holds the REST API's credentials: a SHA-256 hash of each key and a short prefix, never the key.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets

from django.conf import settings
from django.db import models
from django.utils import timezone


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

    def _raw_delete(self, using):
        # What Django's deletion collector calls for a "fast" cascade delete, past delete() above.
        raise TypeError("the revocation audit trail is append-only")


class AppendOnlyManager(models.Manager.from_queryset(AppendOnlyQuerySet)):
    # Also the base manager (Meta.base_manager_name), and in migrations, so no path through the ORM writes.
    use_in_migrations = True


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
    # The actor's name as text, written with the row: it stays whatever becomes of the user.
    actor = models.CharField(max_length=255, blank=True, default="")
    # PROTECT: a staff user who revoked cannot be deleted (deactivate them); SET_NULL would rewrite the trail.
    admin_user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    reason = models.CharField(max_length=32, choices=Reason.choices)
    old_version = models.BigIntegerField(null=True, blank=True)
    new_version = models.BigIntegerField(null=True, blank=True)
    note = models.TextField(blank=True, default="")

    objects = AppendOnlyManager()

    class Meta:
        base_manager_name = "objects"
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


# New keys: "tvk_" and 40 letters and digits (238 random bits). Keys imported from DRF's authtoken (migration
# 0002) are 40 hexadecimal characters. Anything else is refused before the database is asked.
KEY_PREFIX = "tvk_"
_KEY_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_NEW_KEY = re.compile(r"tvk_[0-9A-Za-z]{40}")
_LEGACY_KEY = re.compile(r"[0-9a-f]{40}")


def key_hash(key: str) -> str:
    """SHA-256 of the key: keys are long random strings, so a fast hash is enough (no password stretching)."""
    return hashlib.sha256(key.encode("ascii")).hexdigest()


def key_lookup_prefix(key: str) -> str | None:
    """The clear part of a well-formed key that finds its row, or None for a string that is no key."""
    if _NEW_KEY.fullmatch(key):
        return key[:12]  # "tvk_" + 8 characters; 32 secret characters (190 bits) stay
    if _LEGACY_KEY.fullmatch(key):
        return key[:8]  # 32 of 160 bits shown
    return None


class ApiKeyQuerySet(models.QuerySet):
    def authenticate(self, key: str) -> ApiKey | None:
        """The active key ``key`` is, or None. The hash is compared in constant time with every row of the
        prefix, so the answer's timing tells nothing about how much of a guess was right."""
        prefix = key_lookup_prefix(key)
        if prefix is None:
            return None
        digest = key_hash(key)
        found = None
        for candidate in self.filter(prefix=prefix, revoked_at__isnull=True).select_related("holder"):
            if hmac.compare_digest(candidate.key_hash, digest):
                found = candidate
        return found


class ApiKey(models.Model):
    """A credential for ``POST /tokenversion/revocations``: it acts as its holder, with the holder's permissions
    checked at each request. Only the hash is stored; the key is shown once, to whoever created it."""

    name = models.CharField(max_length=100, help_text="what the key is for, e.g. 'SIEM rule engine'")
    prefix = models.CharField(max_length=12, db_index=True, editable=False)
    key_hash = models.CharField(max_length=64, unique=True, editable=False)
    holder = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+",
                               help_text="the user the key acts as (its revocations are audited under this name)")
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    created_by = models.CharField(max_length=255, blank=True, default="", editable=False)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)
    revoked_by = models.CharField(max_length=255, blank=True, default="", editable=False)

    objects = ApiKeyQuerySet.as_manager()

    class Meta:
        verbose_name = "API key"
        ordering = ["-created_at", "-id"]
        # No add/change/view permissions of its own: managing keys takes revoke_tokens (admin.ApiKeyAdmin), so
        # no stray "can add API key" grant can be the way to a key for somebody else.
        default_permissions = ()

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.name})"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None

    def describe(self) -> str:
        """How the audit trail names the key: its prefix and name, never the secret part."""
        return f"API key {self.prefix} '{self.name}'"

    def set_new_key(self) -> str:
        """Give this (unsaved) row a fresh key; returns the key, which the caller shows once and forgets."""
        key = KEY_PREFIX + "".join(secrets.choice(_KEY_ALPHABET) for _ in range(40))
        self.prefix, self.key_hash = key[:12], key_hash(key)
        return key

    @classmethod
    def issue(cls, holder, name: str, created_by: str) -> tuple[ApiKey, str]:
        """A new key for ``holder``: the row (hash only) and the key, which the caller shows once."""
        api_key = cls(name=name, holder=holder, created_by=created_by[:255])
        key = api_key.set_new_key()
        api_key.save(force_insert=True)
        return api_key, key

    def revoke(self, by: str) -> bool:
        """Disable the key (kept, so the list still shows who held what); False if it already was."""
        changed = ApiKey.objects.filter(pk=self.pk, revoked_at__isnull=True).update(
            revoked_at=timezone.now(), revoked_by=by[:255])
        self.refresh_from_db(fields=["revoked_at", "revoked_by"])
        return bool(changed)


class AttributeWrite(models.Model):
    """Attribute mode's outbox: a user's version still to be written into their Keycloak user attribute.

    One row per user at most: a newer bump raises ``version`` in place (it supersedes the pending one), and the
    row goes once Keycloak holds that version or more. Written in the bump's own transaction, so a committed bump
    always has its row; ``tokenversion_attribute_sync`` writes it to Keycloak outside any request.
    """

    issuer = models.CharField(max_length=255)
    subject = models.CharField(max_length=255)
    version = models.PositiveBigIntegerField()
    # When this user first had a write pending (kept while newer bumps supersede it): the backlog's age.
    created_at = models.DateTimeField(db_index=True)
    updated_at = models.DateTimeField()
    attempts = models.PositiveIntegerField(default=0)  # failed tries so far
    next_attempt_at = models.DateTimeField(db_index=True)
    last_error = models.TextField(blank=True, default="")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["issuer", "subject"], name="tv_attribute_write_unique")]
        verbose_name = "pending attribute write"
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        return f"{self.subject} -> v{self.version}"
