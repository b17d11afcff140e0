"""Settings for the provider and publisher *processes* that the remote-store tests start: the test settings
plus a feed secret, and Redis publication when ``TOKENVERSION_TEST_FEED_REDIS_URL`` is set."""

import os

from tests.settings import *  # noqa: F403
from tests.settings import TOKENVERSION

FEED_SECRET = "feed-secret-dddddddddddddddddddddddddddddddddddd"

TOKENVERSION = {
    **TOKENVERSION,
    "FEED_SECRETS": [FEED_SECRET],
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
