"""The user a service without a user database gets: who the token says, and its roles."""

from __future__ import annotations

from collections.abc import Mapping
from functools import cached_property
from typing import Any


class TokenUser:
    """A light, read-only user built from validated claims, usable by DRF permissions.

    ``is_authenticated`` is True, so ``IsAuthenticated`` works; roles come from ``realm_access.roles`` and,
    when ``ROLES_CLIENT`` is set, from ``resource_access[ROLES_CLIENT].roles``.

    One is built for every authenticated request, so only the subject is read up front; the username, the
    email and the roles are read from the claims the first time something asks for them.
    """

    is_authenticated = True
    is_anonymous = False
    is_active = True
    is_staff = False
    is_superuser = False

    def __init__(self, claims: Mapping[str, Any], roles_client: str | None = None) -> None:
        self.claims = claims
        self.subject: str = claims["sub"]
        self._roles_client = roles_client

    @cached_property
    def username(self) -> str:
        return _str(self.claims.get("preferred_username")) or self.subject

    @cached_property
    def email(self) -> str:
        return _str(self.claims.get("email"))

    @cached_property
    def roles(self) -> frozenset[str]:
        return frozenset(_roles(self.claims, self._roles_client))

    @property
    def pk(self) -> str:
        return self.subject

    id = pk

    def get_username(self) -> str:
        return self.username

    def has_role(self, role: str) -> bool:
        return role in self.roles

    def has_perm(self, perm: str, obj: Any = None) -> bool:
        return False

    def has_perms(self, perms: Any, obj: Any = None) -> bool:
        return False

    def __str__(self) -> str:
        return self.username

    def __repr__(self) -> str:
        return f"<TokenUser {self.subject}>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TokenUser) and other.subject == self.subject

    def __hash__(self) -> int:
        return hash(self.subject)


def _str(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _roles(claims: Mapping[str, Any], client: str | None) -> list[str]:
    found: list[str] = []
    sources = [claims.get("realm_access")]
    access = claims.get("resource_access")
    if client and isinstance(access, dict):
        sources.append(access.get(client))
    for source in sources:
        if isinstance(source, dict) and isinstance(source.get("roles"), list):
            found.extend(r for r in source["roles"] if isinstance(r, str))
    return found
