from __future__ import annotations

from django.db import models


class KeycloakUser(models.Model):
    """A Keycloak user as the provider knows it, keyed by issuer (realm) and subject.

    Not Django's ``AUTH_USER_MODEL``: these people never log in to the provider. The admin's staff are
    ordinary Django users, so the audit trail can name the person who revoked.
    """

    issuer = models.CharField(max_length=255)
    subject = models.CharField(max_length=255, help_text="Keycloak user id (the tokens' sub)")
    username = models.CharField(max_length=255, blank=True, default="", db_index=True)
    email = models.CharField(max_length=255, blank=True, default="", db_index=True)
    last_client_id = models.CharField(max_length=255, blank=True, default="")
    first_seen = models.DateTimeField(auto_now_add=True)
    last_seen = models.DateTimeField(auto_now=True)

    # Enough of Django's user protocol for DRF permissions when the DRF class returns this user.
    is_authenticated = True
    is_anonymous = False
    is_active = True

    class Meta:
        constraints = [models.UniqueConstraint(fields=["issuer", "subject"], name="accounts_user_unique")]
        verbose_name = "Keycloak user"

    def __str__(self) -> str:
        return self.username or self.subject

    def get_username(self) -> str:
        return self.username or self.subject
