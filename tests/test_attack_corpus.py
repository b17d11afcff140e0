"""A corpus of hostile and malformed access tokens, fed to ``TokenVersionAuthentication`` through a real DRF view.

Every case must be refused with 401 and ``WWW-Authenticate: Bearer ... error="invalid_token"``: never accepted,
never a 5xx. Only a malformed ``Authorization`` header (no token after ``Bearer``, or more than one value) is a
malformed *request*, 400 ``invalid_request`` (RFC 6750 section 3.1); those cases say so.

Each case names the attack class it belongs to (the classes of ``../shared/notes/standards.md``, mapped in
``docs/security.md``) and the exact error description, which names the check that stops it. So a case that is
refused for the wrong reason (an ``alg: none`` token refused only because its ``kid`` is unknown, say) fails,
and ``test_every_attack_class_has_cases`` keeps every class covered.

Keys are real: the issuer's JWKS is served over loopback HTTP (``tests/jwks.py``), and a second loopback server
plays the attacker, serving its own key set at the URLs the ``jku``/``x5u`` headers name; it must never be
contacted. Tokens an attacker could not make (signed with the issuer's own key) model a confused or
compromised issuer and the parser's own strictness: duplicate members, numeric strings for dates, and so on.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding
from cryptography.x509.oid import NameOID
from jwt.algorithms import ECAlgorithm

from tests.jwks import DROP, JWKSServer, SigningKey
from tokenversion_server import services

URL = "/api/whoami"
SUB = "5b7f0b36-8d0e-4a35-9f49-7a5ad1b0c001"
SID = "c1d2e3f4-0000-4000-8000-000000000001"
API = "tokenversion-api"
pytestmark = pytest.mark.django_db

# The attack classes of ../shared/notes/standards.md, plus the header rule of RFC 6750 and this project's claims.
ATTACK_CLASSES = {
    "alg-none": "alg none in any spelling, with or without a signature",
    "hmac-with-public-key": "HS256/384/512 signed with the RSA public key (PEM, JWK)",
    "kid-tricks": "kid path traversal, injection, huge, not a string, missing, another key's",
    "key-headers": "jku, x5u, embedded jwk, x5c: keys the token brings along",
    "ecdsa-zero-signature": "psychic signatures (CVE-2022-21449): r = s = 0 and friends",
    "signature": "wrong key with the right kid, empty, truncated or transplanted signature, tampered payload",
    "time-claims": "expired, not yet valid, iat in the future, non-numeric or missing dates",
    "issuer-audience": "other realm, trailing slash, case, prefix, array; aud missing, empty, other",
    "token-type": "ID, refresh and logout tokens; azp without aud; wrong typ",
    "crit": "unknown critical header parameters",
    "size-nesting": "huge tokens, headers or claims; deeply nested JSON",
    "duplicate-members": "a JSON member named twice, in the header or the payload",
    "encoding": "padding, non-base64url characters, non-UTF-8, other UTFs, segments, whitespace",
    "serialization": "JWE (five segments) and JWS JSON serialization",
    "version-claim": "the version claim missing or malformed (string, float, bool, negative, huge, null, ...)",
    "identity-claims": "sub and sid that no revocation could be stored under",
    "revoked": "stale version, revoked sid, realm epoch and logout in the token's own second",
    "authorization-header": "a malformed Authorization header (RFC 6750: 400 invalid_request)",
}


# --- building tokens by hand ---------------------------------------------------------------------------------


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def to_json(value: Any) -> bytes:
    """Bytes are taken as they are (hand-written JSON); anything else is serialised compactly."""
    return value if isinstance(value, bytes) else json.dumps(value, separators=(",", ":")).encode()


class ECKey:
    """A P-256 key served in the issuer's JWKS, for the ECDSA cases (the test issuer is RSA only otherwise)."""

    def __init__(self, kid: str) -> None:
        self.kid = kid
        self.private = ec.generate_private_key(ec.SECP256R1())

    def jwk(self) -> dict[str, Any]:
        data = json.loads(ECAlgorithm.to_jwk(self.private.public_key()))
        data.update(kid=self.kid, use="sig", alg="ES256")
        return data


@dataclass
class Ctx:
    """What a case builds its token from: the issuer, the attacker's server, and keys made once per module."""

    server: JWKSServer
    attacker: JWKSServer
    keys: dict[str, Any]
    tv_settings: Callable[..., None]
    state: dict[str, Any] = field(default_factory=dict)

    @property
    def kid(self) -> str:
        return self.server.key.kid

    def claims(self, **overrides: Any) -> dict[str, Any]:
        return self.server.claims(**overrides)

    def header(self, **overrides: Any) -> dict[str, Any]:
        header = {"alg": "RS256", "typ": "JWT", "kid": self.kid, **overrides}
        return {k: v for k, v in header.items() if v is not DROP}

    def rs256(self, header: Any, payload: Any, key: Any = None) -> str:
        """A compact JWS signed with RS256 by ``key`` (the issuer's by default), header and payload as given."""
        private = (key or self.server.key).private
        signing_input = f"{b64(to_json(header))}.{b64(to_json(payload))}"
        signature = private.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
        return f"{signing_input}.{b64(signature)}"

    def issuer_signed(self, payload: Any = None, **header: Any) -> str:
        return self.rs256(self.header(**header), self.claims() if payload is None else payload)

    def unsigned(self, header: Any, payload: Any = None, signature: bytes = b"") -> str:
        payload = self.claims() if payload is None else payload
        return f"{b64(to_json(header))}.{b64(to_json(payload))}.{b64(signature)}"

    def hmac(self, alg: str, secret: bytes) -> str:
        digest = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}[alg]
        signing_input = f"{b64(to_json(self.header(alg=alg)))}.{b64(to_json(self.claims()))}"
        return f"{signing_input}.{b64(hmac.new(secret, signing_input.encode(), digest).digest())}"

    def es256(self, signature: bytes | None = None, kid: str = "ec-1", key: Any = None) -> str:
        """ES256 signed with the EC key (JWS raw r||s), or carrying ``signature`` instead."""
        signing_input = f"{b64(to_json(self.header(alg='ES256', kid=kid)))}.{b64(to_json(self.claims()))}"
        if signature is None:
            signature = ECAlgorithm(ECAlgorithm.SHA256).sign(signing_input.encode(), (key or self.keys["ec"]).private)
        return f"{signing_input}.{b64(signature)}"

    def segments(self, token: str | None = None) -> list[str]:
        return (token or self.server.mint()).split(".")


def public_pem(key: SigningKey) -> bytes:
    return key.private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def self_signed_cert(key: SigningKey) -> str:
    """A base64 DER certificate for ``key``, as an ``x5c`` entry would carry it."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "attacker")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.private.public_key())
        .serial_number(1).not_valid_before(now).not_valid_after(now + dt.timedelta(days=1))
        .sign(key.private, hashes.SHA256())
    )
    return base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()


def now() -> int:
    return int(time.time())


# P-256 group order: r = s = n is the other classic "psychic signature".
P256_N = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551


def enable_es256(ctx: Ctx) -> None:
    ctx.server.keys = [*ctx.server.keys, ctx.keys["ec"]]
    ctx.tv_settings(ALGORITHMS=["RS256", "ES256"])


def add_second_issuer_key(ctx: Ctx) -> None:
    ctx.server.keys = [*ctx.server.keys, ctx.keys["second"]]


def revoke_user(ctx: Ctx) -> None:
    services.revoke_user(SUB, reason="logout", actor=services.Actor.system("corpus"))


def revoke_session(ctx: Ctx) -> None:
    services.revoke_session(SID, subject=SUB, actor=services.Actor.system("corpus"))


def revoke_realm(ctx: Ctx) -> None:
    rev = services.revoke_realm(actor=services.Actor.system("corpus"))
    ctx.state["second"] = int(rev.at.timestamp())


def logout_without_mapper(ctx: Ctx) -> None:
    ctx.tv_settings(REQUIRE_VERSION_CLAIM=False, CHECK_LOGOUT_TIME=True)
    rev = services.revoke_user(SUB, reason="logout", actor=services.Actor.system("corpus"))
    ctx.state["second"] = int(rev.at.timestamp())


# --- the corpus ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    name: str
    attack: str
    make: Callable[[Ctx], str]
    detail: str  # the exact error description: which check stops it
    code: str = "token_invalid"
    setup: Callable[[Ctx], None] | None = None
    header: bool = False  # make() returns the whole Authorization header, not a token
    status: int = 401


def _signature(ctx: Ctx) -> bytes:
    sig = ctx.segments()[2]
    return base64.urlsafe_b64decode(sig + "=" * (-len(sig) % 4))


def _with_signature(ctx: Ctx, signature: bytes) -> str:
    return ".".join(ctx.segments()[:2]) + "." + b64(signature)


def _spare_bits_set(last: str) -> str:
    """The last character of a 256-byte signature carries 2 bits and 4 spare ones; set a spare one."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    return alphabet[alphabet.index(last) | 1]


def _replace_payload(ctx: Ctx, **claims: Any) -> str:
    """A genuine token whose payload segment is swapped for a tampered one; the signature stays."""
    header, _, signature = ctx.segments()
    return f"{header}.{b64(to_json(ctx.claims(**claims)))}.{signature}"


CASES: list[Case] = [
    # alg none: refused by the allow-list before any key is looked up.
    *[Case(f"alg {alg!r}, empty signature", "alg-none", (lambda a: lambda c: c.unsigned(c.header(alg=a)))(alg),
           "algorithm not allowed") for alg in ("none", "None", "NONE", "nOnE")],
    Case("alg none with the issuer's genuine signature", "alg-none",
         lambda c: c.unsigned(c.header(alg="none")).rsplit(".", 1)[0] + "." + c.segments()[2],
         "algorithm not allowed"),
    Case("alg missing", "alg-none", lambda c: c.unsigned(c.header(alg=DROP), signature=b"x"),
         "algorithm not allowed"),
    Case("alg empty", "alg-none", lambda c: c.unsigned(c.header(alg=""), signature=b"x"), "algorithm not allowed"),
    Case("alg a list", "alg-none", lambda c: c.unsigned(c.header(alg=["RS256"]), signature=b"x"),
         "algorithm not allowed"),
    Case("alg rs256 (case matters)", "alg-none", lambda c: c.rs256(c.header(alg="rs256"), c.claims()),
         "algorithm not allowed"),
    # HMAC with the public key: refused by the allow-list (and E003 keeps HS* out of it).
    *[Case(f"{alg} with the public key as PEM", "hmac-with-public-key",
           (lambda a: lambda c: c.hmac(a, public_pem(c.server.key)))(alg), "algorithm not allowed")
      for alg in ("HS256", "HS384", "HS512")],
    *[Case(f"{alg} with the public key as JWK JSON", "hmac-with-public-key",
           (lambda a: lambda c: c.hmac(a, json.dumps(c.server.key.jwk()).encode()))(alg), "algorithm not allowed")
      for alg in ("HS256", "HS384", "HS512")],
    Case("HS256 with the modulus n as the secret", "hmac-with-public-key",
         lambda c: c.hmac("HS256", c.server.key.jwk()["n"].encode()), "algorithm not allowed"),
    # kid: an opaque lookup string, bounded; never a path or a query.
    Case("kid path traversal", "kid-tricks", lambda c: c.issuer_signed(kid="../../../../etc/passwd"),
         "unknown signing key"),
    Case("kid /dev/null", "kid-tricks", lambda c: c.issuer_signed(kid="/dev/null"), "unknown signing key"),
    Case("kid SQL injection", "kid-tricks", lambda c: c.issuer_signed(kid="key-1' OR '1'='1"),
         "unknown signing key"),
    Case("kid with a NUL after the real one", "kid-tricks", lambda c: c.issuer_signed(kid=c.kid + "\x00"),
         "unknown signing key"),
    Case("kid 257 characters", "kid-tricks", lambda c: c.issuer_signed(kid="k" * 257),
         "missing or malformed key id"),
    Case("kid 4000 characters", "kid-tricks", lambda c: c.issuer_signed(kid="k" * 4000),
         "missing or malformed key id"),
    Case("kid an integer", "kid-tricks", lambda c: c.issuer_signed(kid=1), "missing or malformed key id"),
    Case("kid null", "kid-tricks", lambda c: c.issuer_signed(kid=None), "missing or malformed key id"),
    Case("kid an object", "kid-tricks", lambda c: c.issuer_signed(kid={"$ne": ""}), "missing or malformed key id"),
    Case("kid empty", "kid-tricks", lambda c: c.issuer_signed(kid=""), "missing or malformed key id"),
    Case("kid missing", "kid-tricks", lambda c: c.issuer_signed(kid=DROP), "missing or malformed key id"),
    Case("kid of the issuer's other key", "kid-tricks", lambda c: c.issuer_signed(kid="key-2"), "bad signature",
         setup=add_second_issuer_key),
    # Keys that come with the token are never used, and their URLs never fetched (the attacker counts).
    Case("jku to the attacker's JWKS, attacker's key", "key-headers",
         lambda c: c.rs256(c.header(jku=c.attacker.jwks_url, kid="attacker-1"), c.claims(), c.keys["attacker"]),
         "unknown signing key"),
    Case("jku to the attacker's JWKS, the issuer's kid", "key-headers",
         lambda c: c.rs256(c.header(jku=c.attacker.jwks_url), c.claims(), c.keys["attacker"]), "bad signature"),
    Case("x5u to the attacker's certificate", "key-headers",
         lambda c: c.rs256(c.header(x5u=c.attacker.issuer + "/cert.pem"), c.claims(), c.keys["attacker"]),
         "bad signature"),
    Case("embedded jwk of the attacker, the issuer's kid", "key-headers",
         lambda c: c.rs256(c.header(jwk=c.keys["attacker"].jwk()), c.claims(), c.keys["attacker"]),
         "bad signature"),
    Case("embedded jwk of the attacker, no kid", "key-headers",
         lambda c: c.rs256(c.header(jwk=c.keys["attacker"].jwk(), kid=DROP), c.claims(), c.keys["attacker"]),
         "missing or malformed key id"),
    Case("x5c self-signed by the attacker", "key-headers",
         lambda c: c.rs256(c.header(x5c=[self_signed_cert(c.keys["attacker"])]), c.claims(), c.keys["attacker"]),
         "bad signature"),
    # ECDSA zero signatures: with ES256 allowed and an EC key published, the signature check itself refuses them.
    Case("ES256 all-zero signature (r = s = 0)", "ecdsa-zero-signature", lambda c: c.es256(bytes(64)),
         "bad signature", setup=enable_es256),
    Case("ES256 r = s = n", "ecdsa-zero-signature", lambda c: c.es256(P256_N.to_bytes(32, "big") * 2),
         "bad signature", setup=enable_es256),
    Case("ES256 r = 0, s = 1", "ecdsa-zero-signature",
         lambda c: c.es256(bytes(32) + (1).to_bytes(32, "big")), "bad signature", setup=enable_es256),
    Case("ES256 empty signature", "ecdsa-zero-signature", lambda c: c.es256(b""), "bad signature",
         setup=enable_es256),
    Case("ES256 zero signature, DER-length", "ecdsa-zero-signature", lambda c: c.es256(bytes(72)),
         "bad signature", setup=enable_es256),
    Case("ES256 zero signature under the default RS256-only policy", "ecdsa-zero-signature",
         lambda c: c.es256(bytes(64)), "algorithm not allowed"),
    Case("ES256 header on the RSA key's kid", "ecdsa-zero-signature",
         lambda c: c.es256(kid=c.kid), "algorithm not allowed", setup=enable_es256),
    Case("RS256 header on the EC key's kid", "ecdsa-zero-signature",
         lambda c: c.issuer_signed(kid="ec-1"), "algorithm not allowed", setup=enable_es256),
    # Signatures.
    Case("another key with the issuer's kid", "signature", lambda c: c.server.mint(key=c.keys["impostor"]),
         "bad signature"),
    Case("empty signature", "signature", lambda c: c.server.mint().rsplit(".", 1)[0] + ".", "bad signature"),
    Case("truncated signature", "signature", lambda c: _with_signature(c, _signature(c)[:-6]), "bad signature"),
    Case("signature one byte short", "signature",
         lambda c: c.server.mint().rsplit(".", 1)[0] + "." + b64(bytes(255)), "bad signature"),
    Case("tampered payload (version raised)", "signature", lambda c: _replace_payload(c, token_version=99),
         "bad signature"),
    Case("signature transplanted from another token", "signature",
         lambda c: c.server.mint(sub="mallory").rsplit(".", 1)[0] + "." + c.segments()[2], "bad signature"),
    # Time claims.
    Case("expired", "time-claims", lambda c: c.server.mint(iat=now() - 600, exp=now() - 60), "token expired",
         code="token_expired"),
    Case("expired just beyond the leeway", "time-claims", lambda c: c.server.mint(iat=now() - 600, exp=now() - 7),
         "token expired", code="token_expired"),
    Case("nbf in the future", "time-claims", lambda c: c.server.mint(nbf=now() + 3600), "token not yet valid"),
    Case("iat in the future", "time-claims", lambda c: c.server.mint(iat=now() + 3600, exp=now() + 7200),
         "token not yet valid"),
    Case("exp a numeric string", "time-claims", lambda c: c.server.mint(exp=str(now() + 300)),
         "malformed exp claim"),
    Case("iat a numeric string", "time-claims", lambda c: c.server.mint(iat=str(now())), "malformed iat claim"),
    Case("nbf a numeric string", "time-claims", lambda c: c.server.mint(nbf="0"), "malformed nbf claim"),
    Case("exp not a number", "time-claims", lambda c: c.server.mint(exp="tomorrow"), "malformed token"),
    Case("iat not a number", "time-claims", lambda c: c.server.mint(iat="today"), "malformed iat claim"),
    Case("nbf an object", "time-claims", lambda c: c.server.mint(nbf={"t": 0}), "malformed token"),
    Case("exp a list", "time-claims", lambda c: c.server.mint(exp=[now() + 300]), "malformed token"),
    Case("exp true", "time-claims", lambda c: c.server.mint(exp=True), "token expired", code="token_expired"),
    Case("iat true", "time-claims", lambda c: c.server.mint(iat=True), "malformed iat claim"),
    Case("exp null", "time-claims", lambda c: c.server.mint(exp=None), "missing required claim"),
    Case("exp Infinity", "time-claims", lambda c: c.issuer_signed(
        to_json(c.claims(exp=0)).replace(b'"exp":0', b'"exp":Infinity')), "malformed token"),
    Case("exp 1e400 (overflows to infinity)", "time-claims", lambda c: c.issuer_signed(
        to_json(c.claims(exp=0)).replace(b'"exp":0', b'"exp":1e400')), "malformed token"),
    Case("iat NaN", "time-claims", lambda c: c.issuer_signed(
        to_json(c.claims(iat=0)).replace(b'"iat":0', b'"iat":NaN')), "malformed iat claim"),
    Case("exp beyond float range (10**309)", "time-claims", lambda c: c.server.mint(exp=10**309),
         "malformed exp claim"),
    Case("iat before any 64-bit time", "time-claims", lambda c: c.server.mint(iat=-(2**63) - 1),
         "malformed iat claim"),
    Case("exp missing", "time-claims", lambda c: c.server.mint(exp=DROP), "missing required claim"),
    Case("iat missing", "time-claims", lambda c: c.server.mint(iat=DROP), "missing required claim"),
    # Issuer and audience.
    Case("another realm", "issuer-audience", lambda c: c.server.mint(iss=c.server.issuer.replace("/test", "/other")),
         "wrong issuer"),
    Case("issuer with a trailing slash", "issuer-audience", lambda c: c.server.mint(iss=c.server.issuer + "/"),
         "wrong issuer"),
    Case("issuer in other case", "issuer-audience", lambda c: c.server.mint(iss=c.server.issuer.upper()),
         "wrong issuer"),
    Case("issuer a prefix of ours", "issuer-audience", lambda c: c.server.mint(iss=c.server.issuer[:-1]),
         "wrong issuer"),
    Case("issuer as an array", "issuer-audience", lambda c: c.issuer_signed(c.claims(iss=[c.server.issuer])),
         "wrong issuer"),
    Case("issuer over https", "issuer-audience",
         lambda c: c.server.mint(iss=c.server.issuer.replace("http:", "https:")), "wrong issuer"),
    Case("issuer missing", "issuer-audience", lambda c: c.server.mint(iss=DROP), "missing required claim"),
    Case("aud missing", "issuer-audience", lambda c: c.server.mint(aud=DROP), "missing required claim"),
    Case("aud empty string", "issuer-audience", lambda c: c.server.mint(aud=""), "missing required claim"),
    Case("aud empty list", "issuer-audience", lambda c: c.server.mint(aud=[]), "missing required claim"),
    Case("aud another client", "issuer-audience", lambda c: c.server.mint(aud="account"), "wrong audience"),
    Case("aud in other case", "issuer-audience", lambda c: c.server.mint(aud=API.upper()), "wrong audience"),
    Case("aud a list without ours", "issuer-audience", lambda c: c.server.mint(aud=["account", "web"]),
         "wrong audience"),
    Case("aud a list with a non-string", "issuer-audience", lambda c: c.server.mint(aud=[API, 1]),
         "wrong audience"),
    Case("aud an object", "issuer-audience", lambda c: c.server.mint(aud={API: True}), "wrong audience"),
    # Token types: the same realm keys sign them all.
    Case("ID token", "token-type", lambda c: c.server.mint(typ="ID", nonce="n-0S6", at_hash="x"),
         "not an access token (typ must be Bearer)"),
    Case("refresh token shape, RS256", "token-type", lambda c: c.server.mint(typ="Refresh"),
         "not an access token (typ must be Bearer)"),
    Case("refresh token as Keycloak signs it (HS512)", "token-type",
         lambda c: c.hmac("HS512", b"realm-hmac-secret"), "algorithm not allowed"),
    Case("offline token", "token-type", lambda c: c.server.mint(typ="Offline"),
         "not an access token (typ must be Bearer)"),
    Case("logout token for the API's audience", "token-type", lambda c: c.server.mint_logout(aud=API),
         "not an access token (header typ)"),
    Case("logout token without its header typ", "token-type",
         lambda c: c.server.mint_logout(aud=API, headers={"typ": DROP}), "not an access token (typ must be Bearer)"),
    Case("access claims under a logout+jwt header", "token-type",
         lambda c: c.issuer_signed(typ="logout+jwt"), "not an access token (header typ)"),
    Case("access claims under a secevent+jwt header", "token-type",
         lambda c: c.issuer_signed(typ="secevent+jwt"), "not an access token (header typ)"),
    Case("header typ not a string", "token-type", lambda c: c.issuer_signed(typ=["JWT"]),
         "not an access token (header typ)"),
    Case("azp names the API but aud is missing", "token-type", lambda c: c.server.mint(aud=DROP, azp=API),
         "missing required claim"),
    Case("payload typ missing", "token-type", lambda c: c.server.mint(typ=DROP),
         "not an access token (typ must be Bearer)"),
    Case("payload typ in lower case", "token-type", lambda c: c.server.mint(typ="bearer"),
         "not an access token (typ must be Bearer)"),
    # crit: no JWS extension is implemented, so every critical one is refused.
    Case("crit naming exp", "crit", lambda c: c.issuer_signed(crit=["exp"], exp=1), "unsupported critical header"),
    Case("crit empty", "crit", lambda c: c.issuer_signed(crit=[]), "unsupported critical header"),
    Case("crit b64 with b64 false", "crit", lambda c: c.issuer_signed(crit=["b64"], b64=False),
         "unsupported critical header"),
    Case("crit a string", "crit", lambda c: c.issuer_signed(crit="exp"), "unsupported critical header"),
    Case("b64 false without crit", "crit", lambda c: c.issuer_signed(b64=False), "malformed token"),
    # Size and nesting: bounded before parsing; the parser's recursion limit is a 401, not a 500.
    Case("token over MAX_TOKEN_BYTES", "size-nesting", lambda c: c.server.mint(pad="x" * 9000), "token too large"),
    Case("header over MAX_TOKEN_BYTES", "size-nesting", lambda c: c.issuer_signed(pad="x" * 9000),
         "token too large"),
    Case("a megabyte of garbage", "size-nesting", lambda c: "A" * 1_000_000, "token too large"),
    Case("deeply nested header", "size-nesting",
         lambda c: c.unsigned(b'{"alg":"RS256","x":' + b"[" * 1500 + b"]" * 1500 + b"}"), "malformed token header"),
    Case("deeply nested payload, signed by the issuer", "size-nesting", lambda c: c.issuer_signed(
        to_json(c.claims(x=0)).replace(b'"x":0', b'"x":' + b"[" * 2500 + b"]" * 2500)), "malformed token"),
    Case("number beyond Python's int digit limit", "size-nesting", lambda c: c.issuer_signed(
        to_json(c.claims(x=0)).replace(b'"x":0', b'"x":' + b"9" * 5000)), "malformed token"),
    # Duplicate members: refused outright, so no two parsers can read one token two ways.
    Case("header with alg twice (none, then RS256)", "duplicate-members", lambda c: c.rs256(
        b'{"alg":"none","alg":"RS256","kid":"%s"}' % c.kid.encode(), c.claims()), "malformed token header"),
    Case("header with kid twice", "duplicate-members", lambda c: c.rs256(
        b'{"alg":"RS256","kid":"%s","kid":"other"}' % c.kid.encode(), c.claims()), "malformed token header"),
    Case("payload with sub twice", "duplicate-members",
         lambda c: c.issuer_signed(to_json(c.claims())[:-1] + b',"sub":"mallory"}'), "malformed token"),
    Case("payload with token_version twice", "duplicate-members",
         lambda c: c.issuer_signed(to_json(c.claims(token_version=0))[:-1] + b',"token_version":7}'),
         "malformed token"),
    Case("payload with iss twice", "duplicate-members", lambda c: c.issuer_signed(
        to_json(c.claims())[:-1] + b',"iss":"http://127.0.0.1:1/realms/evil"}'), "malformed token"),
    Case("nested object with a key twice", "duplicate-members", lambda c: c.issuer_signed(
        to_json(c.claims(realm_access=0)).replace(b'"realm_access":0', b'"realm_access":{"roles":[],"roles":["x"]}')),
         "malformed token"),
    # Encodings: compact serialization is base64url without padding, UTF-8 JSON.
    Case("signature with == padding", "encoding", lambda c: c.server.mint() + "==", "not a compact JWS"),
    Case("header with = padding", "encoding",
         lambda c: b64(b'{"alg":"RS256","kid":"%s"}' % c.kid.encode()) + "=." + ".".join(c.segments()[1:]),
         "not a compact JWS"),
    Case("standard base64 alphabet (+ and /)", "encoding",
         lambda c: "+/" + c.server.mint(), "not a compact JWS"),
    Case("non-canonical base64url (signature's spare bits set)", "encoding",
         lambda c: c.server.mint()[:-1] + _spare_bits_set(c.server.mint()[-1]), "malformed token"),
    Case("non-base64url character in the signature", "encoding",
         lambda c: c.server.mint()[:-4] + "!" + c.server.mint()[-3:], "malformed token"),
    Case("non-base64url character in the payload", "encoding",
         lambda c: ".".join([c.segments()[0], c.segments()[1][:10] + "*" + c.segments()[1][10:], c.segments()[2]]),
         "malformed token"),
    Case("header segment not UTF-8", "encoding", lambda c: c.unsigned(b"\xff\xfe\xfd", signature=b"x"),
         "malformed token header"),
    Case("header in UTF-16", "encoding",
         lambda c: c.rs256(json.dumps(c.header()).encode("utf-16"), c.claims()), "malformed token header"),
    Case("header with a UTF-8 BOM", "encoding",
         lambda c: c.rs256(b"\xef\xbb\xbf" + to_json(c.header()), c.claims()), "malformed token header"),
    Case("payload not UTF-8, signed by the issuer", "encoding",
         lambda c: c.issuer_signed(to_json(c.claims())[:-1] + b',"x":"\xff"}'), "malformed token"),
    Case("payload in UTF-32, signed by the issuer", "encoding",
         lambda c: c.issuer_signed(json.dumps(c.claims()).encode("utf-32")), "malformed token"),
    Case("header a JSON list", "encoding", lambda c: c.unsigned([c.header()], signature=b"x"),
         "malformed token header"),
    Case("header JSON null", "encoding", lambda c: c.unsigned(None, signature=b"x"), "malformed token header"),
    Case("payload a JSON list, signed by the issuer", "encoding", lambda c: c.issuer_signed([c.claims()]),
         "malformed token"),
    Case("four segments", "encoding", lambda c: c.server.mint() + ".e30", "not a compact JWS"),
    Case("two segments", "encoding", lambda c: c.server.mint().rsplit(".", 1)[0], "not a compact JWS"),
    Case("empty header segment", "encoding", lambda c: "." + ".".join(c.segments()[1:]), "not a compact JWS"),
    Case("a tab inside the token", "encoding", lambda c: c.server.mint().replace(".", ".\t", 1),
         "malformed token"),
    Case("a newline inside the token", "encoding", lambda c: c.server.mint()[:20] + "\n" + c.server.mint()[20:],
         "not a compact JWS"),
    Case("non-ASCII letters in the header", "encoding", lambda c: "é" + c.server.mint(), "not a compact JWS"),
    # Serializations other than compact JWS.
    Case("JWE, five segments", "serialization",
         lambda c: b64(b'{"alg":"RSA-OAEP","enc":"A256GCM","kid":"%s"}' % c.kid.encode()) + ".a.b.c.d",
         "not a compact JWS"),
    Case("JWE with dir and an empty key", "serialization",
         lambda c: b64(b'{"alg":"dir","enc":"A128CBC-HS256"}') + "..aXY.Y2lwaGVy.dGFn", "not a compact JWS"),
    Case("JWS JSON flattened serialization", "serialization", lambda c: json.dumps(
        dict(zip(("protected", "payload", "signature"), c.segments(), strict=True)), separators=(",", ":")),
         "not a compact JWS"),
    Case("JWS JSON general serialization", "serialization", lambda c: json.dumps(
        {"payload": c.segments()[1], "signatures": [{"protected": c.segments()[0], "signature": c.segments()[2]}]},
        separators=(",", ":")), "not a compact JWS"),
    # The version claim.
    Case("version claim missing", "version-claim", lambda c: c.server.mint(token_version=DROP),
         "token has no token_version claim", code="token_missing_claim"),
    *[Case(f"version claim {value!r}", "version-claim",
           (lambda v: lambda c: c.server.mint(token_version=v))(value), "malformed token_version claim")
      for value in ["0", "1e3", "", 0.0, 1.5, True, False, -1, 2**63, 10**30, None, {"v": 0}, [0], []]],
    Case("version claim 1e400", "version-claim", lambda c: c.issuer_signed(
        to_json(c.claims(token_version=0)).replace(b'"token_version":0', b'"token_version":1e400')),
         "malformed token_version claim"),
    # sub and sid: what the revocation state is kept under.
    Case("sub missing", "identity-claims", lambda c: c.server.mint(sub=DROP), "malformed sub claim"),
    Case("sub empty", "identity-claims", lambda c: c.server.mint(sub=""), "malformed sub claim"),
    Case("sub a number", "identity-claims", lambda c: c.server.mint(sub=42), "malformed sub claim"),
    Case("sub with a NUL", "identity-claims", lambda c: c.server.mint(sub="alice\x00admin"), "malformed sub claim"),
    Case("sub with an unpaired surrogate", "identity-claims", lambda c: c.server.mint(sub="a\ud800"),
         "malformed sub claim"),
    Case("sub with an escape sequence", "identity-claims", lambda c: c.server.mint(sub="a\x1b[2J"),
         "malformed sub claim"),
    Case("sub longer than any stored subject", "identity-claims", lambda c: c.server.mint(sub="s" * 256),
         "malformed sub claim"),
    Case("sid empty", "identity-claims", lambda c: c.server.mint(sid=""), "malformed sid claim"),
    Case("sid a list", "identity-claims", lambda c: c.server.mint(sid=[SID]), "malformed sid claim"),
    Case("sid with a NUL", "identity-claims", lambda c: c.server.mint(sid=SID + "\x00"), "malformed sid claim"),
    Case("sid with an unpaired surrogate", "identity-claims", lambda c: c.server.mint(sid="\udfff"),
         "malformed sid claim"),
    Case("sid longer than any stored session", "identity-claims", lambda c: c.server.mint(sid="s" * 256),
         "malformed sid claim"),
    # Revoked: valid JWTs the revocation state refuses.
    Case("version below the stored one", "revoked", lambda c: c.server.mint(token_version=0),
         "token version revoked", code="token_revoked", setup=revoke_user),
    Case("token of a revoked sid", "revoked", lambda c: c.server.mint(sid=SID, token_version=5), "session revoked",
         code="token_revoked", setup=revoke_session),
    Case("issued in the second of a realm-wide revocation", "revoked",
         lambda c: c.server.mint(iat=c.state["second"], token_version=5), "issued before a realm-wide revocation",
         code="token_revoked", setup=revoke_realm),
    Case("issued before a realm-wide revocation", "revoked",
         lambda c: c.server.mint(iat=c.state["second"] - 60, token_version=5),
         "issued before a realm-wide revocation", code="token_revoked", setup=revoke_realm),
    Case("minted in the same second as a logout (no mapper)", "revoked",
         lambda c: c.server.mint(iat=c.state["second"], token_version=DROP), "issued before the user's last logout",
         code="token_revoked", setup=logout_without_mapper),
    # The Authorization header itself (RFC 6750 section 3.1): a malformed request, not a bad token.
    *[Case(f"header {value!r}", "authorization-header", (lambda v: lambda c: v)(value),
           "malformed Authorization header", code="invalid_request", header=True, status=400)
      for value in ["Bearer", "Bearer    ", "BEARER \t", "Bearer a b", "Bearer  x.y.z  extra"]],
    Case("header: token, then a second one", "authorization-header", lambda c: f"Bearer {c.server.mint()} x.y.z",
         "malformed Authorization header", code="invalid_request", header=True, status=400),
]


# --- fixtures and the test -----------------------------------------------------------------------------------


# Plain functions behind the fixtures, so tests/test_differential_validation.py builds the same corpus.


def attacker_server() -> JWKSServer:
    """The attacker's own issuer on loopback: jku/x5u point here, and it must never be asked for anything."""
    server = JWKSServer()
    server.keys = [SigningKey("attacker-1")]
    return server


def corpus_keys(attacker: JWKSServer) -> dict[str, Any]:
    """Keys made once: RSA generation is the slow part of this module."""
    return {
        "impostor": SigningKey("key-1"),  # the issuer's kid, not the issuer's key
        "second": SigningKey("key-2"),
        "attacker": attacker.keys[0],
        "ec": ECKey("ec-1"),
    }


@pytest.fixture(scope="module")
def attacker():
    server = attacker_server()
    yield server
    server.close()


@pytest.fixture(scope="module")
def keys(attacker) -> dict[str, Any]:
    return corpus_keys(attacker)


@pytest.fixture
def ctx(jwks_server, attacker, keys, tv_settings) -> Ctx:
    return Ctx(server=jwks_server, attacker=attacker, keys=keys, tv_settings=tv_settings)


@pytest.mark.parametrize("case", CASES, ids=[f"{c.attack}: {c.name}" for c in CASES])
def test_hostile_token_is_refused(api, ctx, case: Case):
    if case.setup is not None:
        case.setup(ctx)
    value = case.make(ctx)
    attacker_requests = ctx.attacker.requests
    header = value if case.header else f"Bearer {value}"

    response = api.get(URL, HTTP_AUTHORIZATION=header)

    assert response.status_code == case.status, response.content
    assert response.json() == {"detail": case.detail, "code": case.code}
    if case.status == 401:
        expected = f'Bearer realm="api", error="invalid_token", error_description="{case.detail}"'
    else:
        expected = 'Bearer realm="api", error="invalid_request"'
    assert response["WWW-Authenticate"] == expected
    assert ctx.attacker.requests == attacker_requests  # jku, x5u and friends are never followed


def test_the_corpus_is_large_and_names_are_unique():
    names = [f"{c.attack}: {c.name}" for c in CASES]
    assert len(names) == len(set(names))
    assert len(CASES) >= 50


def test_every_attack_class_has_cases():
    used = {c.attack for c in CASES}
    assert used == set(ATTACK_CLASSES)
    assert all(sum(c.attack == name for c in CASES) >= 3 for name in ATTACK_CLASSES)


def test_the_genuine_token_the_cases_start_from_is_accepted(api, ctx):
    """The control: without the attack, the same construction passes, so each refusal is the attack's doing."""
    assert api.get(URL, HTTP_AUTHORIZATION=f"Bearer {ctx.issuer_signed()}").status_code == 200
    assert api.get(URL, HTTP_AUTHORIZATION=f"Bearer {ctx.server.mint()}").status_code == 200
    enable_es256(ctx)
    assert api.get(URL, HTTP_AUTHORIZATION=f"Bearer {ctx.es256()}").status_code == 200
