"""A FastAPI or Starlette service as its own uvicorn process, configured from the environment
(tests/test_asgi_redis.py): ``TV_DOOR`` (fastapi or starlette), ``TV_ISSUER``, ``TV_FEED_URL``,
``TV_FEED_SECRET``, ``TV_REDIS_URL``, ``TV_REDIS_CHANNEL``, ``TV_VERIFY_KEY``. No Django is imported."""

import os
import sys

from tests.asgi_front_doors import fastapi_app, starlette_app
from tokenversion.standalone import make_verifier

verifier = make_verifier(
    issuer=os.environ["TV_ISSUER"],
    audience="tokenversion-api",
    store="tokenversion.stores.redis.RedisStore",
    store_options={"redis_url": os.environ["TV_REDIS_URL"], "channel": os.environ["TV_REDIS_CHANNEL"],
                   "feed_url": os.environ["TV_FEED_URL"], "secret": os.environ["TV_FEED_SECRET"],
                   "verify_keys": [os.environ["TV_VERIFY_KEY"]]},
)
app = {"fastapi": fastapi_app, "starlette": starlette_app}[os.environ["TV_DOOR"]](verifier)
assert "django" not in sys.modules, "a Django-free front door imported Django"
