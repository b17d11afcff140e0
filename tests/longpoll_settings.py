"""Settings for the provider process of tests/test_feed_long_polls.py: the feed settings with a small long-poll
cap, so that reaching it takes a few real requests."""

from tests.feed_settings import *  # noqa: F403
from tests.feed_settings import TOKENVERSION_SERVER

LONG_POLL_CAP = 2

TOKENVERSION_SERVER = {**TOKENVERSION_SERVER, "FEED_MAX_LONG_POLLS": LONG_POLL_CAP}
