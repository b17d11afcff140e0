import logging

from django.db import DatabaseError, connections
from django.http import JsonResponse
from rest_framework.response import Response
from rest_framework.views import APIView


class WhoAmIView(APIView):
    """A protected endpoint of the provider itself: who the bearer token says you are."""

    def get(self, request):
        claims = request.auth
        return Response({
            "sub": claims["sub"],
            "username": request.user.get_username(),
            "token_version": claims.get("token_version"),
        })


logger = logging.getLogger("tokenversion.server")


def health(request):
    """Liveness: the process answers. Never touches the database, so an outage does not restart workers."""
    return JsonResponse({"status": "ok"})


def ready(request):
    """Readiness: this process can serve the claims endpoint, i.e. its database answers a query.

    503 otherwise, so a load balancer stops sending Keycloak's mapper calls (and services' feed reads) here.
    """
    try:
        with connections["default"].cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except DatabaseError as exc:
        logger.warning("readiness: database unavailable: %s", " ".join(str(exc).split()))
        response = JsonResponse({"status": "unavailable", "detail": "database unreachable"}, status=503)
        response["Retry-After"] = "5"
        return response
    return JsonResponse({"status": "ready"})
