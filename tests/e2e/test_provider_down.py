"""The provider down while Keycloak issues tokens: the mapper's failure policy, observed in issued tokens.

Versions only grow, so the mapper's remembered version can only make a token be refused, never accepted.
"""

from __future__ import annotations

import jwt

from .conftest import call_api


def claims_of(token: str) -> dict:
    return jwt.decode(token, options={"verify_signature": False})


def test_provider_down_during_login(stack, person):
    oidc = stack.openid()
    # Seen once while the provider is up: the mapper remembers version 0 for this user.
    assert claims_of(oidc.token(person.username, person.password)["access_token"])["token_version"] == 0
    stack.manage("revoke", person.subject, "--reason", "compromise")  # now 1; the mapper does not know
    stranger = stack.ensure_user(f"{person.username}-2", person.password)

    stack.stop_provider()
    try:
        remembered = oidc.token(person.username, person.password)["access_token"]
        never_seen = oidc.token(f"{person.username}-2", person.password)["access_token"]
    finally:
        stack.start_provider()

    # A remembered, now stale version: the token is issued, and the API refuses it (fail closed).
    assert claims_of(remembered)["token_version"] == 0
    refused = call_api(stack, remembered)
    assert refused.status_code == 401 and 'error="invalid_token"' in refused.headers["WWW-Authenticate"]
    # Never seen (policy omit_claim): no claim, and the API refuses a token without one.
    assert claims_of(never_seen)["sub"] == stranger
    assert "token_version" not in claims_of(never_seen)
    missing = call_api(stack, never_seen)
    assert missing.status_code == 401 and 'error="invalid_token"' in missing.headers["WWW-Authenticate"]

    # Provider back: logins carry the current version again and work.
    back = oidc.token(person.username, person.password)["access_token"]
    assert claims_of(back)["token_version"] == 1
    assert call_api(stack, back).status_code == 200
