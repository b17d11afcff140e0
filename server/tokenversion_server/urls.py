from django.urls import path

from . import views
from .feed import events_view, snapshot_view, stream_view

app_name = "tokenversion"

urlpatterns = [
    path("claims", views.claims_view, name="claims"),
    path("events", views.events_view, name="events"),
    path("backchannel-logout", views.backchannel_logout_view, name="backchannel-logout"),
    path("revocations", views.RevocationView.as_view(), name="revocations"),
    path("feed/snapshot", snapshot_view, name="feed-snapshot"),
    path("feed/events", events_view, name="feed-events"),
    path("feed/stream", stream_view, name="feed-stream"),
]
