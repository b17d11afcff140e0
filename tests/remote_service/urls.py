import os

from django.http import JsonResponse
from django.urls import path
from rest_framework.response import Response
from rest_framework.views import APIView

from tokenversion.metrics import metrics_view


class WhoAmI(APIView):
    def get(self, request):
        return Response({"sub": request.auth["sub"], "token_version": request.auth.get("token_version"),
                         "pid": os.getpid()})


def health(request):
    from tokenversion.stores import get_store

    store = get_store()
    return JsonResponse({"staleness": min(store.staleness(), 1e9), "stats": store.stats})


urlpatterns = [path("api/whoami", WhoAmI.as_view()), path("health", health), path("metrics", metrics_view)]
