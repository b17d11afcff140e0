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


def health(request):
    return JsonResponse({"status": "ok"})
