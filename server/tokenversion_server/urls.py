from django.urls import path

from .api import RevocationApiView
from .feed import feed_events_view, snapshot_view, stream_view, versions_view
from .machine import backchannel_logout_view, claims_view, keycloak_events_view
from .metrics import feed_in_progress, timed_claims

app_name = "tokenversion"

urlpatterns = [
    path("claims", timed_claims(claims_view), name="claims"),
    path("events", keycloak_events_view, name="events"),
    path("backchannel-logout", backchannel_logout_view, name="backchannel-logout"),
    path("revocations", RevocationApiView.as_view(), name="revocations"),
    path("feed/snapshot", feed_in_progress("snapshot", snapshot_view), name="feed-snapshot"),
    path("feed/events", feed_in_progress("events", feed_events_view), name="feed-events"),
    path("feed/versions", feed_in_progress("versions", versions_view), name="feed-versions"),
    path("feed/stream", feed_in_progress("stream", stream_view), name="feed-stream"),
]
