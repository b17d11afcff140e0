"""One protected endpoint per front door, all answering the same thing (tests/test_front_doors.py)."""

from django.http import JsonResponse
from django.urls import path
from ninja import NinjaAPI
from rest_framework.response import Response
from rest_framework.views import APIView

from tokenversion.middleware import bearer_required
from tokenversion.ninja import TokenVersionBearer, add_exception_handlers


class DrfWhoAmI(APIView):  # the project's default classes: TokenVersionAuthentication first, IsAuthenticated
    def get(self, request):
        return Response({"sub": request.auth["sub"]})


@bearer_required
def plain_whoami(request):
    return JsonResponse({"sub": request.auth["sub"]})


api = add_exception_handlers(NinjaAPI(auth=TokenVersionBearer(), urls_namespace="front-doors"))


@api.get("/whoami")
def ninja_whoami(request):
    return {"sub": request.auth["sub"]}


urlpatterns = [path("drf/whoami", DrfWhoAmI.as_view()), path("plain/whoami", plain_whoami),
               path("ninja/", api.urls)]
