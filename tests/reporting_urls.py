"""The provider's URLs and the front doors' in one URLconf: a service and its provider in one process
(tests/test_reporting_provider.py)."""

from provider.urls import urlpatterns as provider_patterns
from tests.front_doors_urls import urlpatterns as door_patterns

urlpatterns = [*provider_patterns, *door_patterns]
