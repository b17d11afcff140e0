from django.http import JsonResponse
from django.urls import path

from .views import OrdersView


def health(request):
    return JsonResponse({"status": "ok"})


urlpatterns = [
    path("api/orders", OrdersView.as_view(), name="orders"),
    path("health", health, name="health"),
]
