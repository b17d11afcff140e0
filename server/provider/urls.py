from django.contrib import admin
from django.urls import include, path

from .views import WhoAmIView, health, ready

urlpatterns = [
    path("admin/", admin.site.urls),
    path("tokenversion/", include("tokenversion_server.urls")),
    path("api/whoami", WhoAmIView.as_view(), name="whoami"),
    path("health", health, name="health"),
    path("ready", ready, name="ready"),
]
