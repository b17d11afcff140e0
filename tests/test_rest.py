"""``POST /tokenversion/revocations``, the REST API other systems (SIEM, support tools) revoke with."""

from __future__ import annotations

import json

import pytest
from django.contrib.auth.models import Permission, User
from django.db import connection
from rest_framework.test import APIClient

from accounts.models import KeycloakUser
from tokenversion.conf import get_settings
from tokenversion_server.models import ApiKey, RealmRevocation, RevocationEvent, RevokedSession, SubjectVersion

pytestmark = pytest.mark.django_db

URL = "/tokenversion/revocations"
ALICE = "5b7f0b36-8d0e-4a35-9f49-7a5ad1b0c001"  # the subject tests/jwks.py mints tokens for
BOB = "5b7f0b36-8d0e-4a35-9f49-7a5ad1b0c002"


def token_for(username: str, *, allowed: bool, active: bool = True) -> str:
    user = User.objects.create_user(username, f"{username}@svc.example", is_active=active)
    if allowed:
        user.user_permissions.add(Permission.objects.get(
            content_type__app_label="tokenversion_server", codename="revoke_tokens"))
    return f"Token {ApiKey.issue(user, 'tests', created_by='tests')[1]}"


@pytest.fixture
def iss():
    return get_settings().issuer


@pytest.fixture
def siem(db):
    return token_for("siem", allowed=True)


@pytest.fixture
def alice(iss):
    return KeycloakUser.objects.create(issuer=iss, subject=ALICE, username="alice", email="alice@example.com")


def post(api, data, auth=None, **extra):
    if auth is not None:
        extra["HTTP_AUTHORIZATION"] = auth
    return api.post(URL, data, format="json", **extra)


def nothing_written() -> bool:
    return not (SubjectVersion.objects.exists() or RevokedSession.objects.exists()
                or RealmRevocation.objects.exists() or RevocationEvent.objects.exists())


# --- who may call it ------------------------------------------------------------------------------------


def test_anonymous_is_401_with_a_token_challenge(api, alice):
    """401, not 403: the view's first authentication class (DRF TokenAuthentication) offers a challenge,
    so DRF answers an unauthenticated request with 401 and ``WWW-Authenticate: Token``."""
    response = post(api, {"scope": "user", "user": "alice"})
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Token"
    assert nothing_written()


def test_wrong_token_is_401(api, alice):
    response = post(api, {"scope": "realm"}, auth="Token 0123456789abcdef0123456789abcdef01234567")
    assert response.status_code == 401
    assert response.json() == {"detail": "Invalid token.", "code": "authentication_failed"}
    assert nothing_written()


def test_token_of_inactive_user_is_401(api, alice):
    response = post(api, {"scope": "realm"}, auth=token_for("gone", allowed=True, active=False))
    assert response.status_code == 401
    assert nothing_written()


def test_token_without_permission_is_403(api, alice):
    response = post(api, {"scope": "user", "user": "alice"}, auth=token_for("reader", allowed=False))
    assert response.status_code == 403
    assert response.json() == {"detail": "the tokenversion_server.revoke_tokens permission is required",
                               "code": "permission_denied"}
    assert nothing_written()


def test_keycloak_bearer_token_is_not_accepted_here(api, alice, issuer):
    """Revocation needs a provider credential: a user's own access token does not authenticate here."""
    response = post(api, {"scope": "realm"}, auth=f"Bearer {issuer.mint()}")
    assert response.status_code == 401
    assert nothing_written()


def test_session_login_needs_csrf(alice):
    staff = User.objects.create_user("support", is_staff=True)
    staff.user_permissions.add(Permission.objects.get(codename="revoke_tokens"))
    api = APIClient(enforce_csrf_checks=True)
    api.force_login(staff)
    refused = post(api, {"scope": "user", "user": "alice"})
    assert refused.status_code == 403
    assert "CSRF" in refused.json()["detail"]
    assert nothing_written()

    api.get("/admin/")  # any page with a form sets the CSRF cookie
    accepted = post(api, {"scope": "user", "user": "alice"}, HTTP_X_CSRFTOKEN=api.cookies["csrftoken"].value)
    assert accepted.status_code == 201
    event = RevocationEvent.objects.get()
    assert (event.actor_type, event.actor, event.admin_user) == ("api", "support", staff)


# --- revocations ----------------------------------------------------------------------------------------


def assert_payload(response, **expected):
    assert response.status_code == 201
    assert response["Cache-Control"] == "no-store"
    body = response.json()
    event = RevocationEvent.objects.get()
    assert body == {**expected, "revoked_at": event.created_at.isoformat(), "audit_id": event.pk}
    return event


def test_revoke_user_by_username(api, siem, alice, iss):
    SubjectVersion.objects.create(issuer=iss, subject=ALICE, token_version=4)
    response = post(api, {"scope": "user", "user": "alice", "reason": "compromise", "note": "SIEM #77"}, siem)
    event = assert_payload(response, scope="user", issuer=iss, subject=ALICE, session_id=None,
                           reason="compromise", old_version=4, new_version=5)
    assert SubjectVersion.objects.get(subject=ALICE).token_version == 5
    assert (event.scope, event.subject, event.reason, event.note) == ("user", ALICE, "compromise", "SIEM #77")
    assert (event.old_version, event.new_version) == (4, 5)
    # The key's holder, and which of the holder's keys (issue 9: the audit names the key's own holder).
    prefix = ApiKey.objects.get(holder__username="siem").prefix
    assert (event.actor_type, event.actor, event.admin_user.username) == (
        "api", f"siem (API key {prefix} 'tests')", "siem")


def test_revoke_user_by_email(api, siem, alice, iss):
    response = post(api, {"scope": "user", "user": "ALICE@example.com"}, siem)
    assert_payload(response, scope="user", issuer=iss, subject=ALICE, session_id=None, reason="admin",
                   old_version=0, new_version=1)


def test_revoke_user_by_subject_only_known_from_version_table(api, siem, iss):
    SubjectVersion.objects.create(issuer=iss, subject=BOB, token_version=11)
    response = post(api, {"scope": "user", "user": BOB}, siem)
    assert_payload(response, scope="user", issuer=iss, subject=BOB, session_id=None, reason="admin",
                   old_version=11, new_version=12)
    assert SubjectVersion.objects.get(subject=BOB).token_version == 12


def test_revoke_session(api, siem, iss):
    response = post(api, {"scope": "session", "session_id": "sid-abc", "reason": "logout"}, siem)
    row = RevokedSession.objects.get()
    # No Keycloak admin credentials in the unit tests: the session could not be ended in Keycloak, so the
    # answer says so and the revocation is kept for SSO_SESSION_MAX (tests/test_session_revocation.py).
    detail = response.json()["keycloak_detail"]
    assert detail.startswith("Keycloak session not ended (no Keycloak admin credentials")
    event = assert_payload(response, scope="session", issuer=iss, subject=None, session_id="sid-abc",
                           reason="logout", old_version=None, new_version=None, keycloak_session="not_ended",
                           kept_until=row.expires_at.isoformat(), keycloak_detail=detail)
    assert (row.issuer, row.session_id, row.revoked_at) == (iss, "sid-abc", event.created_at)
    assert not SubjectVersion.objects.exists()


def test_revoke_realm(api, siem, iss):
    response = post(api, {"scope": "realm", "note": "key leak"}, siem)
    event = assert_payload(response, scope="realm", issuer=iss, subject=None, session_id=None, reason="admin",
                           old_version=None, new_version=None)
    assert RealmRevocation.objects.get(issuer=iss).not_before == event.created_at
    assert event.note == "key leak"


def test_unknown_user_is_404(api, siem, alice):
    response = post(api, {"scope": "user", "user": "mallory"}, siem)
    assert response.status_code == 404
    assert response.json() == {"detail": "unknown user", "code": "unknown_user"}
    assert nothing_written()


def test_ambiguous_user_is_404(api, siem, iss):
    KeycloakUser.objects.create(issuer=iss, subject=ALICE, username="alice", email="shared@example.com")
    KeycloakUser.objects.create(issuer=iss, subject=BOB, username="bob", email="shared@example.com")
    response = post(api, {"scope": "user", "user": "shared@example.com"}, siem)
    assert response.status_code == 404
    assert response.json()["code"] == "unknown_user"
    assert nothing_written()


# --- bad requests ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("data", "field"), [
    ({"scope": "everything"}, "scope"),
    ({}, "scope"),
    ({"scope": "user"}, "user"),
    ({"scope": "user", "user": ""}, "user"),
    ({"scope": "session"}, "session_id"),
    ({"scope": "realm", "reason": "because"}, "reason"),
    ({"scope": "user", "user": "x" * 256}, "user"),
])
def test_invalid_fields_are_400(api, siem, alice, data, field):
    response = post(api, data, siem)
    assert response.status_code == 400
    assert field in response.json()
    assert nothing_written()


def test_invalid_session_id_is_400(api, siem):
    response = post(api, {"scope": "session", "session_id": "no spaces allowed"}, siem)
    assert response.status_code == 400
    assert "session id must be" in response.json()["detail"]
    assert nothing_written()


def test_wrong_content_type_is_415(api, siem, alice):
    response = api.post(URL, "scope=realm", content_type="text/plain", HTTP_AUTHORIZATION=siem)
    assert response.status_code == 415
    assert nothing_written()


@pytest.mark.parametrize("body", ['{"scope": "realm"', "not json", ""])
def test_malformed_json_is_400(api, siem, body):
    response = api.post(URL, body, content_type="application/json", HTTP_AUTHORIZATION=siem)
    assert response.status_code == 400
    assert nothing_written()


def test_json_that_is_not_an_object_is_400(api, siem):
    response = api.post(URL, json.dumps(["realm"]), content_type="application/json",
                        HTTP_AUTHORIZATION=siem)
    assert response.status_code == 400
    assert nothing_written()


@pytest.mark.parametrize("method", ["get", "put", "delete"])
def test_other_methods_are_405(api, siem, method):
    response = getattr(api, method)(URL, HTTP_AUTHORIZATION=siem)
    assert response.status_code == 405
    assert "POST" in response["Allow"]
    assert nothing_written()


# --- failure and effect ---------------------------------------------------------------------------------


@pytest.mark.parametrize("data", [{"scope": "user", "user": "alice"}, {"scope": "realm"}])
def test_database_error_is_503_and_nothing_is_half_written(api, siem, alice, iss, data):
    """The audit table is gone (a real database error): the revocation rolls back and the caller gets a
    503 it can retry, not a 500 page."""
    SubjectVersion.objects.create(issuer=iss, subject=ALICE, token_version=2)
    with connection.cursor() as cursor:  # rolled back with the test's transaction
        cursor.execute(f"DROP TABLE {connection.ops.quote_name(RevocationEvent._meta.db_table)}")
    response = post(api, data, siem)
    assert response.status_code == 503
    assert response.json() == {"detail": "the provider's database is unavailable, nothing was revoked",
                               "code": "unavailable"}
    assert response["Retry-After"] == "1"
    assert SubjectVersion.objects.get(subject=ALICE).token_version == 2
    assert not RealmRevocation.objects.exists()


def test_revoked_token_is_refused_at_once(api, siem, alice, issuer, django_capture_on_commit_callbacks):
    """The point of the API: a token accepted a moment ago is refused right after the revocation commits,
    even though the store had cached the old version (the commit hook drops it)."""
    bearer = f"Bearer {issuer.mint(token_version=0)}"
    assert api.get("/api/whoami", HTTP_AUTHORIZATION=bearer).status_code == 200
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        assert post(api, {"scope": "user", "user": "alice"}, siem).status_code == 201
    assert len(callbacks) == 1
    refused = api.get("/api/whoami", HTTP_AUTHORIZATION=bearer)
    assert refused.status_code == 401
    assert refused.json()["code"] == "token_revoked"
    fresh = f"Bearer {issuer.mint(token_version=1)}"
    assert api.get("/api/whoami", HTTP_AUTHORIZATION=fresh).status_code == 200
