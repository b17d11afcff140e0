"""Issue 9 item 2: API keys for the REST API. Each attack path of the review, replayed: a staff user who may
only view keys, or only add them, must not get a key that acts as somebody else; keys are hashed at rest and
shown once; the audit trail names the key's own holder."""

from __future__ import annotations

import hashlib
import io
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from django.apps import apps
from django.contrib.auth.models import Permission, User
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from rest_framework.test import APIClient

from accounts.models import KeycloakUser
from tokenversion.conf import get_settings
from tokenversion_server.models import ApiKey, RealmRevocation, RevocationEvent

pytestmark = pytest.mark.django_db

REVOKE = "revoke_tokens"
ADD_URL = "admin:tokenversion_server_apikey_add"
LIST_URL = "admin:tokenversion_server_apikey_changelist"
KEY = re.compile(r"tvk_[0-9A-Za-z]{40}")


def user(username: str, *, revoke: bool = False, everything_else: bool = False, **flags) -> User:
    person = User.objects.create_user(username, f"{username}@staff.example", "pw-not-checked", **flags)
    perms = Permission.objects.none()
    if everything_else:  # every permission of every app, but not revoke_tokens
        perms = Permission.objects.exclude(codename=REVOKE)
    if revoke:
        perms = perms | Permission.objects.filter(codename=REVOKE)
    person.user_permissions.add(*perms)
    return person


@pytest.fixture
def boss(db) -> User:
    return User.objects.create_superuser("boss", "boss@staff.example", "pw-not-checked")


def logged_in(client, person: User):
    client.force_login(person)
    return client


def revoke_realm_with(key: str):
    return APIClient().post("/tokenversion/revocations", {"scope": "realm"}, format="json",
                            HTTP_AUTHORIZATION=f"Token {key}")


def create_in_admin(client, holder: User, name: str = "SIEM"):
    return client.post(reverse(ADD_URL), {"name": name, "holder": holder.pk})


def shown_key(response) -> str:
    """The key on the page after "Save" (the only place it ever appears)."""
    keys = KEY.findall(response.content.decode())
    assert len(set(keys)) == 1, response.content.decode()[:2000]
    return keys[0]


# --- who may see and manage keys -----------------------------------------------------------------------


def test_drf_authtoken_and_its_admin_are_gone(client):
    """The stock "Auth Token" admin listed every key in clear to anyone with its view permission."""
    staff = user("viewer", everything_else=True, is_staff=True)
    response = logged_in(client, staff).get("/admin/authtoken/token/")
    assert response.status_code == 404
    assert not apps.is_installed("rest_framework.authtoken")


def test_staff_without_revoke_permission_cannot_see_or_add_keys(client, boss):
    """Every other permission of every app (view/add of anything) gives no access to API keys."""
    ApiKey.issue(boss, "boss's key", created_by="tests")
    staff = user("viewer", everything_else=True, is_staff=True)
    client = logged_in(client, staff)
    assert client.get(reverse(LIST_URL)).status_code == 403
    assert client.get(reverse(ADD_URL)).status_code == 403
    assert create_in_admin(client, boss).status_code == 403
    assert create_in_admin(client, staff).status_code == 403
    assert ApiKey.objects.count() == 1
    assert "apikey" not in client.get(reverse("admin:index")).content.decode().lower()


def test_staff_cannot_create_a_key_for_the_superuser_or_anyone_else(client, boss):
    """The attack: a key for someone more privileged, revoking under that someone's name. Refused server-side,
    whatever the POST says, and the holder field offers the staff user alone."""
    other = user("colleague", revoke=True, is_staff=True)
    staff = user("support", revoke=True, is_staff=True)
    client = logged_in(client, staff)
    page = client.get(reverse(ADD_URL))
    assert page.status_code == 200
    assert list(page.context["adminform"].form.fields["holder"].queryset) == [staff]
    for victim in (boss, other):
        response = create_in_admin(client, victim)
        assert response.status_code == 200  # the form again, with an error
        assert response.context["adminform"].form.errors["holder"]
        assert not KEY.search(response.content.decode())
    assert not ApiKey.objects.exists()
    assert not RevocationEvent.objects.exists()


def test_a_non_superuser_sees_and_revokes_only_their_own_keys(client, boss):
    theirs, _ = ApiKey.issue(boss, "boss's key", created_by="tests")
    staff = user("support", revoke=True, is_staff=True)
    mine, _ = ApiKey.issue(staff, "mine", created_by="tests")
    client = logged_in(client, staff)
    listed = client.get(reverse(LIST_URL))
    assert list(listed.context["cl"].result_list) == [mine]
    assert client.get(reverse("admin:tokenversion_server_apikey_change", args=[theirs.pk])).status_code == 302
    client.post(reverse(LIST_URL), {"action": "revoke_keys", "_selected_action": [theirs.pk, mine.pk],
                                    "index": 0})
    theirs.refresh_from_db()
    mine.refresh_from_db()
    assert theirs.revoked_at is None
    assert mine.revoked_at is not None and mine.revoked_by == "admin: support"


def test_a_superuser_may_create_a_key_for_another_user_and_the_audit_names_that_holder(client, boss):
    siem = user("siem", revoke=True)
    response = create_in_admin(logged_in(client, boss), siem, "SIEM rule engine")
    key = shown_key(response)
    api_key = ApiKey.objects.get()
    assert (api_key.holder, api_key.created_by) == (siem, "admin: boss")

    assert "lacks the permission" not in response.content.decode()
    assert revoke_realm_with(key).status_code == 201
    event = RevocationEvent.objects.get()
    assert event.admin_user == siem  # not boss, who created the key
    assert event.actor == f"siem (API key {api_key.prefix} 'SIEM rule engine')"


def test_the_audit_names_the_holder_even_when_staff_created_the_key_for_themselves(client, boss):
    staff = user("support", revoke=True, is_staff=True)
    key = shown_key(create_in_admin(logged_in(client, staff), staff, "laptop"))
    assert revoke_realm_with(key).status_code == 201
    event = RevocationEvent.objects.get()
    assert (event.actor_type, event.admin_user) == ("api", staff)
    assert event.actor.startswith("support (API key tvk_")


# --- shown once, hashed at rest ---------------------------------------------------------------------------


def test_a_key_is_shown_once_then_never_again(client):
    staff = user("support", revoke=True, is_staff=True)
    client = logged_in(client, staff)
    created = create_in_admin(client, staff)
    assert created.status_code == 200
    assert "no-store" in created["Cache-Control"]
    key = shown_key(created)
    api_key = ApiKey.objects.get()
    assert key.startswith(api_key.prefix) and len(api_key.prefix) == 12

    for page in (client.get(reverse(LIST_URL)),
                 client.get(reverse("admin:tokenversion_server_apikey_change", args=[api_key.pk])),
                 client.get(reverse("admin:tokenversion_server_apikey_history", args=[api_key.pk])),
                 client.get(reverse("admin:index"))):
        assert page.status_code == 200
        body = page.content.decode()
        assert key not in body and key[12:] not in body and api_key.key_hash not in body
        assert api_key.prefix in body or page.request["PATH_INFO"] == reverse("admin:index")
    # ... and the key works.
    assert revoke_realm_with(key).status_code == 201


def every_value_in_the_database() -> str:
    """Every row of every table, as text: what a database dump or backup would hold."""
    out = []
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names():
            cursor.execute(f"SELECT * FROM {connection.ops.quote_name(table)}")
            out.extend(repr(row) for row in cursor.fetchall())
    return "\n".join(out)


def test_the_database_holds_no_key_in_clear(client, boss):
    """Keys made in the admin and on the command line: only the SHA-256 and the prefix are stored."""
    key_admin = shown_key(create_in_admin(logged_in(client, boss), boss, "admin key"))
    out = io.StringIO()
    call_command("create_api_key", "boss", "--name", "cli key", stdout=out, stderr=io.StringIO())
    key_cli = out.getvalue().strip()
    assert KEY.fullmatch(key_cli)
    assert revoke_realm_with(key_cli).status_code == 201  # last_used_at, the audit row: written too

    dump = every_value_in_the_database()
    for key in (key_admin, key_cli):
        assert key not in dump
        assert key[12:] not in dump  # not even the secret part alone
        assert hashlib.sha256(key.encode()).hexdigest() in dump
        assert key[:12] in dump


# --- authentication --------------------------------------------------------------------------------------


def test_revoked_key_and_key_of_a_user_without_the_permission_are_refused(boss):
    holder = user("siem", revoke=True)
    api_key, key = ApiKey.issue(holder, "SIEM", created_by="tests")
    assert api_key.revoke("tests")
    response = revoke_realm_with(key)
    assert response.status_code == 401
    assert response.json() == {"detail": "Invalid token.", "code": "authentication_failed"}

    _, weak = ApiKey.issue(user("intern"), "no permission", created_by="tests")
    assert revoke_realm_with(weak).status_code == 403
    assert not RealmRevocation.objects.exists()


def test_last_used_is_recorded(boss):
    api_key, key = ApiKey.issue(boss, "SIEM", created_by="tests")
    assert api_key.last_used_at is None
    assert revoke_realm_with(key).status_code == 201
    api_key.refresh_from_db()
    assert api_key.last_used_at is not None


@pytest.mark.parametrize("credential", [
    "tvk_\x00" + "a" * 39,
    "tvk_" + "a" * 39,          # one short
    "tvk_" + "a" * 41,          # one long
    "tvk_" + "a" * 39 + "-",
    "0123456789ABCDEF0123456789abcdef01234567",  # legacy keys are lowercase hexadecimal
    "é" * 40,
])
def test_malformed_keys_are_refused_before_the_database(boss, credential):
    with CaptureQueriesContext(connection) as queries:
        response = APIClient().post("/tokenversion/revocations", {"scope": "realm"}, format="json",
                                    HTTP_AUTHORIZATION=f"Token {credential}")
    assert response.status_code == 401
    assert response.json()["code"] == "authentication_failed"
    assert not [q for q in queries.captured_queries if "apikey" in q["sql"].lower()]


def test_a_wrong_key_with_the_right_prefix_is_refused(boss):
    _, key = ApiKey.issue(boss, "SIEM", created_by="tests")
    guess = key[:12] + ("b" if key[12] == "a" else "a") + key[13:]
    assert revoke_realm_with(guess).status_code == 401
    assert revoke_realm_with(key).status_code == 201


# --- command line ----------------------------------------------------------------------------------------


def test_create_api_key_prints_the_key_once_on_stdout(boss, issuer):
    siem = user("siem", revoke=True)
    out, err = io.StringIO(), io.StringIO()
    call_command("create_api_key", "siem", "--name", "SIEM rule engine", stdout=out, stderr=err)
    key = out.getvalue().strip()
    assert KEY.fullmatch(key)
    api_key = ApiKey.objects.get()
    assert (api_key.holder, api_key.name) == (siem, "SIEM rule engine")
    assert api_key.created_by.startswith("cli: ")
    assert api_key.prefix in err.getvalue() and key not in err.getvalue()

    KeycloakUser.objects.create(issuer=get_settings().issuer, subject="sub-alice", username="alice")
    response = APIClient().post("/tokenversion/revocations", {"scope": "user", "user": "alice"}, format="json",
                                HTTP_AUTHORIZATION=f"Token {key}")
    assert response.status_code == 201
    assert RevocationEvent.objects.get().actor == f"siem (API key {api_key.prefix} 'SIEM rule engine')"


def test_create_api_key_errors_are_one_line(boss):
    user("gone", revoke=True, is_active=False)
    for args, message in ((["nobody", "--name", "x"], "unknown user 'nobody'"),
                          (["gone", "--name", "x"], "inactive"),
                          (["boss", "--name", ""], "--name must be")):
        with pytest.raises(CommandError, match=message):
            call_command("create_api_key", *args, stdout=io.StringIO(), stderr=io.StringIO())
    assert not ApiKey.objects.exists()


def test_create_api_key_warns_when_the_holder_cannot_revoke(db):
    user("intern")
    err = io.StringIO()
    call_command("create_api_key", "intern", "--name", "x", stdout=io.StringIO(), stderr=err)
    assert "lacks tokenversion_server.revoke_tokens" in err.getvalue()


def test_revoke_api_key_command(boss):
    api_key, key = ApiKey.issue(boss, "SIEM", created_by="tests")
    out = io.StringIO()
    call_command("revoke_api_key", api_key.prefix, stdout=out)
    assert f"Revoked API key {api_key.prefix} 'SIEM' of boss." in out.getvalue()
    assert revoke_realm_with(key).status_code == 401
    with pytest.raises(CommandError, match="no active API key"):
        call_command("revoke_api_key", api_key.prefix, stdout=io.StringIO())


@pytest.mark.parametrize(("header", "detail"), [
    ("Token", "Invalid token header. No credentials provided."),
    ("Token a b", "Invalid token header. Token string should not contain spaces."),
])
def test_malformed_token_headers_keep_drf_messages(boss, header, detail):
    response = APIClient().post("/tokenversion/revocations", {"scope": "realm"}, format="json",
                                HTTP_AUTHORIZATION=header)
    assert response.status_code == 401
    assert response.json() == {"detail": detail, "code": "authentication_failed"}


def test_the_admin_warns_when_the_holder_cannot_revoke(client, boss):
    intern = user("intern")
    response = create_in_admin(logged_in(client, boss), intern, "no permission")
    body = response.content.decode()
    assert "The holder, intern, lacks the permission tokenversion_server.revoke_tokens" in body
    assert revoke_realm_with(shown_key(response)).status_code == 403


@pytest.mark.django_db(transaction=True)
def test_the_documented_command_line_verbatim():
    """docs/revocation.md, run as a user would: ``manage.py create_api_key`` in its own process, the key alone on
    standard output, then the key revokes through the REST API, then ``revoke_api_key`` stops it."""
    siem = user("siem", revoke=True)
    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings",
           "TOKENVERSION_TEST_PG_NAME": connection.settings_dict["NAME"]}

    def manage(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "manage.py", *args], cwd=root, env=env, capture_output=True,
                              text=True, timeout=120)

    created = manage("create_api_key", "siem", "--name", "SIEM rule engine")
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip()
    assert KEY.fullmatch(key) and created.stdout == key + "\n"
    api_key = ApiKey.objects.get(holder=siem)
    assert created.stderr == (f"API key {api_key.prefix} 'SIEM rule engine' created for siem. "
                              "It is shown now and never again:\n")
    assert revoke_realm_with(key).status_code == 201

    revoked = manage("revoke_api_key", api_key.prefix)
    assert revoked.stdout == f"Revoked API key {api_key.prefix} 'SIEM rule engine' of siem.\n", revoked.stderr
    assert revoke_realm_with(key).status_code == 401
