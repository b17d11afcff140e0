"""The Keycloak events endpoint (docs/contract.md): each event type makes the right revocation, once."""

from __future__ import annotations

import json

import pytest

from tests.conftest import EVENT_SECRET, MAPPER_SECRET
from tokenversion_server.models import RealmRevocation, RevocationEvent, RevokedSession, SubjectVersion

URL = "/tokenversion/events"
USER = "0f1d2c3b-4a59-4e6f-8a7b-9c0d1e2f3a4b"
pytestmark = pytest.mark.django_db


def send(client, body, secret=EVENT_SECRET, content_type="application/json"):
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return client.generic("POST", URL, raw, content_type=content_type, CONTENT_TYPE=content_type,
                          HTTP_X_TOKENVERSION_SECRET=secret)


def event(type_, id_="ev-1", **extra):
    return {"id": id_, "type": type_, "user_id": USER, "keycloak_event": "X", "time": 1763750000123, **extra}


def state():
    return (list(SubjectVersion.objects.values_list("subject", "token_version")),
            list(RevokedSession.objects.values_list("session_id", flat=True)),
            RealmRevocation.objects.count(), RevocationEvent.objects.count())


@pytest.mark.parametrize(("type_", "reason"), [
    ("user.logout", "logout"),
    ("user.credentials_changed", "password_change"),
    ("user.disabled", "admin"),
    ("user.deleted", "admin"),
])
def test_user_events_bump_the_user(client, type_, reason):
    response = send(client, event(type_))
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "action": "revoke_user", "duplicate": False}
    assert SubjectVersion.objects.get(subject=USER).token_version == 1
    audit = RevocationEvent.objects.get()
    assert (audit.scope, audit.reason, audit.actor_type) == ("user", reason, "keycloak")
    assert "ev-1" in audit.actor and type_ in audit.note


def test_session_logout_revokes_only_the_session(client):
    response = send(client, event("session.logout", session_id="sid-9"))
    assert response.json()["action"] == "revoke_session"
    assert list(RevokedSession.objects.values_list("session_id", "subject")) == [("sid-9", USER)]
    assert not SubjectVersion.objects.exists()


def test_realm_logout_all_sets_the_epoch(client):
    response = send(client, {"id": "ev-2", "type": "realm.logout_all"})
    assert response.json()["action"] == "revoke_realm"
    assert RealmRevocation.objects.count() == 1
    assert RevocationEvent.objects.get().scope == "realm"


def test_a_repeated_event_id_revokes_once(client):
    assert send(client, event("user.credentials_changed")).json()["duplicate"] is False
    again = send(client, event("user.credentials_changed"))
    assert again.status_code == 200 and again.json()["duplicate"] is True
    assert SubjectVersion.objects.get(subject=USER).token_version == 1
    assert RevocationEvent.objects.count() == 1


@pytest.mark.parametrize("secret", ["", "wrong", MAPPER_SECRET])
def test_only_event_secrets_may_revoke(client, secret):
    response = send(client, event("user.logout"), secret=secret)
    assert response.status_code == 401 and response.json()["error"] == "invalid_secret"
    assert state() == ([], [], 0, 0)


@pytest.mark.parametrize(("body", "status", "code"), [
    (event("user.exploded"), 400, "unknown_event_type"),
    ({"id": "x"}, 400, "unknown_event_type"),
    (event("user.logout", user_id=None), 400, "invalid_request"),
    (event("user.logout", user_id="bad id"), 400, "invalid_request"),
    (event("session.logout"), 400, "invalid_request"),
    (event("user.logout", id_=""), 400, "invalid_request"),
    (event("user.logout", time=-5), 400, "invalid_request"),
    (event("user.logout", time="yesterday"), 400, "invalid_request"),
    (event("user.logout", issuer="http://127.0.0.1:1/realms/other"), 400, "unknown_issuer"),
    (b"not json", 400, "invalid_request"),
    (b"[1, 2]", 400, "invalid_request"),
    (b"\xff\xff", 400, "invalid_request"),
    (b'{"id": "a", "id": "b", "type": "realm.logout_all"}', 400, "invalid_request"),
])
def test_bad_events_get_a_precise_4xx_and_write_nothing(client, body, status, code):
    response = send(client, body)
    assert response.status_code == status, response.content
    assert response.json()["error"] == code
    assert state() == ([], [], 0, 0)


def test_wrong_content_type_and_method(client):
    assert send(client, event("user.logout"), content_type="text/plain").status_code == 415
    assert client.get(URL).status_code == 405
    assert state() == ([], [], 0, 0)
