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
    return (_check_server(conf) + _check_signing_key(conf) + _check_security_webhook(conf)
            + _check_escalation(conf))


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
    return found


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


def _check_security_webhook(conf):
    """E055: a webhook URL without a secret (nothing would be sent: the body must be signed); E056: a URL that
    is not http(s); W057: a short secret; W058: plain HTTP to another host (the events name users and
    addresses)."""
    url, secret = conf.security_webhook_url, conf.security_webhook_secret
    if not url:
        return []
    found = []
    if not secret:
        found.append(Error("TOKENVERSION_SERVER['SECURITY_WEBHOOK_URL'] is set without SECURITY_WEBHOOK_SECRET: "
                           "security events are not sent unsigned, so none is sent.",
                           hint="Set SECURITY_WEBHOOK_SECRET (32 characters or more) and give it to the receiver "
                                "(docs/operations.md, \"Security events\").", id="tokenversion.E055"))
    elif len(secret) < 32:
        found.append(Warning("TOKENVERSION_SERVER['SECURITY_WEBHOOK_SECRET'] is shorter than 32 characters.",
                             id="tokenversion.W057"))
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        found.append(Error(f"TOKENVERSION_SERVER['SECURITY_WEBHOOK_URL'] {url!r} is not an http(s) URL: no "
                           "security event is sent.", id="tokenversion.E056"))
    elif parts.scheme == "http" and parts.hostname not in ("127.0.0.1", "localhost", "::1"):
        found.append(Warning("TOKENVERSION_SERVER['SECURITY_WEBHOOK_URL'] is plain HTTP to another host: the "
                             "events (users, client addresses) cross the network readable.",
                             hint="Use https.", id="tokenversion.W058"))
    return found


def _check_escalation(conf):
    """E057: an escalation policy this version does not know (it would silently do nothing)."""
    from .escalation import POLICIES

    if conf.escalation_policy and conf.escalation_policy not in POLICIES:
        return [Error(f"TOKENVERSION_SERVER['ESCALATION_POLICY'] is {conf.escalation_policy!r}: not a policy "
                      f"({', '.join(POLICIES)}, or None for off).", id="tokenversion.E057")]
    return []
