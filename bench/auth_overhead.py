"""Per-request cost of TokenVersionAuthentication against plain ``jwt.decode`` on the same token.

Two cases for the class, both with the revocation check against the database store (warm: its per-process
cache holds the user's state) and building the user:

- first-seen token: a validator whose verified-claims cache is off, so every call verifies the signature
  exactly as a token never seen before would (header checks, key lookup, PyJWT's decode, type and version);
- repeated token: the default validator, whose verified-claims cache answers until the token's exp.

Plain ``jwt.decode`` verifies the same RS256 token with the same key. Prints the ratios.

    .venv/bin/python bench/auth_overhead.py
"""

from __future__ import annotations

import sys

from _setup import interleaved, machine, setup_django

sys.path.insert(0, ".")


def main() -> None:
    from tests.jwks import JWKSServer

    issuer = JWKSServer()
    setup_django(ISSUER=issuer.issuer, AUDIENCE=["tokenversion-api"], CACHE_TTL=60)

    from dataclasses import replace

    import jwt
    from django.test import RequestFactory
    from rest_framework.request import Request

    from tokenversion.authentication import TokenVersionAuthentication, get_validator
    from tokenversion.core.tokens import AccessTokenValidator
    from tokenversion.server import services

    token = issuer.mint()
    public_key = issuer.key.private.public_key()
    services.current_version(issuer.claims()["sub"])
    request = Request(RequestFactory().get("/", HTTP_AUTHORIZATION=f"Bearer {token}"))
    repeated = TokenVersionAuthentication()
    assert repeated.authenticate(request) is not None  # warm: keys fetched, state cached
    shared = get_validator()
    uncached = AccessTokenValidator(replace(shared.policy, claims_cache_size=0), jwk_client=shared.jwk_client)

    class FirstSeen(TokenVersionAuthentication):
        def get_validated_claims(self, raw: str) -> dict:
            return uncached.validate(raw)

    first_seen = FirstSeen()
    assert first_seen.authenticate(request) is not None

    def plain() -> None:
        jwt.decode(token, public_key, algorithms=["RS256"], audience="tokenversion-api", issuer=issuer.issuer)

    times = interleaved({
        "plain jwt.decode": plain,
        "class, first-seen token": lambda: first_seen.authenticate(request),
        "class, repeated token": lambda: repeated.authenticate(request),
    })
    base = times["plain jwt.decode"]
    print(f"machine: {machine()}")
    for name, seconds in times.items():
        print(f"{name:28s} {seconds * 1e6:8.1f} us/request   {seconds / base:5.2f}x plain decode")
    for name, target in (("class, first-seen token", 1.2), ("class, repeated token", 0.2)):
        ratio = times[name] / base
        print(f"RATIO {name} / plain decode = {ratio:.2f} (target <= {target}: "
              f"{'met' if ratio <= target else 'MISSED'})")
    issuer.close()


if __name__ == "__main__":
    main()
