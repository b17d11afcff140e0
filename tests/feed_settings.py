"""Settings for the provider and publisher *processes* that the remote-store tests start: the test settings
plus a feed secret, a feed signing key, and Redis publication when ``TOKENVERSION_TEST_FEED_REDIS_URL`` is set.

The signing key is generated when this module is first imported in a test run (no private key is committed)
and handed to the processes the run starts through ``TOKENVERSION_TEST_FEED_SIGNING_KEY``."""

import os

from tests.settings import *  # noqa: F403
from tests.settings import TOKENVERSION_SERVER
from tokenversion.core.feed_protocol import FeedSigner, generate_signing_key, public_value

FEED_SECRET = "feed-secret-dddddddddddddddddddddddddddddddddddd"

if not os.environ.get("TOKENVERSION_TEST_FEED_SIGNING_KEY"):
    os.environ["TOKENVERSION_TEST_FEED_SIGNING_KEY"] = generate_signing_key()[0]
FEED_SIGNING_KEY = os.environ["TOKENVERSION_TEST_FEED_SIGNING_KEY"]
FEED_VERIFY_KEY = public_value(FeedSigner.from_pem(FEED_SIGNING_KEY).public_key)

TOKENVERSION_SERVER = {
    **TOKENVERSION_SERVER,
    "FEED_SECRETS": [FEED_SECRET],
    "FEED_SIGNING_KEY": FEED_SIGNING_KEY,
    "REDIS_URL": os.environ.get("TOKENVERSION_TEST_FEED_REDIS_URL") or None,
    "REDIS_CHANNEL": os.environ.get("TOKENVERSION_TEST_FEED_CHANNEL", "tokenversion:test"),
    "PUBLISH_INTERVAL": 0.05,
    "FEED_POLL_INTERVAL": 0.02,
    # The test provider runs 16 threads (remote_helpers.gunicorn): streams on, with room for the other calls.
    "FEED_MAX_STREAMS": int(os.environ.get("TOKENVERSION_TEST_FEED_MAX_STREAMS", "8")),
}
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {"tokenversion": {"handlers": ["console"], "level": "WARNING"}},
}
