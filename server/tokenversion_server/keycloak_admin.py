"""The provider's calls into Keycloak's admin API (python-keycloak), kept in one module.

Used by ``keycloak_setup`` (realm provisioning), ``sync_users`` and the admin's revocation actions, which also
end the user's Keycloak sessions: Keycloak re-runs protocol mappers on every refresh, so a version bump alone
only makes a client refresh into a fresh, valid token while its Keycloak session lives.

Configured by the Django setting ``TOKENVERSION_KEYCLOAK`` (a dict, see docs/keycloak.md). Server URL and realm
default to what ``TOKENVERSION["ISSUER"]`` names (``<server>/realms/<realm>``).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from django.conf import settings as django_settings
from keycloak.exceptions import KeycloakError as _PythonKeycloakError

from keycloak import KeycloakAdmin
from tokenversion.conf import get_settings

MAPPER_TYPE = "tokenversion-mapper"
LISTENER_ID = "tokenversion"
AUDIENCE_MAPPER_TYPE = "oidc-audience-mapper"
SUB_MAPPER_TYPE = "oidc-sub-mapper"
USER_ATTRIBUTE_MAPPER_TYPE = "oidc-usermodel-attribute-mapper"
DIRECT_MAPPER_NAME = "token version"  # the extension's mapper: calls the claims endpoint at token issue
ATTRIBUTE_MAPPER_NAME = "token version (user attribute)"  # attribute mode: Keycloak's own mapper, no Java


class KeycloakUnavailable(Exception):
    """Keycloak could not be reached, refused the admin credentials, or answered an error."""


@dataclass(frozen=True)
class KeycloakAdminSettings:
    server_url: str
    realm: str
    username: str | None = None
    password: str | None = None
    admin_realm: str = "master"
    client_id: str = "admin-cli"
    client_secret: str | None = None
    timeout: int = 10

    @property
    def configured(self) -> bool:
        return bool(self.client_secret or (self.username and self.password))


def split_issuer(issuer: str) -> tuple[str, str]:
    """``http://host/realms/demo`` -> (``http://host``, ``demo``); a realm issuer is the only shape Keycloak has."""
    base, sep, realm = issuer.rstrip("/").rpartition("/realms/")
    if not sep or not realm or "/" in realm:
        raise ValueError(f"not a Keycloak realm issuer: {issuer!r}")
    return base, realm


def admin_settings() -> KeycloakAdminSettings:
    raw: dict[str, Any] = dict(getattr(django_settings, "TOKENVERSION_KEYCLOAK", None) or {})
    unknown = set(raw) - {"SERVER_URL", "REALM", "USERNAME", "PASSWORD", "ADMIN_REALM", "CLIENT_ID",
                          "CLIENT_SECRET", "TIMEOUT"}
    if unknown:
        raise KeycloakUnavailable(f"unknown TOKENVERSION_KEYCLOAK settings: {', '.join(sorted(unknown))}")
    server, realm = raw.get("SERVER_URL"), raw.get("REALM")
    if not (server and realm):
        issuer = get_settings().issuer
        if not issuer:
            raise KeycloakUnavailable("TOKENVERSION_KEYCLOAK has no SERVER_URL/REALM and TOKENVERSION has no ISSUER")
        derived_server, derived_realm = split_issuer(issuer)
        server, realm = server or derived_server, realm or derived_realm
    return KeycloakAdminSettings(
        server_url=server.rstrip("/") + "/",
        realm=realm,
        username=raw.get("USERNAME") or None,
        password=raw.get("PASSWORD") or None,
        admin_realm=raw.get("ADMIN_REALM") or "master",
        client_id=raw.get("CLIENT_ID") or "admin-cli",
        client_secret=raw.get("CLIENT_SECRET") or None,
        timeout=int(raw.get("TIMEOUT") or 10),
    )


def admin_client(conf: KeycloakAdminSettings | None = None) -> KeycloakAdmin:
    """An admin client for the configured realm, authenticated at once (so bad credentials fail here)."""
    conf = conf or admin_settings()
    if not conf.configured:
        raise KeycloakUnavailable(
            "no Keycloak admin credentials: set TOKENVERSION_KEYCLOAK USERNAME/PASSWORD or CLIENT_SECRET"
        )
    try:
        admin = KeycloakAdmin(
            server_url=conf.server_url,
            username=conf.username,
            password=conf.password,
            client_id=conf.client_id,
            client_secret_key=conf.client_secret,
            realm_name=conf.realm,
            user_realm_name=conf.admin_realm,
            timeout=conf.timeout,
        )
        admin.connection.get_token()
    except (_PythonKeycloakError, OSError) as exc:
        raise KeycloakUnavailable(f"Keycloak admin login at {conf.server_url} failed: {_describe(exc)}") from None
    return admin


def end_user_sessions(subject: str, admin: KeycloakAdmin | None = None) -> int:
    """End every Keycloak session of ``subject`` (admin "Sign out"); returns how many there were.

    Keycloak then sends a back-channel logout per session and sets the user's not-before, so refresh tokens
    of those sessions stop working.
    """
    admin = admin or admin_client()
    try:
        sessions = admin.get_sessions(subject)
        admin.user_logout(subject)
    except (_PythonKeycloakError, OSError) as exc:
        raise KeycloakUnavailable(f"ending the Keycloak sessions of {subject} failed: {_describe(exc)}") from None
    return len(sessions)


@dataclass(frozen=True)
class UserSession:
    """One Keycloak session of a user, as the admin's confirmation page shows it."""

    id: str
    ip_address: str = ""
    started: datetime | None = None
    last_access: datetime | None = None
    clients: tuple[str, ...] = ()


def user_sessions(subject: str, admin: KeycloakAdmin | None = None) -> list[UserSession]:
    """The Keycloak sessions of ``subject``: what ``end_user_sessions`` would end (read only)."""
    admin = admin or admin_client()
    try:
        raw = admin.get_sessions(subject)
    except (_PythonKeycloakError, OSError) as exc:
        raise KeycloakUnavailable(f"listing the Keycloak sessions of {subject} failed: {_describe(exc)}") from None

    def when(millis: Any) -> datetime | None:  # Keycloak gives epoch milliseconds
        return datetime.fromtimestamp(millis / 1000, tz=UTC) if isinstance(millis, int | float) else None

    return [UserSession(id=str(s.get("id", "")), ip_address=str(s.get("ipAddress") or ""),
                        started=when(s.get("start")), last_access=when(s.get("lastAccess")),
                        clients=tuple(sorted((s.get("clients") or {}).values())))
            for s in raw]


# Ending one session runs inside a revocation request: wait at most this long for Keycloak, per call.
SESSION_END_TIMEOUT = 5


def end_session(session_id: str, conf: KeycloakAdminSettings | None = None) -> bool:
    """End one Keycloak user session (``sid``), online and offline; True when Keycloak had it.

    ``DELETE /admin/realms/{realm}/sessions/{sid}`` (``?isOffline=true`` for the offline session of that id):
    204 when it existed, 404 when not. Either way no session of that id is left to mint tokens on refresh,
    so both count as done; anything else (no credentials, unreachable, another status) raises
    ``KeycloakUnavailable``. Keycloak sends its back-channel logout for the session before it answers.
    """
    conf = conf or admin_settings()
    admin = admin_client(replace(conf, timeout=min(conf.timeout, SESSION_END_TIMEOUT)))
    path = f"admin/realms/{quote(conf.realm, safe='')}/sessions/{quote(session_id, safe='')}"
    found = False
    for params in ({}, {"isOffline": "true"}):
        try:
            response = admin.connection.raw_delete(path, **params)
        except (_PythonKeycloakError, OSError) as exc:
            raise KeycloakUnavailable(f"ending Keycloak session {session_id} failed: {_describe(exc)}") from None
        if response.status_code in (200, 204):
            found = True
        elif response.status_code != 404:
            raise KeycloakUnavailable(f"ending Keycloak session {session_id} failed: HTTP {response.status_code}")
    return found


def _describe(exc: BaseException) -> str:
    code = getattr(exc, "response_code", None)
    message = getattr(exc, "error_message", None) or str(exc)
    if isinstance(message, bytes):
        message = message.decode("utf-8", "replace")
    return f"HTTP {code}: {message}"[:300] if code else str(message)[:300]


# Realm provisioning ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RealmSpec:
    """What ``keycloak_setup`` makes true in a realm. Everything else in the realm is left alone."""

    realm: str
    login_clients: tuple[str, ...]  # clients users sign in through: back-channel logout + the tokenversion scope
    audience: str  # the APIs' audience: a client of that id, put into access tokens by an audience mapper
    provider_url: str  # base URL at which Keycloak reaches the provider
    mapper_secret: str
    failure_policy: str = "omit_claim"
    claim: str = "token_version"
    scope_name: str = "tokenversion"
    connect_timeout_ms: int = 300
    read_timeout_ms: int = 500
    create_realm: bool = False
    direct_access_grants: bool = False  # password grant on the login clients: tests and demos only
    redirect_uris: tuple[str, ...] = field(default_factory=tuple)
    # Attribute mode: Keycloak's User Attribute mapper reads the version the provider writes into the user
    # attribute ``attribute_name`` (declared admin-only in the user profile); the extension's mapper is removed.
    attribute_mode: bool = False
    attribute_name: str = "token_version"
    # The version mapper's mode (issue 12): "cached" (a per-node map fed by the provider's feed, which needs a feed
    # secret) or "direct" (one claims call per token request).
    mapper_mode: str = "cached"
    feed_secret: str = ""
    max_staleness_ms: int = 2000

    @property
    def claims_url(self) -> str:
        return self.provider_url.rstrip("/") + "/tokenversion/claims"

    @property
    def backchannel_url(self) -> str:
        return self.provider_url.rstrip("/") + "/tokenversion/backchannel-logout"

    def mode_config(self) -> dict[str, str]:
        """The version mapper's mode keys (keycloak/README.md); direct mode leaves the cached mode's keys alone."""
        if self.mapper_mode == "direct":
            return {"tokenversion.mode": "direct"}
        return {"tokenversion.mode": "cached", "tokenversion.feed.secret": self.feed_secret,
                "tokenversion.max.staleness.ms": str(self.max_staleness_ms)}

    def mappers(self) -> list[dict[str, Any]]:
        return [
            {
                "name": "token version",
                "protocol": "openid-connect",
                "protocolMapper": MAPPER_TYPE,
                "config": {
                    "tokenversion.endpoint.url": self.claims_url,
                    "tokenversion.secret": self.mapper_secret,
                    "tokenversion.connect.timeout.ms": str(self.connect_timeout_ms),
                    "tokenversion.read.timeout.ms": str(self.read_timeout_ms),
                    "tokenversion.failure.policy": self.failure_policy,
                    **self.mode_config(),
                    "claim.name": self.claim,
                    "access.token.claim": "true",
                    "id.token.claim": "false",
                    "userinfo.token.claim": "false",
                    "introspection.token.claim": "true",
                    "lightweight.claim": "true",
                },
            },
            {
                "name": f"audience {self.audience}",
                "protocol": "openid-connect",
                "protocolMapper": AUDIENCE_MAPPER_TYPE,
                "config": {
                    "included.client.audience": self.audience,
                    "access.token.claim": "true",
                    "id.token.claim": "false",
                    "introspection.token.claim": "true",
                    "lightweight.claim": "true",
                },
            },
            {
                # Keycloak's own "sub" mapper (client scope "basic") is off for lightweight access tokens, which
                # then have no sub; services need it to find the user's version (seen on 26.4 to 26.7).
                "name": "subject (lightweight)",
                "protocol": "openid-connect",
                "protocolMapper": SUB_MAPPER_TYPE,
                "config": {
                    "access.token.claim": "true",
                    "introspection.token.claim": "true",
                    "lightweight.claim": "true",
                },
            },
        ]


    def attribute_mapper(self) -> dict[str, Any]:
        """Keycloak's own User Attribute mapper for the version: a JSON number, in (lightweight) access tokens."""
        return {
            "name": ATTRIBUTE_MAPPER_NAME,
            "protocol": "openid-connect",
            "protocolMapper": USER_ATTRIBUTE_MAPPER_TYPE,
            "config": {
                "user.attribute": self.attribute_name,
                "claim.name": self.claim,
                "jsonType.label": "long",
                "multivalued": "false",
                "aggregate.attrs": "false",
                "access.token.claim": "true",
                "id.token.claim": "false",
                "userinfo.token.claim": "false",
                "introspection.token.claim": "true",
                "lightweight.claim": "true",
            },
        }

    def wanted_mappers(self) -> list[dict[str, Any]]:
        """``mappers()``, with the version mapper of the chosen mode."""
        if not self.attribute_mode:
            return self.mappers()
        return [self.attribute_mapper() if m["name"] == DIRECT_MAPPER_NAME else m for m in self.mappers()]

    def retired_mappers(self) -> tuple[str, ...]:
        """Version mappers of the other mode, removed when found: two would write one claim."""
        return (DIRECT_MAPPER_NAME,) if self.attribute_mode else (ATTRIBUTE_MAPPER_NAME,)

    def profile_attribute(self) -> dict[str, Any]:
        """The user-profile declaration: only admins view or edit it, so no user changes their own version
        (Keycloak 24+ drops undeclared attributes on update unless unmanaged attributes are allowed)."""
        return {
            "name": self.attribute_name,
            "displayName": "Token version (tokenversion)",
            "permissions": {"view": ["admin"], "edit": ["admin"]},
            "multivalued": False,
        }


class RealmSetup:
    """Compares a realm with a ``RealmSpec`` and changes only what differs; reports each change in words."""

    def __init__(self, admin: KeycloakAdmin, spec: RealmSpec, dry_run: bool = False) -> None:
        self.admin = admin
        self.spec = spec
        self.dry_run = dry_run
        self.changes: list[str] = []

    def run(self) -> list[str]:
        try:
            if not self._realm():
                self.changes.append("configure the new realm: clients, client scope, mappers (dry run stops here)")
                return self.changes
            self._audience_client()
            if self.spec.attribute_mode:
                self._user_profile()
            scope_id = self._scope()
            for client_id in self.spec.login_clients:
                self._login_client(client_id, scope_id)
        except (_PythonKeycloakError, OSError) as exc:
            raise KeycloakUnavailable(f"Keycloak refused a change: {_describe(exc)}") from None
        return self.changes

    def _change(self, what: str) -> bool:
        """Record a change; False in a dry run, so the caller does not make it."""
        self.changes.append(what)
        return not self.dry_run

    def _realm(self) -> bool:
        """False when the realm does not exist yet (dry run): nothing else can be compared."""
        realm = self._get_realm()
        if realm is None:
            if not self.spec.create_realm:
                raise KeycloakUnavailable(f"realm {self.spec.realm!r} does not exist (use --create-realm)")
            if not self._change(f"create realm {self.spec.realm}"):
                return False
            self.admin.create_realm({"realm": self.spec.realm, "enabled": True})
            realm = self.admin.get_realm(self.spec.realm)
        listeners = list(realm.get("eventsListeners") or [])
        if LISTENER_ID not in listeners and self._change(f"enable event listener {LISTENER_ID}"):
            self.admin.update_realm(self.spec.realm, {"eventsListeners": [*listeners, LISTENER_ID]})
        return True

    def _get_realm(self) -> dict | None:
        names = {r["realm"] for r in self.admin.get_realms()}
        return self.admin.get_realm(self.spec.realm) if self.spec.realm in names else None

    def _audience_client(self) -> None:
        if self._client(self.spec.audience) is None and self._change(f"create client {self.spec.audience}"):
            self.admin.create_client({
                "clientId": self.spec.audience,
                "name": "APIs protected by tokenversion (audience; confidential, for introspection)",
                "protocol": "openid-connect",
                "publicClient": False,
                "standardFlowEnabled": False,
                "directAccessGrantsEnabled": False,
                "serviceAccountsEnabled": False,
            })

    def _scope(self) -> str | None:
        scope = self.admin.get_client_scope_by_name(self.spec.scope_name)
        if scope is None:
            if not self._change(f"create client scope {self.spec.scope_name}"):
                self.changes.extend(f"add mapper '{m['name']}' to client scope {self.spec.scope_name}"
                                    for m in self.spec.wanted_mappers())
                return None
            scope_id = self.admin.create_client_scope({
                "name": self.spec.scope_name,
                "protocol": "openid-connect",
                "description": "token_version and the APIs' audience (tokenversion)",
                "attributes": {"include.in.token.scope": "false", "display.on.consent.screen": "false"},
            })
        else:
            scope_id = scope["id"]
        existing = {m["name"]: m for m in self.admin.get_mappers_from_client_scope(scope_id)}
        self._retire_mappers(scope_id, existing)
        for wanted in self.spec.wanted_mappers():
            have = existing.get(wanted["name"])
            if have is None:
                if self._change(f"add mapper '{wanted['name']}' to client scope {self.spec.scope_name}"):
                    self.admin.add_mapper_to_client_scope(scope_id, wanted)
                continue
            differs = sorted(k for k, v in wanted["config"].items() if (have.get("config") or {}).get(k) != v)
            if have.get("protocolMapper") != wanted["protocolMapper"]:
                differs.append("protocolMapper")
            if differs and self._change(f"update mapper '{wanted['name']}': {', '.join(differs)}"):
                self.admin.update_mapper_in_client_scope(
                    scope_id, have["id"], {**have, **wanted, "config": {**(have.get("config") or {}),
                                                                         **wanted["config"]}}
                )
        return scope_id

    def _retire_mappers(self, scope_id: str, existing: dict[str, dict]) -> None:
        for name in self.spec.retired_mappers():
            have = existing.get(name)
            if have is not None and self._change(f"remove mapper '{name}' from client scope {self.spec.scope_name}"):
                self.admin.delete_mapper_from_client_scope(scope_id, have["id"])

    def _user_profile(self) -> None:
        """Declare the version attribute in the realm's user profile, admin-only; other attributes untouched."""
        profile = self.admin.get_realm_users_profile()
        attributes = list(profile.get("attributes") or [])
        wanted = self.spec.profile_attribute()
        at = next((i for i, a in enumerate(attributes) if a.get("name") == wanted["name"]), None)
        if at is None:
            if self._change(f"declare user attribute {wanted['name']} in the user profile (admin-only)"):
                self.admin.update_realm_users_profile({**profile, "attributes": [*attributes, wanted]})
            return
        have = attributes[at]
        differs = sorted(k for k in ("permissions", "multivalued") if have.get(k) != wanted[k])
        if differs and self._change(f"update user profile attribute {wanted['name']}: {', '.join(differs)}"):
            attributes[at] = {**have, "permissions": wanted["permissions"], "multivalued": wanted["multivalued"]}
            self.admin.update_realm_users_profile({**profile, "attributes": attributes})

    def _client(self, client_id: str) -> dict | None:
        # get_client_id() walks every client; the search parameter asks Keycloak for just this one.
        found = self.admin.connection.raw_get(
            f"admin/realms/{quote(self.spec.realm)}/clients", clientId=client_id, search="false"
        )
        if found.status_code != 200:
            raise KeycloakUnavailable(f"listing clients failed: HTTP {found.status_code}")
        matches = [c for c in found.json() if c.get("clientId") == client_id]
        return matches[0] if matches else None

    def _login_client(self, client_id: str, scope_id: str | None) -> None:
        attributes = {
            "backchannel.logout.url": self.spec.backchannel_url,
            "backchannel.logout.session.required": "true",
        }
        client = self._client(client_id)
        if client is None:
            if not self._change(f"create client {client_id}"):
                return
            self.admin.create_client({
                "clientId": client_id,
                "protocol": "openid-connect",
                "publicClient": True,
                "standardFlowEnabled": True,
                "directAccessGrantsEnabled": self.spec.direct_access_grants,
                "redirectUris": list(self.spec.redirect_uris),
                "frontchannelLogout": False,
                "attributes": attributes,
            })
            client = self._client(client_id)
            assert client is not None
        else:
            current = client.get("attributes") or {}
            differs = sorted(k for k, v in attributes.items() if current.get(k) != v)
            updated = dict(client)
            if differs:
                updated["attributes"] = {**current, **attributes}
            if client.get("frontchannelLogout"):
                differs.append("frontchannelLogout off")
                updated["frontchannelLogout"] = False
            if self.spec.direct_access_grants and not client.get("directAccessGrantsEnabled"):
                differs.append("directAccessGrantsEnabled")
                updated["directAccessGrantsEnabled"] = True
            if differs and self._change(f"update client {client_id}: {', '.join(differs)}"):
                self.admin.update_client(client["id"], updated)
        if scope_id is None:
            return
        defaults = {s["id"] for s in self.admin.get_client_default_client_scopes(client["id"])}
        if scope_id not in defaults and self._change(
            f"add client scope {self.spec.scope_name} to client {client_id} (default)"
        ):
            self.admin.add_client_default_client_scope(
                client["id"], scope_id, {"realm": self.spec.realm, "client": client["id"], "clientScopeId": scope_id}
            )
