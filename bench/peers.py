"""This project against its peers: the cost of checking one Keycloak access token, all on the same tokens in one run.

Cases, each timed over the same chunk of RS256 tokens in every round (order rotated each round, medians over
rounds, ratios taken per round against PyJWT's ``jwt.decode`` of the same tokens):

- the floors: the raw ``cryptography`` RSA verify of the signing input; that plus the split, base64 and
  ``json.loads`` of the payload (what any validator must do at least);
- plain PyJWT ``jwt.decode`` (key, algorithms, audience and issuer given);
- this project's DRF class (``TokenVersionAuthentication``, its public path) on **first-seen** tokens (a fresh
  validator each round, as ``bench/auth_overhead.py`` does) and on **repeated** tokens (its verified-claims
  cache answers), with the revocation check against the database store (warm) and the stateless user;
- djangorestframework-simplejwt's ``JWTAuthentication`` (database user) and ``JWTStatelessUserAuthentication``,
  both with ``JWK_URL`` (keys from the realm, as a Keycloak service needs for key rotation), and the stateless
  class with the public key given once as ``VERIFYING_KEY`` instead;
- drf-oidc-auth's ``JSONWebTokenAuthentication`` (database user), and the same without its user step;
- drf-keycloak's ``KeycloakAuthBackend`` (``get_or_create`` of the user), and the same without its user step;
- joserfc and Authlib's ``jose``: decode and claim validation with a key imported once.

Each DRF class is instantiated per request, as DRF does. None of the peers caches verified tokens, so for
them every call is a first-seen token. Keys come from a real JWKS served over loopback HTTP (with the OpenID
discovery document drf-oidc-auth reads), never from the network; the script prints how many times each
path was fetched. Users live in SQLite in a temporary directory (Django's ``User``, ``username`` = ``sub``,
as the peers' user lookups are configured here).

Before timing, every case is shown crafted tokens (bad signature, expired, wrong issuer, wrong audience, an
ID token, a revoked user); what each accepts is printed as the "checks" columns, so the table says what was
observed, not what a README claims.

    .venv/bin/pip install -e '.[dev,bench]'
    .venv/bin/python bench/peers.py            # 1000 tokens, 200 rounds of 100; plot bench/results/peers.png
    .venv/bin/python bench/peers.py --quick    # 300 tokens, 40 rounds (plot in /tmp)
"""

from __future__ import annotations

import argparse
import base64
import json
import logging
import os
import statistics
import sys
import threading
import time
import uuid
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from _report import cpu_label, run_reported
from _setup import RESULTS, interleaved_rounds, median_ratio, pyplot, save, setup_django, timed_loop

PEERS = ("djangorestframework-simplejwt", "drf-oidc-auth", "drf-keycloak", "joserfc", "authlib")
AUDIENCE = "tokenversion-api"
SUBJECTS = 50
PLAIN = "PyJWT jwt.decode"
RAW = "raw cryptography verify"
PROBES = ("bad signature", "expired 100 s ago", "wrong iss", "wrong aud", "ID token (typ)", "revoked user")


class LoopbackIssuer:
    """A Keycloak-like realm on 127.0.0.1: its JWKS and its OpenID discovery document, with a fetch count
    per path (so a run shows that no peer fetches keys per request)."""

    def __init__(self) -> None:
        from tests.jwks import SigningKey

        self.key = SigningKey("Xp3lQ1Vh0b6FJ9m2Yc8kTz4rN7uWq5sDgA0eLiHoKjM")  # 43 characters, as Keycloak's
        self.fetches: dict[str, int] = {}
        issuer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                issuer.fetches[self.path] = issuer.fetches.get(self.path, 0) + 1
                if self.path.endswith("/protocol/openid-connect/certs"):
                    body = {"keys": [issuer.key.jwk()]}
                elif self.path.endswith("/.well-known/openid-configuration"):
                    body = {"issuer": issuer.issuer, "jwks_uri": issuer.jwks_url,
                            "id_token_signing_alg_values_supported": ["RS256"]}
                else:
                    self.send_response(404)
                    self.end_headers()
                    return
                data = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.issuer = f"http://127.0.0.1:{self.httpd.server_address[1]}/realms/bench"
        self.jwks_url = f"{self.issuer}/protocol/openid-connect/certs"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def claims(self, index: int, **overrides: Any) -> dict[str, Any]:
        """An access token's claims as Keycloak 26 writes them for scopes openid and email, with the audience
        and token-version mappers (no roles, web origins or acr), about 950 bytes signed."""
        now = int(time.time())
        claims = {
            "exp": now + 3600, "iat": now, "jti": str(uuid.uuid4()), "iss": self.issuer,
            "aud": AUDIENCE, "sub": subject(index % SUBJECTS), "typ": "Bearer", "azp": "web-app",
            "sid": f"c1d2e3f4-0000-4000-8000-{index % SUBJECTS:012d}",
            "scope": "openid email",
            "preferred_username": f"user{index % SUBJECTS}", "email": f"user{index % SUBJECTS}@example.com",
            "token_version": 0,
        }
        claims.update(overrides)
        return claims

    def mint(self, index: int, **overrides: Any) -> str:
        import jwt

        return jwt.encode(self.claims(index, **overrides), self.key.private, algorithm="RS256",
                          headers={"kid": self.key.kid})


def provider_services() -> Any:
    """The provider's services module (version rows, revocations), wherever this tree keeps it: main moves it
    from ``tokenversion_server`` to ``tokenversion_server`` (``server/``)."""
    try:
        from tokenversion_server import services
    except ImportError:
        from tokenversion_server import services
    return services


def subject(index: int) -> str:
    return f"5b7f0b36-8d0e-4a35-9f49-{index:012d}"


def configure(issuer: LoopbackIssuer) -> None:
    """Django as a service with every peer installed, each set up for Keycloak's RS256 tokens and this realm."""
    setup_django(ISSUER=issuer.issuer, AUDIENCE=[AUDIENCE], CACHE_TTL=3600)
    from django.conf import settings

    settings.DEBUG = False  # no per-query logging in the peers' database lookups
    settings.SIMPLE_JWT = {
        "ALGORITHM": "RS256",
        "JWK_URL": issuer.jwks_url,  # PyJWKClient: the realm's keys, cached
        "AUDIENCE": AUDIENCE,
        "ISSUER": issuer.issuer,
        "USER_ID_CLAIM": "sub",
        "USER_ID_FIELD": "username",
        "TOKEN_TYPE_CLAIM": "typ",
        "AUTH_TOKEN_CLASSES": ("_peers_support.KeycloakAccessToken",),
    }
    settings.OIDC_AUTH = {
        "OIDC_ENDPOINT": issuer.issuer,  # discovery: issuer and jwks_uri
        "OIDC_CLAIMS_OPTIONS": {"aud": {"essential": True, "value": AUDIENCE}},  # default: presence only
        "JWT_AUTH_HEADER_PREFIX": "Bearer",  # its default is "JWT"
        "JWT_ALGORITHMS": ["RS256"],
    }
    settings.KEYCLOAK_CONFIG = {
        "ISSUER": issuer.issuer,  # keys from {ISSUER}/protocol/openid-connect/certs
        "AUDIENCE": AUDIENCE,
        "ALGORITHM": ["RS256"],
        "USER_ID_CLAIM": "sub",  # its README's advice: sub is immutable, preferred_username is not
        "USER_ID_FIELD": "username",
        "CLAIM_MAPPING": {"email": "email"},
    }


@dataclass
class Case:
    name: str
    kind: str  # floor | baseline | project | peer
    version: str
    run: Callable[[int], Any]  # index into the token set
    user: str  # what the user step does


def build_cases(issuer: LoopbackIssuer, tokens: list[str], requests: list[Any]) -> list[Case]:
    import importlib.metadata as md

    import jwt
    from _peers_support import (
        KeycloakStatelessBackend,
        OidcStatelessAuthentication,
        StaticKeyAccessToken,
        StaticKeyStatelessAuthentication,
    )
    from cryptography.hazmat.primitives.asymmetric.padding import PKCS1v15
    from cryptography.hazmat.primitives.hashes import SHA256
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
    from drf_keycloak.authentication import KeycloakAuthBackend
    from joserfc import jwt as joserfc_jwt
    from joserfc.jwk import RSAKey
    from oidc_auth.authentication import JSONWebTokenAuthentication
    from rest_framework_simplejwt.authentication import JWTAuthentication, JWTStatelessUserAuthentication
    from rest_framework_simplejwt.backends import TokenBackend

    import tokenversion.authentication as auth

    with warnings.catch_warnings(record=True):  # Authlib: "authlib.jose is deprecated, use joserfc"
        from authlib.jose import JsonWebKey, JsonWebToken

    public_key = issuer.key.private.public_key()
    pem = public_key.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo).decode()
    StaticKeyAccessToken._token_backend = TokenBackend("RS256", verifying_key=pem, audience=AUDIENCE,
                                                       issuer=issuer.issuer)
    jwk = issuer.key.jwk()
    joserfc_key = RSAKey.import_key(jwk)
    joserfc_claims = joserfc_jwt.JWTClaimsRegistry(
        iss={"essential": True, "value": issuer.issuer}, aud={"essential": True, "value": AUDIENCE},
        exp={"essential": True})
    authlib_key = JsonWebKey.import_key(jwk)
    authlib_jwt = JsonWebToken(["RS256"])
    authlib_options = {"iss": {"essential": True, "value": issuer.issuer},
                       "aud": {"essential": True, "value": AUDIENCE}, "exp": {"essential": True}}
    pkcs1, sha256 = PKCS1v15(), SHA256()

    def b64(segment: str) -> bytes:
        return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))

    def raw_verify(i: int) -> bool:
        signing_input, _, signature = tokens[i].rpartition(".")
        public_key.verify(b64(signature), signing_input.encode(), pkcs1, sha256)
        return True

    def floor(i: int) -> dict:
        header, payload, signature = tokens[i].split(".")
        public_key.verify(b64(signature), f"{header}.{payload}".encode(), pkcs1, sha256)
        return json.loads(b64(payload))

    def plain(i: int) -> dict:
        return jwt.decode(tokens[i], public_key, algorithms=["RS256"], audience=AUDIENCE, issuer=issuer.issuer)

    def drf(cls: type) -> Callable[[int], Any]:
        def authenticate(i: int) -> Any:
            return cls().authenticate(requests[i])  # DRF makes one instance per request
        return authenticate

    def joserfc_case(i: int) -> Any:
        token = joserfc_jwt.decode(tokens[i], joserfc_key, algorithms=["RS256"])
        joserfc_claims.validate(token.claims)
        return token.claims

    def authlib_case(i: int) -> Any:
        claims = authlib_jwt.decode(tokens[i], authlib_key, claims_options=authlib_options)
        claims.validate()
        return claims

    def v(name: str) -> str:
        return md.version(name)

    ours = drf(auth.TokenVersionAuthentication)
    return [
        Case(RAW, "floor", v("cryptography"), raw_verify, "-"),
        Case("split + base64 + verify + json.loads", "floor", v("cryptography"), floor, "-"),
        Case(PLAIN, "baseline", v("pyjwt"), plain, "-"),
        Case("tokenversion, first-seen token", "project", "this tree", ours, "from the claims (no DB)"),
        Case("tokenversion, repeated token", "project", "this tree", ours, "from the claims (no DB)"),
        Case("simplejwt JWTAuthentication", "peer", v("djangorestframework-simplejwt"), drf(JWTAuthentication),
             "DB read (User by username = sub), is_active"),
        Case("simplejwt JWTStatelessUserAuthentication", "peer", v("djangorestframework-simplejwt"),
             drf(JWTStatelessUserAuthentication), "TokenUser from the claims"),
        Case("simplejwt stateless, static VERIFYING_KEY", "peer", v("djangorestframework-simplejwt"),
             drf(StaticKeyStatelessAuthentication), "TokenUser from the claims"),
        Case("drf-oidc-auth JSONWebTokenAuthentication", "peer", v("drf-oidc-auth"),
             drf(JSONWebTokenAuthentication), "DB read (get_by_natural_key(sub))"),
        Case("drf-oidc-auth, no user lookup", "peer", v("drf-oidc-auth"), drf(OidcStatelessAuthentication),
             "none (subclass)"),
        Case("drf-keycloak KeycloakAuthBackend", "peer", v("drf-keycloak"), drf(KeycloakAuthBackend),
             "DB get_or_create + sync of mapped fields (writes only on change)"),
        Case("drf-keycloak, no user lookup", "peer", v("drf-keycloak"), drf(KeycloakStatelessBackend),
             "none (subclass)"),
        Case("joserfc jwt.decode + claims registry", "peer", v("joserfc"), joserfc_case, "-"),
        Case("Authlib jose jwt.decode + validate", "peer", v("authlib"), authlib_case, "-"),
    ]


def probe(cases: list[Case], issuer: LoopbackIssuer, make_request: Callable[[str], Any]) -> dict[str, dict]:
    """What each case accepts among crafted tokens: True = refused (checked), False = accepted."""
    from django.contrib.auth import get_user_model

    services = provider_services()

    revoked_sub = subject(SUBJECTS + 1)  # a user of its own, revoked before anything saw its tokens
    get_user_model().objects.get_or_create(username=revoked_sub)
    services.revoke_user(revoked_sub, reason="logout", actor=services.Actor.system("bench"))
    now = int(time.time())
    good = issuer.mint(1)
    head, _, signature = good.split(".")
    forged = issuer.claims(1, sub=subject(2))  # another user's claims under the first token's signature
    forged_payload = base64.urlsafe_b64encode(json.dumps(forged).encode()).rstrip(b"=").decode()
    crafted = {
        "bad signature": f"{head}.{forged_payload}.{signature}",
        "expired 100 s ago": issuer.mint(1, iat=now - 400, exp=now - 100),
        "wrong iss": issuer.mint(1, iss=issuer.issuer.replace("/bench", "/other")),
        "wrong aud": issuer.mint(1, aud="another-api"),
        "ID token (typ)": issuer.mint(1, typ="ID"),
        "revoked user": issuer.mint(1, sub=revoked_sub),
    }
    results: dict[str, dict] = {}
    logging.disable(logging.CRITICAL)  # drf-oidc-auth logs a traceback for every refusal
    for case in cases:
        results[case.name] = {}
        for name, token in [("valid", good), *crafted.items()]:
            try:
                accepted = run_one(case, token, make_request) is not None
            except Exception:  # every refusal: each peer has its own exception classes
                accepted = False
            results[case.name][name] = not accepted
        if results[case.name]["valid"]:
            raise SystemExit(f"{case.name} refused a valid token: its configuration is wrong")
    logging.disable(logging.NOTSET)
    return results


def run_one(case: Case, token: str, make_request: Callable[[str], Any]) -> Any:
    """Run a case on a token outside the timed set: cases read the set by index, and its last slot is kept
    for the probes (never timed)."""
    TOKEN_SET["tokens"][-1], TOKEN_SET["requests"][-1] = token, make_request(token)
    return case.run(len(TOKEN_SET["tokens"]) - 1)


TOKEN_SET: dict[str, list] = {}


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="300 tokens, 40 rounds, plot in /tmp")
    parser.add_argument("--tokens", type=int, help="distinct tokens (default 1000)")
    parser.add_argument("--chunk", type=int, default=100, help="tokens per case per round (default 100)")
    parser.add_argument("--rounds", type=int, help="rounds (default 200)")
    parser.add_argument("--plot", type=Path, help="PNG path (default bench/results/peers.png)")
    args = parser.parse_args(argv)
    n_tokens = args.tokens or (300 if args.quick else 1000)
    rounds = args.rounds or (40 if args.quick else 200)
    chunk = min(args.chunk, n_tokens)
    path = args.plot or (Path("/tmp") if args.quick else RESULTS) / "peers.png"

    issuer = LoopbackIssuer()
    configure(issuer)
    from django.contrib.auth import get_user_model
    from django.test import RequestFactory
    from rest_framework.request import Request

    import tokenversion.authentication as auth
    from tokenversion.core.tokens import AccessTokenValidator
    from tokenversion.runtime import get_runtime
    services = provider_services()

    factory = RequestFactory()

    def make_request(token: str) -> Request:
        return Request(factory.get("/", HTTP_AUTHORIZATION=f"Bearer {token}"))

    tokens = [issuer.mint(i) for i in range(n_tokens)] + [""]  # the last slot is the probes'
    requests = [make_request(t) for t in tokens[:-1]] + [None]
    TOKEN_SET.update(tokens=tokens, requests=requests)
    users = get_user_model().objects
    for i in range(SUBJECTS):
        services.current_version(subject(i))
        users.get_or_create(username=subject(i), defaults={"email": f"user{i}@example.com"})
    cases = build_cases(issuer, tokens, requests)
    for case in cases:  # keys fetched, store state cached, every token accepted once by every case
        for i in range(n_tokens):
            if case.run(i) is None:
                raise SystemExit(f"{case.name} did not authenticate token {i}")
    checks = probe(cases, issuer, make_request)

    warm = auth.get_validator()
    current: dict[str, range] = {}
    offsets = iter(range(0, 10**9, chunk))

    def next_chunk() -> None:
        start = next(offsets) % (n_tokens - chunk + 1) if n_tokens > chunk else 0
        current["indexes"] = range(start, start + chunk)

    def first_seen(case: Case) -> Callable[[], float]:
        def round_() -> float:
            # a fresh validator: an empty claims cache
            get_runtime().use_validator(AccessTokenValidator(warm.policy, jwk_client=warm.jwk_client))
            try:
                return timed_loop(case.run, current["indexes"])
            finally:
                get_runtime().use_validator(warm)
        return round_

    timed: dict[str, Callable[[], float]] = {}
    for case in cases:
        if case.name == "tokenversion, first-seen token":
            timed[case.name] = first_seen(case)
        else:
            timed[case.name] = (lambda c: lambda: timed_loop(c.run, current["indexes"]))(case)

    print(f"token set: {n_tokens} distinct Keycloak-shaped RS256 tokens (2048-bit key, 43-character kid, "
          f"{len(tokens[0])} bytes each), {SUBJECTS} users; {rounds} rounds of {chunk} tokens per case, "
          "order rotated each round")
    samples = interleaved_rounds(timed, rounds, before_round=next_chunk)
    print(f"JWKS server fetches over the whole run: {dict(sorted(issuer.fetches.items()))}")
    print_table(cases, samples, checks, rounds)
    plot(cases, samples, path, rounds)
    issuer.close()


def print_table(cases: list[Case], samples: dict[str, list[float]], checks: dict[str, dict], rounds: int) -> None:
    def mark(name: str, probe_name: str) -> str:
        return "yes" if checks[name][probe_name] else "**no**"

    print(f"\n| case | version | us / request (median of {rounds} rounds) | ratio to PyJWT jwt.decode | "
          f"ratio to raw verify | {' | '.join(PROBES)} | user |")
    print("| --- | --- | --- | --- | --- |" + " --- |" * (len(PROBES) + 1))
    for case in cases:
        med = statistics.median(samples[case.name]) * 1e6
        to_plain = median_ratio(samples, case.name, PLAIN)
        to_raw = median_ratio(samples, case.name, RAW)
        print(f"| {case.name} | {case.version} | {med:.1f} | {to_plain[0]:.2f} ({to_plain[1]:.2f}..{to_plain[2]:.2f}) "
              f"| {to_raw[0]:.2f} | {' | '.join(mark(case.name, p) for p in PROBES)} | {case.user} |")
    print("\nchecks: yes = the crafted token was refused; **no** = accepted. ratio: median over rounds of "
          "case / PyJWT in the same round (min..max).")


def plot(cases: list[Case], samples: dict[str, list[float]], path: Path, rounds: int) -> None:
    plt = pyplot()
    if plt is None:
        return
    colors = {"floor": "#aaaaaa", "baseline": "#555555", "project": "#d9822b", "peer": "#2b8cd9"}
    names = [c.name for c in cases]
    medians = [statistics.median(samples[n]) * 1e6 for n in names]
    fig, axis = plt.subplots(figsize=(9, 5))
    bars = axis.barh(names, medians, color=[colors[c.kind] for c in cases])
    for bar, name in zip(bars, names, strict=True):
        ratio = median_ratio(samples, name, PLAIN)[0]
        axis.text(bar.get_width(), bar.get_y() + bar.get_height() / 2, f" {bar.get_width():.0f} us, {ratio:.2f}x",
                  va="center", fontsize=8)
    axis.invert_yaxis()
    axis.set_xlim(0, max(medians) * 1.3)
    axis.tick_params(axis="y", labelsize=8)
    axis.set_xlabel("median us / request (labels: ratio to PyJWT jwt.decode, per round)")
    axis.set_title(f"one Keycloak RS256 token, {rounds} rounds; {cpu_label()}; load {os.getloadavg()[0]:.2f}",
                   fontsize=9)
    save(fig, path)


if __name__ == "__main__":
    sys.exit(run_reported(main, packages=PEERS))
