"""Check tokenversion.W030 / E030: development secrets in use (issue 9 item 7).

A development secret is one anybody can know: a value once written in this repository (recognised by its
SHA-256, so the value itself is no longer in any file that ships), or, with ``DEBUG`` off, a value from the
local development file ``var/dev.env`` (``provider/devenv.py``), which was never meant to leave a laptop.
A warning for ``manage.py check`` (so development still starts), an error under ``check --deploy``.
"""

from __future__ import annotations

import hashlib

from django.conf import settings
from django.core.checks import Error, Tags, Warning, register

# SHA-256 of the development values provider/settings.py used to fall back to with DJANGO_DEBUG=1 (until
# issue 11): the Django secret key, the mapper secret and the event secret. Anybody with the repository's
# history has them.
PUBLISHED_SHA256 = frozenset({
    "a9450ed2fce1ecf50fc778200df95ee6dde541d0cb4d953b5208082621421622",
    "d13326222827443e0927bcb3ca0fbcca5c81da96b35050cb5d0f4bcab2c5e2f6",
    "f81a8af0a7e526ab3b034d5d517ed8a0f5c3d1fa5ca0261f09a504db46ff581a",
})


def _in_use() -> dict[str, list[str]]:
    """Environment variable name -> the secrets it holds, as the running settings have them."""
    # The provider's keys: TOKENVERSION_SERVER, over the deprecated place in TOKENVERSION (W013).
    conf = {**(getattr(settings, "TOKENVERSION", {}) or {}), **(getattr(settings, "TOKENVERSION_SERVER", {}) or {})}
    return {
        "DJANGO_SECRET_KEY": [settings.SECRET_KEY, *list(getattr(settings, "SECRET_KEY_FALLBACKS", []))],
        "TOKENVERSION_MAPPER_SECRETS": list(conf.get("MAPPER_SECRETS") or []),
        "TOKENVERSION_EVENT_SECRETS": list(conf.get("EVENT_SECRETS") or []),
        "TOKENVERSION_FEED_SECRETS": list(conf.get("FEED_SECRETS") or []),
    }


def _dev_env_secrets() -> set[str]:
    try:
        from provider import devenv
    except ImportError:  # tokenversion_server outside this repository's provider project
        return set()
    values = devenv.read(devenv.DEV_ENV)
    return {secret.strip() for name in devenv.SECRET_VARIABLES for secret in values.get(name, "").split(",")
            if secret.strip()}


def development_secrets() -> dict[str, list[str]]:
    """Where a development value comes from -> the variables holding one."""
    dev_env = set() if settings.DEBUG else _dev_env_secrets()
    found: dict[str, list[str]] = {}
    for name, values in _in_use().items():
        for value in values:
            if hashlib.sha256(value.encode()).hexdigest() in PUBLISHED_SHA256:
                found.setdefault("once written in the tokenversion repository", []).append(name)
                break
            if value in dev_env:
                found.setdefault("from var/dev.env, with DEBUG off", []).append(name)
                break
    return found


def _describe(found: dict[str, list[str]]) -> str:
    return "Development secrets in use: " + "; ".join(f"{', '.join(names)} ({why})" for why, names in found.items())


_HINT = ("Generate new secrets (e.g. python3 -c 'import secrets; print(secrets.token_urlsafe(48))') and set "
         "them in the environment; rotate Keycloak's copy of a mapper or event secret too (docs/security.md).")


@register(Tags.security, "tokenversion")
def check_development_secrets(app_configs=None, **kwargs):
    found = development_secrets()
    return [Warning(_describe(found), hint=_HINT, id="tokenversion.W030")] if found else []


@register(Tags.security, "tokenversion", deploy=True)
def check_development_secrets_deploy(app_configs=None, **kwargs):
    found = development_secrets()
    return [Error(_describe(found), hint=_HINT, id="tokenversion.E030")] if found else []
