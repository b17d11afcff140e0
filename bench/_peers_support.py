"""The small adaptations bench/peers.py needs to run each peer as its documentation configures it.

Imported by dotted path from Django settings (``AUTH_TOKEN_CLASSES``), so it lives in a module of its own;
import it only after Django is set up (the peers read their settings at import time).

Nothing here changes what a peer checks. The two "stateless" subclasses replace only the user step, for
peers that have no stateless mode of their own (simplejwt has one: ``JWTStatelessUserAuthentication``).
"""

from __future__ import annotations

from typing import Any

from drf_keycloak.authentication import KeycloakAuthBackend
from oidc_auth.authentication import JSONWebTokenAuthentication
from rest_framework_simplejwt.authentication import JWTStatelessUserAuthentication
from rest_framework_simplejwt.exceptions import InvalidToken, TokenError
from rest_framework_simplejwt.tokens import AccessToken


class KeycloakAccessToken(AccessToken):
    """simplejwt's access token, told Keycloak's type: ``TOKEN_TYPE_CLAIM = "typ"`` must read ``Bearer``
    (simplejwt's own tokens say ``token_type: access``). Keeps simplejwt's type check instead of turning it
    off with ``TOKEN_TYPE_CLAIM = None``."""

    token_type = "Bearer"


class StaticKeyAccessToken(KeycloakAccessToken):
    """The same token with the realm's public key given once as simplejwt's ``VERIFYING_KEY`` instead of
    ``JWK_URL``: no key rotation, but no ``PyJWKClient`` lookup, which decodes the whole token a second time
    to read its ``kid``. ``peers.py`` sets the backend (simplejwt's settings are global, one per process)."""

    _token_backend = None


class StaticKeyStatelessAuthentication(JWTStatelessUserAuthentication):
    """simplejwt's stateless class over ``StaticKeyAccessToken`` (what ``AUTH_TOKEN_CLASSES`` would name)."""

    def get_validated_token(self, raw_token: bytes) -> StaticKeyAccessToken:
        try:
            return StaticKeyAccessToken(raw_token)
        except TokenError as exc:
            raise InvalidToken(exc.args[0]) from exc


class ClaimsUser:
    """A user built from the claims alone, as a stateless class returns (no database)."""

    is_authenticated = True
    is_active = True

    def __init__(self, claims: Any) -> None:
        self.claims = claims
        self.pk = self.id = claims["sub"]


class OidcStatelessAuthentication(JSONWebTokenAuthentication):
    """drf-oidc-auth without its user step: its ``authenticate`` with ``OIDC_RESOLVE_USER_FUNCTION`` replaced
    by the claims user (the function is one global setting, and the benchmark runs both variants at once)."""

    def authenticate(self, request: Any) -> tuple[ClaimsUser, Any] | None:
        jwt_value = self.get_jwt_value(request)
        if jwt_value is None:
            return None
        payload = self.decode_jwt(jwt_value)
        self.validate_claims(payload)
        return ClaimsUser(payload), payload


class KeycloakStatelessBackend(KeycloakAuthBackend):
    """drf-keycloak without ``get_or_create`` of a Django user (it has no stateless mode)."""

    def get_user_or_create(self, validated_token: Any) -> ClaimsUser:
        return ClaimsUser(validated_token)
