"""The claims endpoint Keycloak's mapper calls at token issue (docs/contract.md)."""

from __future__ import annotations

import json

import pytest

from accounts.models import KeycloakUser
from tests.conftest import MAPPER_SECRET, database_down
from tokenversion_server import services
from tokenversion_server.models import RevocationEvent, SubjectVersion

URL = "/tokenversion/claims"
SUB = "0f1d2c3b-4a59-4e6f-8a7b-9c0d1e2f3a4b"
pytestmark = pytest.mark.django_db


def post(client, body, secret=MAPPER_SECRET, content_type="application/json", **extra):
    if not isinstance(body, (bytes, str)):
        body = json.dumps(body)
    headers = {"HTTP_X_TOKENVERSION_SECRET": secret} if secret is not None else {}
    # CONTENT_TYPE explicitly: the test client drops it for an empty body, a real client does not.
    return client.generic("POST", URL, body, content_type=content_type, CONTENT_TYPE=content_type,
                          **headers, **extra)


def counts():
    return (SubjectVersion.objects.count(), KeycloakUser.objects.count(), RevocationEvent.objects.count())


def assert_error(response, status: int, code: str) -> None:
    assert response.status_code == status, response.content
    assert response.json()["error"] == code
    assert response["Cache-Control"] == "no-store"


def test_unknown_subject_is_created_at_the_initial_version(client, issuer):
    response = post(client, {"sub": SUB, "username": "alice", "email": "a@example.com", "client_id": "web"})
    assert response.status_code == 200
    assert response.json() == {"sub": SUB, "token_version": 0}
    assert response["Cache-Control"] == "no-store"
    user = KeycloakUser.objects.get(subject=SUB)
    assert (user.issuer, user.username, user.email, user.last_client_id) == (
        issuer.issuer, "alice", "a@example.com", "web")


def test_answer_follows_bumps_and_is_never_cached(client, django_capture_on_commit_callbacks):
    post(client, {"sub": SUB})
    with django_capture_on_commit_callbacks(execute=True):
        services.revoke_user(SUB, reason="compromise", actor=services.Actor.system())
    assert post(client, {"sub": SUB}).json()["token_version"] == 1
    with django_capture_on_commit_callbacks(execute=True):
        services.revoke_user(SUB, reason="logout", actor=services.Actor.system())
    assert post(client, {"sub": SUB}).json()["token_version"] == 2


def test_user_attributes_are_refreshed(client):
    post(client, {"sub": SUB, "username": "alice", "email": "old@example.com"})
    post(client, {"sub": SUB, "username": "alice2", "email": None})
    user = KeycloakUser.objects.get(subject=SUB)
    assert (user.username, user.email) == ("alice2", "old@example.com")


def test_both_rotated_secrets_are_accepted(client):
    assert post(client, {"sub": SUB}, secret="mapper-secret-rotated-bbbbbbbbbbbbbbbbbbbbbbbb").status_code == 200


def test_explicit_issuer_must_be_the_served_one(client, issuer):
    assert post(client, {"sub": SUB, "issuer": issuer.issuer}).status_code == 200
    assert post(client, {"sub": SUB, "issuer": issuer.issuer + "/"}).status_code == 200
    before = counts()
    assert_error(post(client, {"sub": SUB, "issuer": "http://127.0.0.1:1/realms/evil"}), 400, "unknown_issuer")
    assert counts() == before


@pytest.mark.parametrize("secret", [None, "", "wrong", MAPPER_SECRET[:-1], MAPPER_SECRET + "x",
                                    "event-secret-cccccccccccccccccccccccccccccccccc"])
def test_missing_or_wrong_secret(client, secret):
    before = counts()
    assert_error(post(client, {"sub": SUB}, secret=secret), 401, "invalid_secret")
    assert counts() == before


@pytest.mark.parametrize(
    ("body", "content_type", "status", "code"),
    [
        (b"", "application/json", 400, "invalid_request"),
        (b"{", "application/json", 400, "invalid_request"),
        (b"[]", "application/json", 400, "invalid_request"),
        (b'"sub"', "application/json", 400, "invalid_request"),
        (b"\xff\xfe{}", "application/json", 400, "invalid_request"),
        (b'{"sub": "a", "sub": "b"}', "application/json", 400, "invalid_request"),
        (b"[" * 100000 + b"]" * 100000, "application/json", 413, "body_too_large"),
        (b"[" * 5000 + b"]" * 5000, "application/json", 400, "invalid_request"),
        (json.dumps({"sub": SUB}).encode(), "text/plain", 415, "unsupported_media_type"),
        (json.dumps({"sub": SUB}).encode(), "application/x-www-form-urlencoded", 415, "unsupported_media_type"),
        (json.dumps({"sub": SUB, "pad": "x" * 20000}).encode(), "application/json", 413, "body_too_large"),
        (b"{}", "application/json", 400, "invalid_request"),
        (json.dumps({"sub": None}).encode(), "application/json", 400, "invalid_request"),
        (json.dumps({"sub": 42}).encode(), "application/json", 400, "invalid_request"),
        (json.dumps({"sub": ""}).encode(), "application/json", 400, "invalid_request"),
        (json.dumps({"sub": "x" * 256}).encode(), "application/json", 400, "invalid_request"),
        (json.dumps({"sub": "a' OR '1'='1"}).encode(), "application/json", 400, "invalid_request"),
        (json.dumps({"sub": "../../etc/passwd"}).encode(), "application/json", 400, "invalid_request"),
        (json.dumps({"sub": "a\x00b"}).encode(), "application/json", 400, "invalid_request"),
        (json.dumps({"sub": SUB, "username": ["x"]}).encode(), "application/json", 400, "invalid_request"),
        (json.dumps({"sub": SUB, "email": "e" * 300}).encode(), "application/json", 400, "invalid_request"),
        (json.dumps({"sub": SUB, "issuer": 7}).encode(), "application/json", 400, "invalid_request"),
    ],
)
def test_bad_bodies_get_a_precise_4xx_and_write_nothing(client, body, content_type, status, code):
    before = counts()
    assert_error(post(client, body, content_type=content_type), status, code)
    assert counts() == before


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH"])
def test_other_methods(client, method):
    response = client.generic(method, URL, HTTP_X_TOKENVERSION_SECRET=MAPPER_SECRET)
    assert_error(response, 405, "method_not_allowed")
    assert response["Allow"] == "POST"


def test_federated_subject_ids_are_accepted(client):
    assert post(client, {"sub": "f:ldap-provider:jdoe"}).json()["token_version"] == 0


def test_database_outage_is_503_not_500(client, transactional_db):
    with database_down():
        assert_error(post(client, {"sub": SUB}), 503, "unavailable")
    assert post(client, {"sub": SUB}).status_code == 200


def statements(queries) -> list[str]:
    """The first word of each statement, without the savepoints of the test's own transaction."""
    words = [q["sql"].split()[0].upper() for q in queries.captured_queries]
    return [word for word in words if word not in ("SAVEPOINT", "RELEASE", "BEGIN", "COMMIT")]


def stamps():
    return (SubjectVersion.objects.get(subject=SUB).updated_at, KeycloakUser.objects.get(subject=SUB).last_seen)


BODY = {"sub": SUB, "username": "alice", "email": "a@example.com", "client_id": "web", "session_id": "s1"}


def test_a_known_unchanged_user_costs_one_read_and_no_write(client):
    """The hot path at every token issue (bench/claims_floor.py): the version and the user's row come back
    from one statement in autocommit (no BEGIN/COMMIT round trips), and nothing is written."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    post(client, BODY)  # first login: the version row and the user row are created
    before = stamps()
    with CaptureQueriesContext(connection) as queries:
        assert post(client, BODY).json() == {"sub": SUB, "token_version": 0}
    assert statements(queries) == ["SELECT"]
    assert stamps() == before


def test_a_changed_attribute_is_the_one_read_and_one_update(client):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    post(client, BODY)
    version_stamp = stamps()[0]
    with CaptureQueriesContext(connection) as queries:
        assert post(client, {**BODY, "email": "new@example.com"}).json() == {"sub": SUB, "token_version": 0}
    assert statements(queries) == ["SELECT", "UPDATE"]
    user = KeycloakUser.objects.get(subject=SUB)
    assert (user.username, user.email, user.last_client_id) == ("alice", "new@example.com", "web")
    assert stamps()[0] == version_stamp  # the version row is only read


def test_a_first_login_is_the_one_read_and_two_inserts(client):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as queries:
        assert post(client, BODY).json() == {"sub": SUB, "token_version": 0}
    # The version row is created and read back in one transaction; then the user row.
    assert statements(queries) == ["SELECT", "INSERT", "SELECT", "INSERT"]
    assert counts() == (1, 1, 0)


def test_a_version_row_without_a_user_row_gets_its_user_row(client):
    """What a failure between the two steps leaves (or a subject revoked before its first login)."""
    services.current_version(SUB)
    assert counts() == (1, 0, 0)
    assert post(client, BODY).json() == {"sub": SUB, "token_version": 0}
    assert KeycloakUser.objects.get(subject=SUB).username == "alice"


HOOK_CALLS: list[tuple] = []


def plain_hook(issuer: str, subject: str, attributes: dict) -> None:
    """A PROVISION_USER hook without ``user_read``: the contract before the folded read."""
    HOOK_CALLS.append((issuer, subject, dict(attributes)))


def test_a_hook_without_user_read_is_called_as_before(client, tv_settings, issuer):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    tv_settings(PROVISION_USER="tests.test_claims.plain_hook")
    HOOK_CALLS.clear()
    post(client, BODY)
    with CaptureQueriesContext(connection) as queries:
        assert post(client, BODY).json() == {"sub": SUB, "token_version": 0}
    assert statements(queries) == ["SELECT"]  # the version alone; the hook reads what it needs itself
    attributes = {"username": "alice", "email": "a@example.com", "client_id": "web", "session_id": "s1"}
    assert HOOK_CALLS == [(issuer.issuer, SUB, attributes)] * 2
    assert counts() == (1, 0, 0)


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_health_check_is_the_read_itself_and_a_dead_connection_is_replaced(client, monkeypatch):
    """With CONN_HEALTH_CHECKS, Django would send a SELECT 1 before each request's first query on a reused
    connection; the claims read is the check instead, and a connection the server killed is replaced
    within the same call, so the mapper never sees it."""
    import psycopg
    from django.db import connection

    assert connection.vendor == "postgresql", "run with TOKENVERSION_TEST_DB=postgres (scripts/test.sh does)"
    assert post(client, BODY).status_code == 200
    pings = []
    monkeypatch.setattr(connection, "is_usable", lambda: pings.append(1) or True)

    def next_request_on_a_reused_connection() -> None:
        # What close_old_connections leaves at a request's start (the test client skips that signal).
        connection.health_check_enabled, connection.health_check_done = True, False

    next_request_on_a_reused_connection()
    assert post(client, BODY).json() == {"sub": SUB, "token_version": 0}
    assert pings == []

    db = connection.settings_dict
    old_pid = connection.connection.info.backend_pid
    with psycopg.connect(host=db["HOST"], port=db["PORT"], user=db["USER"], password=db["PASSWORD"],
                         dbname=db["NAME"], autocommit=True) as other:
        assert other.execute("SELECT pg_terminate_backend(%s)", [old_pid]).fetchone() == (True,)
    next_request_on_a_reused_connection()
    response = post(client, {**BODY, "email": "new@example.com"})
    assert response.status_code == 200, response.content
    assert response.json() == {"sub": SUB, "token_version": 0}
    assert connection.connection.info.backend_pid != old_pid
    assert KeycloakUser.objects.get(subject=SUB).email == "new@example.com"
    assert pings == []


def test_a_subject_with_a_trailing_line_break_is_refused_and_not_stored(client):
    """The provider's identifier rule matched ``^...$``, and ``$`` matches before a final "\\n": a subject the
    services refuse as malformed (a control character) was stored and answered. It is a 400 now."""
    assert_error(post(client, {"sub": SUB + "\n"}), 400, "invalid_request")
    assert counts() == (0, 0, 0)
