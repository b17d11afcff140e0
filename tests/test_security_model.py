"""Claims docs/security.md makes that no other test holds: the admin cannot un-revoke, and secrets rotate."""

from __future__ import annotations

import json

import pytest
from django.contrib import admin
from django.contrib.auth.models import User
from django.test import RequestFactory

from tests.conftest import EVENT_SECRET
from tokenversion_server.models import RealmRevocation, RevocationEvent, RevokedSession, SubjectVersion

pytestmark = pytest.mark.django_db

NEW_EVENT_SECRET = "event-secret-new-dddddddddddddddddddddddddddddddd"


@pytest.mark.parametrize("model", [SubjectVersion, RevokedSession, RealmRevocation, RevocationEvent])
def test_no_admin_user_can_change_or_delete_revocation_state(model):
    """Changing or deleting a row would un-revoke tokens without an audit row; not even a superuser may."""
    request = RequestFactory().get("/admin/")
    request.user = User.objects.create_superuser("root", "root@example.com", "x" * 16)
    model_admin = admin.site._registry[model]
    assert model_admin.has_change_permission(request) is False
    assert model_admin.has_delete_permission(request) is False


def _event(client, secret: str, event_id: str):
    body = json.dumps({"id": event_id, "type": "user.logout", "user_id": "u-1"})
    return client.generic("POST", "/tokenversion/events", body, content_type="application/json",
                          HTTP_X_TOKENVERSION_SECRET=secret)


def test_event_secret_rotation_as_documented(client, tv_settings):
    """Add the new secret next to the old (both work), then remove the old (refused, nothing written)."""
    tv_settings(EVENT_SECRETS=f"{NEW_EVENT_SECRET},{EVENT_SECRET}")  # the environment's comma-separated form
    assert _event(client, EVENT_SECRET, "ev-old").status_code == 200
    assert _event(client, NEW_EVENT_SECRET, "ev-new").status_code == 200

    tv_settings(EVENT_SECRETS=[NEW_EVENT_SECRET])
    before = RevocationEvent.objects.count()
    refused = _event(client, EVENT_SECRET, "ev-late")
    assert refused.status_code == 401 and refused.json()["error"] == "invalid_secret"
    assert RevocationEvent.objects.count() == before
    assert _event(client, NEW_EVENT_SECRET, "ev-after").status_code == 200
