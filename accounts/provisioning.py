"""Hooks the provider plugs into tokenversion's settings: just-in-time users, username look-up, DRF users."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.db.models import Q

from .models import KeycloakUser


def provision_user(issuer: str, subject: str, attributes: Mapping[str, str]) -> None:
    """Create or refresh the user row from what Keycloak sent to the claims endpoint.

    Writes only when something changed, so the hot login path costs one read in the common case.
    """
    wanted = {
        "username": attributes.get("username", ""),
        "email": attributes.get("email", ""),
        "last_client_id": attributes.get("client_id", ""),
    }
    wanted = {key: value for key, value in wanted.items() if value}
    user = KeycloakUser.objects.filter(issuer=issuer, subject=subject).first()
    if user is None:
        KeycloakUser.objects.bulk_create(
            [KeycloakUser(issuer=issuer, subject=subject, **wanted)], ignore_conflicts=True
        )
        return
    changed = {key: value for key, value in wanted.items() if getattr(user, key) != value}
    if changed:
        KeycloakUser.objects.filter(pk=user.pk).update(**changed)


def resolve_subject(issuer: str, identifier: str) -> str | None:
    """The subject of the one user whose subject, username or email is ``identifier``; None if not exactly one."""
    matches = list(
        KeycloakUser.objects.filter(issuer=issuer)
        .filter(Q(subject=identifier) | Q(username=identifier) | Q(email__iexact=identifier))
        .values_list("subject", flat=True)[:2]
    )
    return matches[0] if len(matches) == 1 else None


def lookup_user(claims: Mapping[str, Any]) -> KeycloakUser | None:
    """The provider's own user for a validated token (``USER_LOOKUP``), when it has one."""
    user = KeycloakUser.objects.filter(issuer=claims["iss"], subject=claims["sub"]).first()
    if user is not None:
        user.claims = claims
    return user
