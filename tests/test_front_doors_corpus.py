"""The attack corpus (tests/test_attack_corpus.py, run there through the DRF class) through the doors without
Django: FastAPI's dependency, Starlette's backend and the forward-auth service. Each hostile token must get
exactly the DRF class's answer: the same status, body and RFC 6750 challenge, and the attacker's server is
never contacted."""

from __future__ import annotations

import pytest
from starlette.testclient import TestClient

from tests import test_attack_corpus as corpus
from tests.jwks import SigningKey
from tests.test_front_doors import ASGI, DOORS, verifier_like_the_settings

pytestmark = pytest.mark.django_db(transaction=True)

attacker, keys, ctx = corpus.attacker, corpus.keys, corpus.ctx  # the corpus's fixtures


@pytest.fixture(autouse=True)
def issuer_signs_with_key_1(jwks_server):
    """The corpus assumes the issuer signs with kid ``key-1`` (its impostor and other-key cases do); a test
    that ran before this module in the same session may have left a rotated key first in the issuer's set."""
    saved = jwks_server.keys
    if saved[0].kid != "key-1":
        jwks_server.keys = [SigningKey("key-1")]
    yield
    jwks_server.keys = saved


@pytest.mark.parametrize("door", list(ASGI))
@pytest.mark.parametrize("case", corpus.CASES, ids=[f"{c.attack}: {c.name}" for c in corpus.CASES])
def test_hostile_token_gets_the_drf_answer_without_django(ctx, case, door):
    if case.setup is not None:
        case.setup(ctx)  # settings first: the verifier is made from them
    value = case.make(ctx)
    header = value if case.header else f"Bearer {value}"
    attacker_requests = ctx.attacker.requests
    client = TestClient(ASGI[door](verifier_like_the_settings()))
    # On the wire a header is bytes: a non-ASCII value goes as UTF-8 (an ASGI server hands it over undecoded).
    response = client.get(DOORS[door], headers={"Authorization": header.encode()})
    assert response.status_code == case.status, response.content
    assert response.json() == {"detail": case.detail, "code": case.code}
    if case.status == 401:
        expected = f'Bearer realm="api", error="invalid_token", error_description="{case.detail}"'
    else:
        expected = 'Bearer realm="api", error="invalid_request"'
    assert response.headers["WWW-Authenticate"] == expected
    assert ctx.attacker.requests == attacker_requests
