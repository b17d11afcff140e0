"""A real issuer for tests: RSA keys made at run time, a JWKS served over loopback HTTP, and a minter.

Nothing here is mocked: PyJWT fetches the key set over a real socket, exactly as it would from Keycloak.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm


class SigningKey:
    def __init__(self, kid: str | None = None) -> None:
        self.kid = kid or uuid.uuid4().hex
        self.private = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    def jwk(self) -> dict[str, Any]:
        data = json.loads(RSAAlgorithm.to_jwk(self.private.public_key()))
        data.update(kid=self.kid, use="sig", alg="RS256")
        return data


class JWKSServer:
    """Serves ``/realms/test/protocol/openid-connect/certs``; keys, failures and delay can change live."""

    def __init__(self) -> None:
        self.keys: list[SigningKey] = [SigningKey("key-1")]
        self.requests = 0
        self.fail = False
        self.delay = 0.0
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.requests += 1
                if server.delay:
                    time.sleep(server.delay)
                if server.fail or not self.path.endswith("/protocol/openid-connect/certs"):
                    self.send_response(503 if server.fail else 404)
                    self.end_headers()
                    return
                body = json.dumps({"keys": [k.jwk() for k in server.keys]}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.issuer = f"http://127.0.0.1:{self.port}/realms/test"
        self.jwks_url = f"{self.issuer}/protocol/openid-connect/certs"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    @property
    def key(self) -> SigningKey:
        return self.keys[0]

    def claims(self, **overrides: Any) -> dict[str, Any]:
        now = int(time.time())
        claims = {
            "iss": self.issuer,
            "aud": "tokenversion-api",
            "sub": "5b7f0b36-8d0e-4a35-9f49-7a5ad1b0c001",
            "typ": "Bearer",
            "azp": "web",
            "sid": "c1d2e3f4-0000-4000-8000-000000000001",
            "iat": now,
            "exp": now + 300,
            "jti": uuid.uuid4().hex,
            "preferred_username": "alice",
            "realm_access": {"roles": ["user"]},
            "token_version": 0,
        }
        for key, value in overrides.items():
            if value is _DROP:
                claims.pop(key, None)
            else:
                claims[key] = value
        return claims

    def mint(self, key: SigningKey | None = None, headers: dict[str, Any] | None = None,
             algorithm: str = "RS256", **claims: Any) -> str:
        key = key or self.key
        header = {"kid": key.kid, **(headers or {})}
        return jwt.encode(self.claims(**claims), key.private, algorithm=algorithm, headers=header)

    def logout_claims(self, **overrides: Any) -> dict[str, Any]:
        """The claims of a Keycloak 26 back-channel logout token (``DROP`` removes one)."""
        now = int(time.time())
        claims = {
            "iss": self.issuer,
            "aud": "tokenversion-backchannel",
            "sub": "5b7f0b36-8d0e-4a35-9f49-7a5ad1b0c001",
            "sid": "c1d2e3f4-0000-4000-8000-000000000001",
            "typ": "Logout",
            "iat": now,
            "exp": now + 120,
            "jti": uuid.uuid4().hex,
            "events": {"http://schemas.openid.net/event/backchannel-logout": {}},
        }
        for key, value in overrides.items():
            if value is _DROP:
                claims.pop(key, None)
            else:
                claims[key] = value
        return claims

    def mint_logout(self, key: SigningKey | None = None, headers: dict[str, Any] | None = None,
                    algorithm: str = "RS256", **claims: Any) -> str:
        """A logout token as Keycloak signs it (header typ logout+jwt; change or drop it via headers)."""
        key = key or self.key
        header = {"kid": key.kid, "typ": "logout+jwt", **(headers or {})}
        # PyJWT writes typ "JWT" unless told None; every other dropped header is simply left out.
        header = {name: (None if value is _DROP else value) for name, value in header.items()
                  if value is not _DROP or name == "typ"}
        return jwt.encode(self.logout_claims(**claims), key.private, algorithm=algorithm, headers=header)


class _Drop:
    def __repr__(self) -> str:
        return "DROP"


_DROP = _Drop()
DROP = _DROP
