"""The provider's system checks (ids in the ``tokenversion`` namespace, as before the split)."""

from __future__ import annotations

import os

from django.core.checks import Error, Tags, Warning, register
from django.core.exceptions import ImproperlyConfigured

from tokenversion.conf import get_settings

from .conf import get_server_settings


@register(Tags.security, "tokenversion")
def check_provider_settings(app_configs=None, **kwargs):
    """The provider's own settings (``TOKENVERSION_SERVER``): its secrets and the back-channel receiver."""
    try:
        get_settings()
    except (ImproperlyConfigured, TypeError, ValueError, AttributeError):
        return []  # tokenversion.E000 (the service side's check) reports it
    try:
        conf = get_server_settings()
    except (ImproperlyConfigured, TypeError, ValueError, AttributeError) as exc:
        return [Error(str(exc), id="tokenversion.E000")]  # the same id: these settings cannot be read
    return _check_server(conf) + _check_signing_key(conf) + _check_attribute_mode(conf)


def _check_attribute_mode(conf):
    """W045: attribute mode without Keycloak admin credentials: every queued write would fail."""
    if not conf.attribute_sync:
        return []
    from .keycloak_admin import KeycloakUnavailable, admin_settings

    try:
        configured = admin_settings().configured
        why = "has no credentials (USERNAME/PASSWORD or CLIENT_SECRET)"
    except KeycloakUnavailable as exc:
        configured, why = False, f"cannot be read: {exc}"
    if configured:
        return []
    return [Warning(f"TOKENVERSION_SERVER['ATTRIBUTE_SYNC'] is on but TOKENVERSION_KEYCLOAK {why}: "
                    "tokenversion_attribute_sync cannot write any version into Keycloak, so bumped users' new "
                    "tokens keep their old version.",
                    hint="docs/keycloak.md#attribute-mode-no-java-in-the-token-path", id="tokenversion.W045")]


def _check_server(conf):
    found = []
    for name, secrets in (("MAPPER_SECRETS", conf.mapper_secrets), ("EVENT_SECRETS", conf.event_secrets)):
        if not secrets:
            found.append(Warning(f"TOKENVERSION_SERVER['{name}'] is empty: that endpoint refuses every call.",
                                 id="tokenversion.W006"))
        elif any(len(s) < 32 for s in secrets):
            found.append(Warning(f"A secret in TOKENVERSION_SERVER['{name}'] is shorter than 32 characters.",
                                 id="tokenversion.W007"))
    if not conf.backchannel_audience:
        found.append(Warning("TOKENVERSION_SERVER['BACKCHANNEL_AUDIENCE'] is empty: the back-channel logout receiver "
                             "refuses every logout token, so Keycloak logouts revoke nothing.",
                             hint="List the Keycloak client ids users log in through (docs/backchannel-logout.md).",
                             id="tokenversion.W009"))
    if set(conf.mapper_secrets) & set(conf.event_secrets):
        found.append(Warning("A secret is shared between MAPPER_SECRETS and EVENT_SECRETS: the mapper's "
                             "secret then allows revoking.", id="tokenversion.W008"))
    feed_secrets = conf.feed_secrets
    shared = set(feed_secrets) & (set(conf.mapper_secrets) | set(conf.event_secrets))
    if shared or any(len(s) < 32 for s in feed_secrets):
        found.append(Warning("A secret in TOKENVERSION_SERVER['FEED_SECRETS'] is shorter than 32 characters or also a "
                             "mapper or event secret: every service holds the feed secret.",
                             hint="Give the feed its own long secret (docs/scaling.md).", id="tokenversion.W010"))
    if feed_secrets and conf.feed_max_wait < CACHED_MAPPER_WAIT:
        found.append(Warning(f"TOKENVERSION_SERVER['FEED_MAX_WAIT'] is {conf.feed_max_wait:g} s: Keycloak's version "
                             f"mapper in cached mode long-polls for {CACHED_MAPPER_WAIT:g} s (half its default "
                             "max staleness), so the feed refuses its polls and every token issue falls back to a "
                             "claims call.", hint="Keep FEED_MAX_WAIT at 1 s or more (default 25), or lower the "
                             "mappers' tokenversion.max.staleness.ms to at most twice it (keycloak/README.md).",
                             id="tokenversion.W040"))
    return found


# The wait of the cached mapper's long-poll with its default max staleness of 2 s (keycloak/.../FeedFollower.java).
CACHED_MAPPER_WAIT = 1.0


def _check_signing_key(conf):
    """E010: Redis publication without a usable signing key; W021: a key file others can read."""
    if not conf.redis_url and not conf.feed_signing_key:
        return []
    from .publish import feed_signer

    try:
        feed_signer()
    except ImproperlyConfigured as exc:
        return [Error(f"{exc}.", hint="manage.py tokenversion_feed_keygen --out <file>, then set "
                                      "TOKENVERSION_FEED_SIGNING_KEY_FILE (docs/scaling.md).",
                      id="tokenversion.E010")]
    key = conf.feed_signing_key
    if "-----BEGIN" not in key:
        try:
            mode = os.stat(key).st_mode
        except OSError:
            mode = 0
        if mode & 0o077:
            return [Warning(f"The feed signing key file {key!r} can be read by other users (mode "
                            f"{mode & 0o777:o}).", hint="chmod 600 it.", id="tokenversion.W021")]
    return []
