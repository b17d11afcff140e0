"""The signed Redis feed (issue 9, item 1): only the provider and the publisher can sign; services verify.

- The envelope (``core.feed_protocol``): tampering, wrong key, wrong channel or issuer, dates, key parsing.
- The store (``stores.redis.RedisStore``) on signed messages: replays ignored, gap closing rate-limited.
- Key generation, the publisher's refusal to start without a key, the system checks.
- Rotation with the real publisher process and real Redis: two keys accepted, then the old one retired.
- THE attack: a process holding a service's whole configuration publishes forged and replayed messages while
  real services (a gunicorn-served DRF service and an in-process store) listen; they neither revoke nor
  un-revoke anything, and forged heartbeats do not keep them fresh once the genuine ones stop.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import json
import os
import stat
import sys
import time
import uuid

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.core.checks import run_checks
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from tests import test_remote_stores as remote
from tests.feed_settings import FEED_SECRET, FEED_SIGNING_KEY, FEED_VERIFY_KEY
from tests.remote_helpers import Process, WebProcess, http_get, wait_until
from tests.test_remote_stores import feed_url, fresh, refuses, start_publisher, version_seen
from tokenversion.conf import get_settings
from tokenversion.core.feed_protocol import (
    ENVELOPE_PREFIX,
    MAX_MESSAGE_AGE,
    Cursor,
    EnvelopeError,
    FeedKeyError,
    FeedSigner,
    FeedVerifier,
    generate_signing_key,
    key_id,
    parse_verify_key,
    public_value,
)
from tokenversion.stores.redis import RedisStore
from tokenversion_server import services
from tokenversion_server.models import RevocationEvent
from tokenversion_server.publish import publish_committed, redis_client

# The real provider, Redis and processes of the remote-store tests.
provider, db_name, redis_url, channel, stores = remote.provider, remote.db_name, remote.redis_url, remote.channel, \
    remote.stores

CH = "tokenversion:unit"
ISS = "https://sso.example.com/realms/main"


def redis_store(**options) -> RedisStore:
    """A ``RedisStore`` for this test run's issuer (the runtime fills it in from the settings; by hand, it is
    a value like any other)."""
    return RedisStore(issuer=get_settings().issuer, **options)


def signer_and_key() -> tuple[FeedSigner, str]:
    pem, public = generate_signing_key()
    return FeedSigner.from_pem(pem), public


SIGNER, PUBLIC = signer_and_key()


def opened(data: bytes, **kwargs) -> dict:
    return FeedVerifier([PUBLIC]).open(data, CH, ISS, **kwargs)


def refusal(data: bytes, keys=None, on=CH, issuer=ISS, **kwargs) -> str:
    with pytest.raises(EnvelopeError) as info:
        FeedVerifier(keys or [PUBLIC]).open(data, on, issuer, **kwargs)
    return info.value.reason


# The envelope.


def test_a_sealed_message_opens_with_its_channel_issuer_and_time():
    sealed = SIGNER.seal({"type": "heartbeat", "run": "r", "n": 2}, CH, ISS)
    assert sealed.startswith(ENVELOPE_PREFIX + SIGNER.kid.encode() + b".")
    message = opened(sealed)
    assert (message["type"], message["run"], message["n"], message["ch"], message["iss"]) == (
        "heartbeat", "r", 2, CH, ISS)
    assert abs(message["at"] - time.time()) < 5
    with pytest.raises(ValueError):
        SIGNER.seal({"type": "event", "ch": "other"}, CH, ISS)  # the envelope's fields are not the caller's


def test_tampered_envelopes_are_refused():
    sealed = SIGNER.seal({"type": "event", "event": {"scope": "realm", "issuer": ISS, "at": 1.0}}, CH, ISS)
    head = len(ENVELOPE_PREFIX) + 11 + 1 + 86 + 1
    payload = sealed[head:]
    first = len(ENVELOPE_PREFIX) + 12  # the signature's first character (6 significant bits, no padding bits)
    flipped_sig = bytearray(sealed)
    flipped_sig[first] = ord("B") if sealed[first] == ord("A") else ord("A")
    cases = {
        "payload edited": sealed.replace(b'"realm"', b'"reaLm"'),
        "payload extended": sealed[:-1] + b',"x":1}',
        "signature flipped": bytes(flipped_sig),
        "signature zeroed": sealed[:len(ENVELOPE_PREFIX) + 12] + b"A" * 86 + sealed[head - 1:],
        "truncated": sealed[:head - 1],
        "no prefix": sealed[len(ENVELOPE_PREFIX):],
        "bare JSON": payload,
        "too large": sealed + b" " * 20_000,
        "not bytes": 12,
    }
    reasons = {name: refusal(data, now=time.time()) for name, data in cases.items()}
    assert reasons == {"payload edited": "bad_signature", "payload extended": "bad_signature",
                       "signature flipped": "bad_signature", "signature zeroed": "bad_signature",
                       "truncated": "malformed", "no prefix": "malformed", "bare JSON": "malformed",
                       "too large": "malformed", "not bytes": "malformed"}


def test_a_signature_has_one_spelling():
    """base64url with nonzero trailing bits decodes to the same bytes in lenient decoders: refused."""
    sealed = SIGNER.seal({"type": "event"}, CH, ISS)
    start = len(ENVELOPE_PREFIX) + 12
    last = sealed[start + 85:start + 86]
    alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    other = bytes([alphabet[alphabet.index(last) ^ 1]])  # same 4 significant bits, another trailing bit
    respelled = sealed[:start + 85] + other + sealed[start + 86:]
    assert base64.urlsafe_b64decode(respelled[start:start + 86] + b"==") == base64.urlsafe_b64decode(
        sealed[start:start + 86] + b"==")
    assert refusal(respelled) == "malformed"


def test_the_feed_credential_and_other_keys_cannot_sign():
    message = {"type": "heartbeat", "run": "r", "n": 2, "cursor": "v1.0.0.0", "as_of": time.time()}
    # The former envelope, keyed with the feed credential that every service holds.
    payload = json.dumps({**message, "ch": CH, "iss": ISS, "at": time.time()}).encode()
    assert refusal(hmac.new(FEED_SECRET.encode(), payload, hashlib.sha256).hexdigest().encode() + b"." + payload) \
        == "malformed"
    # An Ed25519 key derived from the credential, and any other key: unknown key id.
    derived = FeedSigner(Ed25519PrivateKey.from_private_bytes(hashlib.sha256(FEED_SECRET.encode()).digest()))
    assert refusal(derived.seal(message, CH, ISS)) == "unknown_key"
    other, _ = signer_and_key()
    forged = other.seal(message, CH, ISS)
    assert refusal(forged) == "unknown_key"
    # Its signature presented under the genuine key id: checked against the genuine key, and refused.
    relabelled = ENVELOPE_PREFIX + SIGNER.kid.encode() + forged[len(ENVELOPE_PREFIX) + 11:]
    assert refusal(relabelled) == "bad_signature"


def test_a_message_for_another_channel_or_issuer_is_refused():
    sealed = SIGNER.seal({"type": "event"}, CH, ISS)
    assert refusal(sealed, on="tokenversion:other") == "misdirected"
    assert refusal(sealed, issuer=ISS + "/") == "misdirected"
    assert refusal(SIGNER.seal({"type": "event"}, "tokenversion:other", ISS)) == "misdirected"
    assert refusal(SIGNER.seal({"type": "event"}, CH, "https://sso.example.com/realms/other")) == "misdirected"


def test_dates_in_the_future_beyond_the_skew_and_old_messages_are_refused():
    now = time.time()
    assert opened(SIGNER.seal({"type": "event"}, CH, ISS, at=now + 4.9), now=now, future_skew=5)
    assert refusal(SIGNER.seal({"type": "event"}, CH, ISS, at=now + 5.1), now=now, future_skew=5) == "future"
    heartbeat = {"type": "heartbeat", "as_of": now + 60}
    assert refusal(SIGNER.seal(heartbeat, CH, ISS, at=now), now=now, future_skew=5) == "future"
    event = {"type": "event", "event": {"scope": "realm", "issuer": ISS, "at": now + 3600}}
    assert refusal(SIGNER.seal(event, CH, ISS, at=now), now=now, future_skew=5) == "future"
    old = SIGNER.seal({"type": "event"}, CH, ISS, at=now - MAX_MESSAGE_AGE - 1)
    assert refusal(old, now=now) == "expired"
    with pytest.raises(ValueError):  # not JSON (RFC 8259): never signed
        SIGNER.seal({"type": "event"}, CH, ISS, at=float("nan"))


def test_verify_keys_are_public_keys_only():
    key = Ed25519PrivateKey.generate()
    pem_public = key.public_key().public_bytes(serialization.Encoding.PEM,
                                               serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    pem_private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption()).decode()
    raw = public_value(key.public_key())
    assert len(raw) == 43 and key_id(parse_verify_key(raw)) == key_id(parse_verify_key(pem_public))
    for bad in ["", "   ", None, 42, raw[:-1], raw + "A", raw.replace(raw[5], "+"), pem_public[:40],
                "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----"]:
        with pytest.raises(FeedKeyError):
            parse_verify_key(bad)
    with pytest.raises(FeedKeyError, match="PRIVATE key"):
        parse_verify_key(pem_private)
    with pytest.raises(FeedKeyError):
        FeedVerifier([])


def test_rotation_two_keys_accepted_then_the_old_one_retired():
    old, old_public = SIGNER, PUBLIC
    new, new_public = signer_and_key()
    both = FeedVerifier([old_public, new_public])
    for signer in (old, new):
        assert both.open(signer.seal({"type": "event"}, CH, ISS), CH, ISS)["type"] == "event"
    retired = FeedVerifier([new_public])
    assert retired.open(new.seal({"type": "event"}, CH, ISS), CH, ISS)
    with pytest.raises(EnvelopeError) as info:
        retired.open(old.seal({"type": "event"}, CH, ISS), CH, ISS)
    assert info.value.reason == "unknown_key"


# The store on signed messages (no Redis needed: messages are handed to it as its thread would).


def unit_store(**options) -> RedisStore:
    return redis_store(redis_url="redis://127.0.0.1:9/0", feed_url="http://127.0.0.1:9/tokenversion/feed",
                      secret="s" * 40, verify_keys=[PUBLIC], channel=CH, autostart=False, **options)


@pytest.fixture
def at_iss(tv_settings):
    tv_settings(ISSUER=ISS)


def test_a_replayed_hello_or_numbered_message_is_ignored_and_opens_no_gap(at_iss):
    store = unit_store()
    store.cursor = Cursor(10, 10, 1)  # the store's data already covers the run's start
    hello = SIGNER.seal({"type": "hello", "run": "r1", "n": 1, "cursor": "v1.5.5.1"}, CH, ISS)

    def beat(n: int) -> bytes:
        return SIGNER.seal({"type": "heartbeat", "run": "r1", "n": n, "cursor": "v1.5.5.1", "as_of": time.time()},
                           CH, ISS)

    store._on_message(hello)
    store._on_message(beat(2))
    assert store.stats["heartbeats"] == 1 and fresh(store)
    captured = beat(3)
    store._on_message(captured)
    for _ in range(100):  # the amplifier: each replayed hello used to open a gap, hence a feed request
        store._on_message(hello)
        store._on_message(captured)
    store._on_message(beat(4))
    assert store.stats["replays"] == 200
    assert store.stats["gaps"] == 0 and not store._gap_runs and store.stats["heartbeats"] == 3
    # A reconnection forgets what the run certified (a gap until the next genuine message is closed over
    # HTTP), not which of its messages were received: replays still open no gap.
    store._runs.clear()
    store._on_message(hello)
    store._on_message(captured)
    assert store.stats["replays"] == 202 and not store._gap_runs
    store._on_message(beat(5))
    assert store._gap_runs == {"r1"}  # the genuine next message, after a reconnection: a gap, as before


def test_the_store_refuses_misdirected_future_and_foreign_messages(at_iss):
    store = unit_store()
    now = time.time()
    realm = {"scope": "realm", "issuer": ISS, "at": now}
    store._on_message(SIGNER.seal({"type": "event", "event": realm}, "tokenversion:other", ISS))
    store._on_message(SIGNER.seal({"type": "event", "event": {**realm, "at": now + 600}}, CH, ISS))
    store._on_message(SIGNER.seal({"type": "event", "event": {**realm, "issuer": ISS + "/x"}}, CH, ISS))
    store._on_message(signer_and_key()[0].seal({"type": "event", "event": realm}, CH, ISS))
    assert store.map.view(ISS, "anyone", None).realm_not_before is None  # nothing applied
    assert (store.stats["misdirected"], store.stats["out_of_time"], store.stats["bad_messages"]) == (1, 1, 4)
    store._on_message(SIGNER.seal({"type": "event", "event": realm}, CH, ISS))
    assert store.map.view(ISS, "anyone", None).realm_not_before == pytest.approx(now)
    assert store.stats["fast_events"] == 1


@pytest.mark.django_db(transaction=True)
def test_gap_closing_is_rate_limited(provider, stores):
    """Signed messages of runs the store never saw each open a gap (the key holder, or a replay within the
    message age bound, could send them by the thousand); the feed is read at most once per gap_close_interval."""
    store = redis_store(redis_url="redis://127.0.0.1:9/0", feed_url=feed_url(provider), secret=FEED_SECRET,
                       verify_keys=[FEED_VERIFY_KEY], channel=CH, gap_close_interval=0.25, poll_when_silent=False,
                       autostart=False)
    stores.append(store)
    signer = FeedSigner.from_pem(FEED_SIGNING_KEY)
    issuer = services.resolve_issuer(None)
    store.catch_up(0.0)  # the first snapshot
    rounds, started, messages = store.stats["rounds"], time.monotonic(), 0
    while time.monotonic() - started < 1.5:
        now = time.time()
        store._on_message(signer.seal({"type": "heartbeat", "run": uuid.uuid4().hex[:16], "n": 5,
                                       "cursor": "v1.0.0.0", "as_of": now}, CH, issuer))
        messages += 1
        store._http_work()
        time.sleep(0.002)
    closes = store.stats["rounds"] - rounds
    print(f"{messages} gap-opening messages in 1.5 s: {closes} feed requests")
    assert store.stats["gaps"] == messages > 100
    assert 2 <= closes <= 1 + 1.5 / 0.25


# Keys, commands, checks.


def test_keygen_writes_a_private_file_and_prints_the_public_value(tmp_path):
    path = tmp_path / "feed.pem"
    out = io.StringIO()
    call_command("tokenversion_feed_keygen", "--out", str(path), stdout=out)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    signer = FeedSigner.from_pem(path.read_text())
    lines = out.getvalue().splitlines()
    assert "PRIVATE" not in out.getvalue()  # the private key went to the file only
    assert lines[-1] == public_value(signer.public_key) and f"key id: {signer.kid}" in lines
    with pytest.raises(CommandError, match="not overwritten"):
        call_command("tokenversion_feed_keygen", "--out", str(path), stdout=io.StringIO())
    again = io.StringIO()
    call_command("tokenversion_feed_keygen", "--public-of", str(path), stdout=again)
    assert again.getvalue().splitlines()[-1] == lines[-1]
    printed = io.StringIO()
    call_command("tokenversion_feed_keygen", stdout=printed)
    pem = printed.getvalue().split("-----END PRIVATE KEY-----")[0] + "-----END PRIVATE KEY-----\n"
    assert public_value(FeedSigner.from_pem(pem).public_key) == printed.getvalue().splitlines()[-1]
    with pytest.raises(CommandError, match="cannot read"):
        call_command("tokenversion_feed_keygen", "--public-of", str(tmp_path / "missing.pem"))


def test_keygen_from_the_command_line_as_the_docs_say(tmp_path):
    import subprocess

    ENV = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings"}
    path = tmp_path / "feed-signing.pem"
    result = subprocess.run([sys.executable, "manage.py", "tokenversion_feed_keygen", "--out", str(path)],
                            capture_output=True, text=True, env=ENV, timeout=120)
    assert result.returncode == 0, result.stderr
    parse_verify_key(result.stdout.splitlines()[-1])
    result = subprocess.run([sys.executable, "manage.py", "tokenversion_feed_keygen", "--out", str(path)],
                            capture_output=True, text=True, env=ENV, timeout=120)
    # manage.py says why a command cannot run in one line (docs/configuration.md)
    assert result.returncode == 1 and result.stderr.strip().splitlines()[-1].startswith("error:")
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("key", [None, "/nonexistent/feed.pem", "-----BEGIN PRIVATE KEY-----\nxx\n-----END "
                                 "PRIVATE KEY-----\n"])
def test_the_publisher_refuses_to_start_without_a_usable_signing_key(tv_settings, redis_url, key):
    tv_settings(REDIS_URL=redis_url, FEED_SIGNING_KEY=key)
    with pytest.raises(CommandError, match="FEED_SIGNING_KEY"):
        call_command("tokenversion_publisher", stdout=io.StringIO())


def test_the_fast_path_without_a_signing_key_publishes_nothing(tv_settings, redis_url, channel, caplog):
    import tokenversion_server.publish as publish

    tv_settings(REDIS_URL=redis_url, REDIS_CHANNEL=channel, FEED_SIGNING_KEY=None)
    listener = redis_client(redis_url).pubsub(ignore_subscribe_messages=True)
    listener.subscribe(channel)
    try:
        publish_committed(record=services.Revocation(scope="user", issuer=ISS, reason="logout", subject="x",
                                                     new_version=1, audit_id=1, at=timezone.now()))
        assert "FEED_SIGNING_KEY" in caplog.text
        assert listener.get_message(timeout=0.3) is None
    finally:
        listener.close()
        publish._fast_paused_until = 0.0


@pytest.fixture
def check_ids(tv_settings, monkeypatch):
    monkeypatch.delenv("WEB_CONCURRENCY", raising=False)

    def run(**values) -> list[str]:
        tv_settings(**values)
        return sorted(m.id for m in run_checks(tags=["tokenversion"]) if m.id.startswith("tokenversion."))

    return run


def test_redis_publication_needs_a_usable_signing_key_e010(check_ids, tmp_path):
    assert check_ids(REDIS_URL="redis://127.0.0.1:6379/0", FEED_SIGNING_KEY=FEED_SIGNING_KEY) == []
    assert check_ids(REDIS_URL="redis://127.0.0.1:6379/0", FEED_SIGNING_KEY=None) == ["tokenversion.E010"]
    assert check_ids(REDIS_URL="redis://127.0.0.1:6379/0", FEED_SIGNING_KEY=str(tmp_path / "none.pem")) == [
        "tokenversion.E010"]
    rsa = tmp_path / "rsa.pem"
    from cryptography.hazmat.primitives.asymmetric import rsa as rsa_keys

    rsa.write_bytes(rsa_keys.generate_private_key(65537, 2048).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    assert check_ids(REDIS_URL="redis://127.0.0.1:6379/0", FEED_SIGNING_KEY=str(rsa)) == ["tokenversion.E010"]
    good = tmp_path / "good.pem"
    good.write_text(FEED_SIGNING_KEY)
    good.chmod(0o600)
    assert check_ids(REDIS_URL="redis://127.0.0.1:6379/0", FEED_SIGNING_KEY=str(good)) == []
    good.chmod(0o644)
    assert check_ids(REDIS_URL="redis://127.0.0.1:6379/0", FEED_SIGNING_KEY=str(good)) == ["tokenversion.W021"]
    escaped = FEED_SIGNING_KEY.strip().replace("\n", "\\n")  # as an environment file holds it
    assert check_ids(REDIS_URL="redis://127.0.0.1:6379/0", FEED_SIGNING_KEY=escaped) == []


def test_a_signing_key_on_a_service_is_w020(check_ids, monkeypatch):
    from django.apps import apps

    installed = apps.is_installed
    monkeypatch.setattr(apps, "is_installed", lambda name: name != "tokenversion_server" and installed(name))
    # A service reads a remote store (the database store without the provider's app is E007 of its own).
    service = {"STORE": "tokenversion.stores.feed.HttpFeedStore",
               "STORE_OPTIONS": {"feed_url": "https://provider.example.com/tokenversion/feed", "secret": "s" * 40}}
    assert check_ids(FEED_SIGNING_KEY=FEED_SIGNING_KEY, **service) == ["tokenversion.W020"]
    assert check_ids(FEED_SIGNING_KEY=None, **service) == []


REDIS_STORE = "tokenversion.stores.redis.RedisStore"
GOOD = {"feed_url": "https://provider.example.com/tokenversion/feed", "secret": "s" * 40,
        "redis_url": "rediss://redis.example.com:6380/0"}


@pytest.mark.parametrize("options", [
    GOOD,  # no verify_keys
    {**GOOD, "verify_keys": []},
    {**GOOD, "verify_keys": PUBLIC},  # a string, not a list
    {**GOOD, "verify_keys": ["not a key"]},
    {**GOOD, "verify_keys": [PUBLIC, FEED_SIGNING_KEY]},  # a private key on a service
    {**GOOD, "verify_keys": [PUBLIC], "verify_secrets": ["s" * 40]},  # the former HMAC option
    {**GOOD, "verify_keys": [PUBLIC], "gap_close_interval": 0},
])
def test_a_redis_store_without_usable_verify_keys_is_e006(check_ids, options):
    assert check_ids(STORE=REDIS_STORE, STORE_OPTIONS=options) == ["tokenversion.E006"]
    assert check_ids(STORE=REDIS_STORE, STORE_OPTIONS={**GOOD, "verify_keys": [PUBLIC]}) == []


# Rotation, with the real publisher process and real Redis.


def publisher_with_key(db_name: str, issuer: str, url: str, channel: str, pem: str) -> Process:
    process = remote.publisher_process(db_name, issuer, url, channel)
    process.env["TOKENVERSION_TEST_FEED_SIGNING_KEY"] = pem
    process.start()

    def publishing() -> bool:
        assert process.running, process.output()
        return "publishing on" in process.output()

    wait_until(publishing, 20, interval=0.05, what="the publisher to start")
    return process


def map_version(store: RedisStore, subject: str) -> int:
    """What the store's map holds, whether or not it may answer (fresh)."""
    return store.map.view(services.resolve_issuer(None), subject, None).subject.token_version


@pytest.mark.django_db(transaction=True)
def test_rotation_with_the_real_publisher(provider, redis_url, channel, db_name, jwks_server, stores, tv_settings):
    """docs/scaling.md's procedure: services accept the old and the new public key; the provider and the
    publisher switch to the new private key; services drop the old public key, and its messages are refused."""
    issuer = services.resolve_issuer(None)
    old_pem, old_public = FEED_SIGNING_KEY, FEED_VERIFY_KEY
    new_pem, new_public = generate_signing_key()

    def store(keys: list[str]) -> RedisStore:
        built = redis_store(redis_url=redis_url, channel=channel, feed_url=feed_url(provider), secret=FEED_SECRET,
                           verify_keys=keys, poll_when_silent=False)
        stores.append(built)
        return built

    both, retired = store([old_public, new_public]), store([new_public])  # step 2, and a service already at 4
    publisher = publisher_with_key(db_name, jwks_server.issuer, redis_url, channel, old_pem)
    try:
        wait_until(lambda: fresh(both) and both.stats["heartbeats"] > 0, 15, what="heartbeats of the old key")
        wait_until(lambda: refuses(retired), 5, what="the store without the old key to go stale")
        assert retired.stats["heartbeats"] == 0 and retired.stats["bad_messages"] > 0
        # Step 3: the provider and the publisher switch to the new key.
        tv_settings(REDIS_URL=redis_url, REDIS_CHANNEL=channel, FEED_SIGNING_KEY=new_pem)  # this process's fast path
        publisher.stop()
        beats = both.stats["heartbeats"]
        publisher = publisher_with_key(db_name, jwks_server.issuer, redis_url, channel, new_pem)
        assert FeedSigner.from_pem(new_pem).kid in publisher.output()
        wait_until(lambda: both.stats["heartbeats"] > beats + 5 and fresh(both), 15, what="the new key's heartbeats")
        wait_until(lambda: fresh(retired) and retired.stats["heartbeats"] > 0, 15, what="the new key to certify")
        services.revoke_user("rotated", reason="logout", actor=remote.actor())
        wait_until(lambda: version_seen(both, "rotated") == 1 and version_seen(retired, "rotated") == 1, 3,
                   what="the new key's revocation")
        # Step 4: a message signed with the retired key (say, from a leaked copy) is refused where it is retired.
        refused = retired.stats["bad_messages"]
        message = FeedSigner.from_pem(old_pem).seal(
            {"type": "event", "event": {"scope": "user", "issuer": issuer, "subject": "old-key", "version": 7,
                                        "at": time.time()}}, channel, issuer)
        client = redis_client(redis_url)
        try:
            client.publish(channel, message)
        finally:
            client.close()
        wait_until(lambda: map_version(both, "old-key") == 7, 3, what="the store still accepting the old key")
        wait_until(lambda: retired.stats["bad_messages"] > refused, 3, what="the retired key's message refused")
        assert map_version(retired, "old-key") == 0
    finally:
        publisher.stop()


# THE attack: a service's whole configuration in an attacker's hands, real Redis, real processes.


@pytest.mark.django_db(transaction=True)
def test_a_services_full_configuration_neither_revokes_nor_unrevokes_on_other_services(
        provider, redis_url, channel, db_name, jwks_server, stores):
    issuer = services.resolve_issuer(None)
    # One configuration for every service, as in production; the attacker holds all of it.
    options = {"redis_url": redis_url, "channel": channel, "feed_url": feed_url(provider), "secret": FEED_SECRET,
               "verify_keys": [FEED_VERIFY_KEY], "poll_when_silent": False}
    tag = uuid.uuid4().hex[:8]
    victim, target, withheld = f"victim-{tag}", f"target-{tag}", f"withheld-{tag}"

    def bearer(subject: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {jwks_server.mint(sub=subject, token_version=0, sid='s1')}"}

    def status(subject_headers: dict[str, str]) -> int:
        return http_get(service.url + "/api/whoami", subject_headers)[0]

    attacker = Process("attacker", [sys.executable, "-m", "tests.feed_attacker"], {
        "ATTACK_OPTIONS": json.dumps(options), "ATTACK_ISSUER": issuer, "ATTACK_SUBJECT": victim})
    service = WebProcess("service-attacked", "tests.remote_service.wsgi:application", {
        "DJANGO_SETTINGS_MODULE": "tests.remote_service.settings", "TOKENVERSION_TEST_ISSUER": jwks_server.issuer,
        "REMOTE_SERVICE_STORE": REDIS_STORE, "REMOTE_SERVICE_STORE_OPTIONS": json.dumps(options)})
    publisher = None
    services.revoke_user(target, reason="compromise", actor=remote.actor())  # a genuine revocation, before
    try:
        attacker.start()  # listening first, so it captures genuine hellos to replay
        time.sleep(0.5)
        publisher = start_publisher(db_name, jwks_server, redis_url, channel)
        service.start()
        other = redis_store(**options)
        stores.append(other)
        victim_token, target_token, withheld_token = bearer(victim), bearer(target), bearer(withheld)

        def health() -> dict:
            return http_get(service.url + "/health")[1]["stats"]

        wait_until(lambda: status(victim_token) == 200, 15, what="the service to accept the victim's token")
        wait_until(lambda: health()["heartbeats"] > 0 and other.stats["heartbeats"] > 0, 15,
                   what="certified freshness under attack")
        wait_until(lambda: health()["replays"] > 0 and health()["bad_messages"] > 200, 15,
                   what="forged and replayed messages to reach the service")
        before = health()

        # Phase 1, genuine messages flowing: no forged revocation bites, the genuine one still does. (503 would
        # only mean a starved machine let the map go stale; it is not what this phase looks for.)
        until, accepted = time.monotonic() + 2.0, 0
        while time.monotonic() < until:
            code = status(victim_token)
            assert code in (200, 503), code  # never 401: no forged user, session or realm revocation applied
            accepted += code == 200
            assert status(target_token) in (401, 503)  # never 200: the genuine revocation is not undone
            view = other.map.view(issuer, victim, "s1")
            assert view.subject.token_version == 0 and not view.session_revoked and view.realm_not_before is None
            assert map_version(other, target) == 1
            time.sleep(0.1)
        assert accepted > 0

        # Phase 2, genuine messages withheld: the publisher stops, and a revocation commits that Redis never
        # carries. Forged and replayed heartbeats must not keep the service fresh: it refuses, never accepts.
        publisher.stop()
        stopped = time.monotonic()
        time.sleep(0.3)  # what the publisher sent before it stopped has been delivered
        at_stop = health()
        services.revoke_user(withheld, reason="compromise", actor=remote.actor())
        answers = []
        while time.monotonic() - stopped < 4.0:
            answers.append((time.monotonic() - stopped, status(withheld_token)))
            time.sleep(0.05)
        late = [code for after, code in answers if after > 1.0 + 0.5]  # max_staleness, plus scheduling margin
        assert late and set(late) == {503}, answers
        assert refuses(other)
        during = health()
        assert during["heartbeats"] == at_stop["heartbeats"]  # not one forged or replayed heartbeat counted
        assert during["rounds"] - before["rounds"] <= 1  # replays never became feed requests

        # The attacker stops: what did it try?
        attacker.stop()
        tried = json.loads(attacker.output().strip().splitlines()[-1])
        print(f"attacker published {tried}; service refused {during['bad_messages']}, "
              f"ignored {during['replays']} replays")
        assert tried["forged"] > 1000 and tried["replayed"] > 50 and tried["edited"] > 10
        assert tried["hellos_captured"] >= 1

        # Phase 3, the publisher is back: the withheld revocation bites, nothing forged ever did.
        publisher = start_publisher(db_name, jwks_server, redis_url, channel)
        wait_until(lambda: status(withheld_token) == 401, 15, what="the withheld revocation to bite")
        wait_until(lambda: version_seen(other, withheld) == 1, 15, what="the other store to catch up")
        assert status(victim_token) == 200 and status(target_token) == 401
        assert other.map.view(issuer, victim, "s1") == other.map.view(issuer, "never-revoked", "s2")
        assert not RevocationEvent.objects.filter(subject=victim).exists()
        assert not RevocationEvent.objects.filter(scope="realm").exists()
    finally:
        attacker.stop()
        service.kill()
        if publisher is not None:
            publisher.stop()
