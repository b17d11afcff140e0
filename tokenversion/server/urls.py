from django.urls import path

from . import views

app_name = "tokenversion"

urlpatterns = [
    path("claims", views.claims_view, name="claims"),
    path("events", views.events_view, name="events"),
    path("revocations", views.RevocationView.as_view(), name="revocations"),
]
