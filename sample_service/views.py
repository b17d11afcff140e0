from rest_framework.response import Response
from rest_framework.views import APIView


class OrdersView(APIView):
    """Stands for any internal API: answers only while the bearer token is valid and not revoked."""

    def get(self, request):
        claims = request.auth
        return Response({
            "orders": [],
            "sub": claims["sub"],
            "username": request.user.get_username(),
            "sid": claims.get("sid"),
            "token_version": claims.get("token_version"),
        })
