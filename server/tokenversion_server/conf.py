"""The provider's own settings, ``TOKENVERSION_SERVER``: its secrets, hooks, back-channel receiver and feed.

One table (``ServerSettings``), each key written once with the core's :func:`~tokenversion.core.settings.setting`,
read lazily by ``get_server_settings()`` and dropped with the service settings (``tokenversion.conf.reset``,
run on Django's ``setting_changed``), so ``override_settings`` works. The keys used to live in ``TOKENVERSION``:
one still found there is read for one release (``TOKENVERSION_SERVER`` wins when both hold it), and check
``tokenversion.W013`` names it and where it goes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from django.conf import settings as django_settings

from tokenversion.conf import get_settings, on_reset
from tokenversion.core.logout_tokens import LogoutTokenPolicy
from tokenversion.core.settings import (
    PROVIDER_KEYS,
    Settings,
    audience,
    boolean,
    comma_list,
    integer,
    number,
    optional_str,
    required_str,
    setting,
    str_list,
)

NAMESPACE = "TOKENVERSION_SERVER"


def signing_key(value: Any) -> str | None:
    text = optional_str(value)
    return text.strip() if text else None


@dataclass(frozen=True)
class ServerSettings(Settings):
    """The provider's settings (``TOKENVERSION_SERVER``)."""

    namespace: ClassVar[str] = NAMESPACE

    mapper_secrets: tuple[str, ...] = setting("MAPPER_SECRETS", (), str_list,
                                              "secrets the claims endpoint accepts (the mapper's)", env=comma_list)
    event_secrets: tuple[str, ...] = setting("EVENT_SECRETS", (), str_list,
                                             "secrets the events endpoint accepts (the listener's)", env=comma_list)
    initial_version: int = setting("INITIAL_VERSION", 0, integer(0), "version of a user never revoked")
    provision_user: str | None = setting("PROVISION_USER", None, optional_str,
                                         "dotted path: hook(issuer, subject, attributes) run by the claims endpoint")
    subject_resolver: str | None = setting("SUBJECT_RESOLVER", None, optional_str,
                                           "dotted path: callable(issuer, username or email) -> subject or None")
    backchannel_audience: tuple[str, ...] = setting("BACKCHANNEL_AUDIENCE", (), audience,
                                                    "client id(s) logout tokens are addressed to", env=comma_list)
    backchannel_max_age: float = setting("BACKCHANNEL_MAX_AGE", 300.0, number(0),
                                         "logout tokens issued longer ago are refused, seconds")
    sso_session_max: int = setting("SSO_SESSION_MAX", 36000, integer(0),
                                   "how long a manually revoked session is kept when Keycloak could not end it")
    feed_secrets: tuple[str, ...] = setting("FEED_SECRETS", (), str_list,
                                            "secrets /tokenversion/feed/* accepts (read access)", env=comma_list)
    feed_signing_key: str | None = setting("FEED_SIGNING_KEY", None, signing_key,
                                           "Ed25519 private key signing Redis messages: PEM text or a file path")
    feed_max_wait: float = setting("FEED_MAX_WAIT", 25.0, number(0), "longest long-poll wait, seconds")
    feed_page_size: int = setting("FEED_PAGE_SIZE", 1000, integer(1), "most events or entries per feed answer")
    feed_poll_interval: float = setting("FEED_POLL_INTERVAL", 0.05, number(0),
                                        "seconds between the long-poll watcher's looks at the audit trail")
    feed_max_long_polls: int = setting("FEED_MAX_LONG_POLLS", 8, integer(0),
                                       "long-polls that may wait at once per provider process")
    feed_max_streams: int = setting("FEED_MAX_STREAMS", 0, integer(0),
                                    "open /feed/stream responses per provider process; 0: streams off (501)")
    feed_stream_max_age: float = setting("FEED_STREAM_MAX_AGE", 300.0, number(1),
                                         "seconds a stream stays open before the service reconnects")
    redis_url: str | None = setting("REDIS_URL", None, optional_str, "where revocations are published on Redis")
    redis_channel: str = setting("REDIS_CHANNEL", "tokenversion:revocations", required_str,
                                 "the pub/sub channel")
    publish_interval: float = setting("PUBLISH_INTERVAL", 0.2, number(0), "seconds between the publisher's heartbeats")
    # Attribute mode (docs/keycloak.md#attribute-mode): each bump queues a write of the user's version into a
    # Keycloak user attribute, which Keycloak's own User Attribute mapper puts into tokens.
    attribute_sync: bool = setting("ATTRIBUTE_SYNC", False, boolean,
                                   "queue every user bump for tokenversion_attribute_sync (attribute mode)")
    attribute_name: str = setting("ATTRIBUTE_NAME", "token_version", required_str,
                                  "the Keycloak user attribute that holds the version")
    attribute_sync_interval: float = setting("ATTRIBUTE_SYNC_INTERVAL", 0.1, number(0.01),
                                             "seconds between the attribute worker's looks at its outbox")
    attribute_retry_max: float = setting("ATTRIBUTE_RETRY_MAX", 30.0, number(0.1),
                                         "longest wait between two tries of a write Keycloak refused, seconds")
    attribute_scan_interval: float = setting("ATTRIBUTE_SCAN_INTERVAL", 300.0, number(0),
                                             "seconds between scans for Keycloak users without the attribute; "
                                             "0: no scan")


def read(service: Mapping[str, Any] | None, server: Mapping[str, Any] | None) -> ServerSettings:
    """``TOKENVERSION_SERVER`` over the provider keys still written in ``TOKENVERSION`` (deprecated, W013)."""
    legacy = {key: value for key, value in (service or {}).items() if key in PROVIDER_KEYS}
    own = dict(server or {})

    def where(key: str) -> str:
        return f"{NAMESPACE}[{key!r}]" if key in own else f"TOKENVERSION[{key!r}]"

    return ServerSettings.from_mapping({**legacy, **own}, where=where)


_cached: ServerSettings | None = None


def get_server_settings() -> ServerSettings:
    global _cached
    if _cached is None:
        _cached = read(getattr(django_settings, "TOKENVERSION", None), getattr(django_settings, NAMESPACE, None))
    return _cached


def _reset() -> None:
    global _cached
    _cached = None


on_reset(_reset)  # tokenversion.conf.reset runs on setting_changed for TOKENVERSION and TOKENVERSION_SERVER


def logout_token_policy() -> LogoutTokenPolicy:
    """The back-channel receiver's policy: the service settings' issuer and algorithms, this audience."""
    server = get_server_settings()
    return get_settings().logout_token_policy(server.backchannel_audience, server.backchannel_max_age)
