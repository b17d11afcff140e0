"""What an admin sees of service reports (issue 14): the enforcement of a revocation on its page and on the
user's, the user's revoked-token uses, the list of uses with its filters, the service processes by state, and
the service keys (never the key)."""

from __future__ import annotations

import time

import pytest
from django.urls import reverse

from accounts.models import KeycloakUser
from tests.test_admin import staff_client
from tests.test_reports import SUB, _key, _revoke_user, a_use, post, report
from tokenversion_server.models import ServiceCredential

pytestmark = pytest.mark.django_db


@pytest.fixture
def scene(client, issuer):
    """Alice revoked; process 1 of orders-api enforces it after 38 ms and refuses her old token from
    203.0.113.9; process 2 reports but is behind."""
    key = _key()
    alice = KeycloakUser.objects.create(issuer=issuer.issuer, subject=SUB, username="alice",
                                        email="alice@example.com")
    event = _revoke_user()
    t = event.created_at.timestamp()
    assert post(client, key, report(issuer.issuer, pid=1, freshness=[{"as_of": t + 0.03, "reached_at": t + 0.038}],
                                    uses=[a_use(issuer.issuer, at=t + 1)])).status_code == 202
    assert post(client, key, report(issuer.issuer, pid=2, freshness=[{"as_of": t - 1, "reached_at": t + 0.01}])
                ).status_code == 202
    return key, alice, event


def _page(client, name: str, *args, **query) -> str:
    response = client.get(reverse(name, args=args), query)
    assert response.status_code == 200
    return response.content.decode()


def test_the_revocation_event_page_shows_its_enforcement(client, scene):
    _, _, event = scene
    staff_client(client, "support", "tokenversion_server.view_revocationevent")
    page = _page(client, "admin:tokenversion_server_revocationevent_change", event.pk)
    assert "enforced by 1 of 2 live service processes, the slowest after 38 ms" in page
    assert "orders-api api-7f9c:2" in page  # behind, by name


def test_the_user_page_shows_enforcement_and_revoked_token_uses(client, scene):
    _, alice, _ = scene
    staff_client(client, "support", "accounts.view_keycloakuser")
    page = _page(client, "admin:accounts_keycloakuser_change", alice.pk)
    assert "enforced by 1 of 2 live service processes, the slowest after 38 ms" in page
    assert "203.0.113.9" in page and "orders-api" in page and "/api/orders" in page


def test_the_uses_list_filters_by_service_subject_and_time(client, scene, issuer):
    staff_client(client, "support", "tokenversion_server.view_revokedtokenuse")
    name = "admin:tokenversion_server_revokedtokenuse_changelist"
    assert "203.0.113.9" in _page(client, name, service="orders-api")
    assert "203.0.113.9" not in _page(client, name, service="billing-api")
    assert "203.0.113.9" in _page(client, name, subject=SUB)
    assert "203.0.113.9" not in _page(client, name, subject="someone-else")
    year = time.gmtime().tm_year
    assert "203.0.113.9" in _page(client, name, at__year=str(year))
    assert "203.0.113.9" not in _page(client, name, at__year=str(year - 1))


def test_the_instances_list_shows_states(client, scene):
    staff_client(client, "support", "tokenversion_server.view_serviceinstance")
    name = "admin:tokenversion_server_serviceinstance_changelist"
    assert "api-7f9c:1" in _page(client, name, state="enforcing")
    assert "api-7f9c:1" not in _page(client, name, state="behind")
    assert "api-7f9c:2" in _page(client, name, state="behind")
    assert "api-7f9c:2" not in _page(client, name, state="silent")


def test_the_service_keys_list_never_shows_a_key(client, scene):
    key, _, _ = scene
    staff_client(client, "support", "tokenversion_server.revoke_tokens")
    page = _page(client, "admin:tokenversion_server_servicecredential_changelist")
    assert "orders-api" in page and key[:12] in page and key[12:] not in page
    credential = ServiceCredential.objects.get()
    response = client.post(reverse("admin:tokenversion_server_servicecredential_changelist"),
                           {"action": "revoke_keys", "_selected_action": [credential.pk]})
    assert response.status_code == 302
    assert ServiceCredential.objects.authenticate(key) is None


def test_service_keys_need_revoke_tokens(client, scene):
    staff_client(client, "viewer", "tokenversion_server.view_revocationevent")
    response = client.get(reverse("admin:tokenversion_server_servicecredential_changelist"))
    assert response.status_code == 403
