"""FastAPI and Starlette services under uvicorn with the Redis store: real Redis (the shared test server, a
channel per test), the provider's certifying publisher as its own process, the provider's feed for the
snapshot, signed tokens. 200, then 401 ``token_revoked`` once the revocation is published (the fast path),
with the challenge of every other door. The service process imports no Django (``tests/asgi_service.py``
asserts it)."""

from __future__ import annotations

import sys
import uuid

import pytest

from tests import test_remote_stores as remote
from tests.feed_settings import FEED_SECRET, FEED_VERIFY_KEY
from tests.remote_helpers import Process, free_port, http_get, wait_until
from tests.test_fastapi_install import get
from tokenversion_server import services

pytestmark = pytest.mark.django_db(transaction=True)

# The remote-store tests' fixtures: the provider process, the shared Redis, a channel per test.
provider, redis_url, channel, db_name = remote.provider, remote.redis_url, remote.channel, remote.db_name


@pytest.mark.parametrize("door", ["fastapi", "starlette"])
def test_an_asgi_service_with_the_redis_store_refuses_a_revoked_token(door, provider, redis_url, channel, db_name,
                                                                      jwks_server, tv_settings):
    remote.publish_here(tv_settings, redis_url, channel)
    publisher = remote.start_publisher(db_name, jwks_server, redis_url, channel)
    port = free_port()
    service = Process(f"asgi-{door}", [sys.executable, "-m", "uvicorn", "tests.asgi_service:app", "--host", "127.0.0.1",
                                       "--port", str(port), "--log-level", "warning"],
                      {"TV_DOOR": door, "TV_ISSUER": jwks_server.issuer, "TV_FEED_URL": remote.feed_url(provider),
                       "TV_FEED_SECRET": FEED_SECRET, "TV_REDIS_URL": redis_url, "TV_REDIS_CHANNEL": channel,
                       "TV_VERIFY_KEY": FEED_VERIFY_KEY, "DJANGO_SETTINGS_MODULE": "no.such.module"}).start()
    url = f"http://127.0.0.1:{port}/whoami"
    try:
        subject = str(uuid.uuid4())
        token = jwks_server.mint(sub=subject)

        def accepted():
            assert service.running, service.output()
            try:
                return get(url, token)[0] == 200
            except OSError:
                return False

        wait_until(accepted, 30, interval=0.1, what="the service to serve and prove freshness")
        services.revoke_user(subject, reason="logout", actor=services.Actor.system("asgi redis test"))
        status, headers, body = wait_until(lambda: (a := get(url, token))[0] != 200 and a, 2,
                                           what="the revocation to reach the service through Redis")
        assert (status, body["code"]) == (401, "token_revoked")
        assert headers["WWW-Authenticate"] == ('Bearer realm="api", error="invalid_token", '
                                               'error_description="token version revoked"')
        assert http_get(url)[0] == 401
    finally:
        service.stop()
        publisher.stop()
