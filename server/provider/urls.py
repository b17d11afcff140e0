from django.contrib import admin
from django.urls import include, path

from tokenversion_server.metrics import metrics_view

from .views import WhoAmIView, health, ready

urlpatterns = [
    path("admin/", admin.site.urls),
    path("tokenversion/", include("tokenversion_server.urls")),
    path("api/whoami", WhoAmIView.as_view(), name="whoami"),
    path("health", health, name="health"),
    path("ready", ready, name="ready"),
    path("metrics", metrics_view, name="metrics"),  # Prometheus; bearer METRICS_SECRETS (docs/operations.md)
]
