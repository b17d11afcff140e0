"""The provider process of the Prometheus test (tests/test_prometheus.py): the feed settings plus metrics."""

from tests.feed_settings import *  # noqa: F403
from tests.feed_settings import TOKENVERSION

METRICS_SECRET = "metrics-secret-eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee"

TOKENVERSION = {**TOKENVERSION, "METRICS": True, "METRICS_SECRETS": [METRICS_SECRET]}
