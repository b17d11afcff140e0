"""Bad input on every provider endpoint, as one matrix: each request gets a precise 4xx with a machine-readable
code, and writes nothing.

The endpoints: the claims endpoint (Keycloak's mapper), the Keycloak events receiver, the OIDC back-channel
logout receiver and the REST revocation API. For each: no or wrong credentials, wrong method, wrong content
type, empty, truncated, oversized, deeply nested and non-UTF-8 bodies, malformed subjects, and injection
strings (SQL, NUL, control characters, unpaired surrogates, huge unicode, ...) in every field. "Nothing was
written" is a row count of every model of ``tokenversion_server`` and ``accounts`` before and after.

Error codes: the machine endpoints answer ``{"error": code, "detail": ...}`` (docs/contract.md), the REST API
``{"detail": ..., "code": code}`` (docs/revocation.md); ``error_code`` reads either. Single-endpoint details
(replays, configuration, outages) stay in test_claims.py, test_events.py, test_backchannel.py, test_rest.py.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import pytest
from django.apps import apps
from django.contrib.auth.models import Permission, User

from accounts.models import KeycloakUser
from tests.conftest import EVENT_SECRET, MAPPER_SECRET
from tests.jwks import DROP, SigningKey
from tokenversion_server.http import MAX_BODY_BYTES
from tokenversion_server.models import ApiKey, RevocationEvent

pytestmark = pytest.mark.django_db

SUB = "5b7f0b36-8d0e-4a35-9f49-7a5ad1b0c001"
JSON_TYPE = "application/json"
FORM_TYPE = "application/x-www-form-urlencoded"


def counts() -> dict[str, int]:
    """Rows of every model of the provider and its user database (new models are included automatically)."""
    models = [*apps.get_app_config("tokenversion_server").get_models(), *apps.get_app_config("accounts").get_models()]
    return {model._meta.label: model.objects.count() for model in models}


def error_code(response) -> str:
    body = response.json()
    return body.get("error") or body["code"]


# --- the endpoints ---------------------------------------------------------------------------------------


@dataclass
class Ctx:
    issuer: Any  # the JWKS server (tests/jwks.py)
    rest_token: str  # "Token ..." of a caller with revoke_tokens
    rest_token_without_permission: str


@dataclass(frozen=True)
class Endpoint:
    name: str
    url: str
    content_type: str
    valid: Callable[[Ctx], dict[str, Any]]  # the fields of a valid request
    credentials: Callable[[Ctx], dict[str, str]]  # request headers (WSGI names) of a valid caller

    def encode(self, fields: dict[str, Any]) -> bytes:
        if self.content_type == FORM_TYPE:
            return urlencode(fields).encode()
        return json.dumps(fields).encode()


ENDPOINTS = {
    "claims": Endpoint(
        "claims", "/tokenversion/claims", JSON_TYPE,
        lambda c: {"sub": SUB, "username": "alice", "email": "alice@example.com", "client_id": "web"},
        lambda c: {"HTTP_X_TOKENVERSION_SECRET": MAPPER_SECRET},
    ),
    "events": Endpoint(
        "events", "/tokenversion/events", JSON_TYPE,
        lambda c: {"id": "ev-1", "type": "user.logout", "user_id": SUB, "keycloak_event": "LOGOUT"},
        lambda c: {"HTTP_X_TOKENVERSION_SECRET": EVENT_SECRET},
    ),
    "backchannel": Endpoint(
        "backchannel", "/tokenversion/backchannel-logout", FORM_TYPE,
        lambda c: {"logout_token": c.issuer.mint_logout()},
        lambda c: {},  # authenticated by the logout token's signature
    ),
    "revocations": Endpoint(
        "revocations", "/tokenversion/revocations", JSON_TYPE,
        lambda c: {"scope": "session", "session_id": "sid-1", "reason": "logout", "note": "ticket 1"},
        lambda c: {"HTTP_AUTHORIZATION": c.rest_token},
    ),
}


@dataclass(frozen=True)
class Request:
    method: str = "POST"
    body: bytes | None = None  # None: the endpoint's valid body
    fields: dict[str, Any] | None = None  # changes to the valid fields (DROP removes one)
    content_type: str | None = None  # None: the endpoint's own
    credentials: Callable[[Ctx], dict[str, str]] | None = None  # None: a valid caller's


def send(client, endpoint: Endpoint, ctx: Ctx, request: Request):
    fields = endpoint.valid(ctx)
    for name, value in (request.fields or {}).items():
        if value is DROP:
            fields.pop(name, None)
        else:
            fields[name] = value(ctx) if callable(value) else value
    body = endpoint.encode(fields) if request.body is None else request.body
    content_type = endpoint.content_type if request.content_type is None else request.content_type
    meta = (request.credentials or endpoint.credentials)(ctx)
    # CONTENT_TYPE explicitly: the test client drops it for an empty body, a real client does not.
    return client.generic(request.method, endpoint.url, body, content_type=content_type,
                          CONTENT_TYPE=content_type, **meta)


@dataclass(frozen=True)
class Case:
    endpoint: str
    name: str
    request: Request
    status: int
    code: str


def expect(name: str, request: Request, results: dict[str, tuple[int, str]]) -> list[Case]:
    """One bad input, tried on each endpoint named in ``results`` (endpoint -> status, code)."""
    return [Case(endpoint, name, request, status, code) for endpoint, (status, code) in results.items()]


def on_all(status: int, code: str) -> dict[str, tuple[int, str]]:
    return dict.fromkeys(ENDPOINTS, (status, code))


def forged_logout_token(ctx: Ctx, **claims: Any) -> str:
    """A logout token signed with the issuer's real key: what gets past the signature and meets the view."""
    return ctx.issuer.mint_logout(**claims)


_IMPOSTOR = SigningKey("key-1")  # the issuer's kid, not the issuer's key
OVERSIZED = b"x" * (MAX_BODY_BYTES + 1)


def _oversized_json() -> bytes:
    return json.dumps({"sub": SUB, "pad": "x" * MAX_BODY_BYTES}).encode()


def _deep_json() -> bytes:
    return b"[" * 5000 + b"]" * 5000


def _with_literal(endpoint: str, literal: str, field: str = "extra") -> bytes:
    """The endpoint's valid JSON body with one more member whose value is a bare literal that Python's json
    module reads (NaN, Infinity, -Infinity) but RFC 8259 does not have; the valid fields need no context."""
    body = json.dumps(ENDPOINTS[endpoint].valid(None))  # type: ignore[arg-type]
    return f'{body[:-1]}, "{field}": {literal}}}'.encode()


# Every JSON endpoint, with the literal in a member it ignores (so only the literal can refuse it) and in
# one it reads.
_NON_JSON_LITERALS = [
    (endpoint, literal, field)
    for literal in ("NaN", "Infinity", "-Infinity")
    for endpoint, field in (("claims", "extra"), ("events", "extra"), ("events", "time"),
                            ("revocations", "extra"), ("revocations", "note"))
]


CASES: list[Case] = [
    # --- credentials (checked before the body is read) ---
    *expect("no credentials", Request(credentials=lambda c: {}), {
        "claims": (401, "invalid_secret"), "events": (401, "invalid_secret"),
        "revocations": (401, "not_authenticated")}),
    *expect("no credentials, garbage body", Request(credentials=lambda c: {}, body=b"\xff{["), {
        "claims": (401, "invalid_secret"), "events": (401, "invalid_secret"),
        "revocations": (401, "not_authenticated")}),
    *expect("no credentials, oversized body", Request(credentials=lambda c: {}, body=b"x" * 2_000_000), {
        "claims": (401, "invalid_secret"), "events": (401, "invalid_secret"),
        "revocations": (401, "not_authenticated")}),
    *expect("the other endpoint's secret", Request(credentials=lambda c: {
        "HTTP_X_TOKENVERSION_SECRET": EVENT_SECRET}), {"claims": (401, "invalid_secret")}),
    *expect("the other endpoint's secret", Request(credentials=lambda c: {
        "HTTP_X_TOKENVERSION_SECRET": MAPPER_SECRET}), {"events": (401, "invalid_secret")}),
    *expect("a secret with a NUL and non-ASCII", Request(credentials=lambda c: {
        "HTTP_X_TOKENVERSION_SECRET": MAPPER_SECRET + "\x00\xe9"}), {
        "claims": (401, "invalid_secret"), "events": (401, "invalid_secret")}),
    *expect("a secret's prefix", Request(credentials=lambda c: {"HTTP_X_TOKENVERSION_SECRET": MAPPER_SECRET[:8]}),
            {"claims": (401, "invalid_secret"), "events": (401, "invalid_secret")}),
    *expect("an unknown API token", Request(credentials=lambda c: {
        "HTTP_AUTHORIZATION": "Token 0123456789abcdef0123456789abcdef01234567"}),
        {"revocations": (401, "authentication_failed")}),
    *expect("an API token with control characters", Request(credentials=lambda c: {
        "HTTP_AUTHORIZATION": "Token \x00\x1b[2J"}), {"revocations": (401, "authentication_failed")}),
    *expect("a user's Keycloak access token", Request(credentials=lambda c: {
        "HTTP_AUTHORIZATION": f"Bearer {c.issuer.mint()}"}), {"revocations": (401, "not_authenticated")}),
    *expect("a caller without revoke_tokens", Request(credentials=lambda c: {
        "HTTP_AUTHORIZATION": c.rest_token_without_permission}), {"revocations": (403, "permission_denied")}),
    # The back-channel receiver's credential is the token's signature.
    *expect("logout token with alg none", Request(fields={"logout_token": lambda c: ".".join(
        [_b64({"alg": "none", "typ": "logout+jwt", "kid": "key-1"}), _b64(c.issuer.logout_claims()), ""])}),
        {"backchannel": (400, "invalid_request")}),
    *expect("logout token signed by another key", Request(fields={"logout_token": lambda c: c.issuer.mint_logout(
        key=_IMPOSTOR)}), {"backchannel": (400, "invalid_request")}),
    *expect("an access token instead of a logout token", Request(fields={"logout_token": lambda c: c.issuer.mint(
        aud="tokenversion-backchannel")}), {"backchannel": (400, "invalid_request")}),
    # --- method ---
    *[case for method in ("GET", "PUT", "PATCH", "DELETE")
      for case in expect(f"method {method}", Request(method=method), on_all(405, "method_not_allowed"))],
    # --- content type ---
    *expect("content type text/plain", Request(content_type="text/plain"), {
        "claims": (415, "unsupported_media_type"), "events": (415, "unsupported_media_type"),
        "backchannel": (400, "invalid_request"), "revocations": (415, "unsupported_media_type")}),
    *expect("content type multipart", Request(content_type="multipart/form-data; boundary=xyz"), {
        "claims": (415, "unsupported_media_type"), "events": (415, "unsupported_media_type"),
        "backchannel": (400, "invalid_request"), "revocations": (415, "unsupported_media_type")}),
    *expect("no content type", Request(content_type=""), {
        "claims": (415, "unsupported_media_type"), "events": (415, "unsupported_media_type"),
        "backchannel": (400, "invalid_request"), "revocations": (415, "unsupported_media_type")}),
    *expect("JSON endpoints sent a form", Request(content_type=FORM_TYPE, body=b"sub=x&scope=realm"), {
        "claims": (415, "unsupported_media_type"), "events": (415, "unsupported_media_type"),
        "revocations": (415, "unsupported_media_type")}),
    *expect("form endpoint sent JSON", Request(content_type=JSON_TYPE, body=b'{"logout_token": "x"}'),
            {"backchannel": (400, "invalid_request")}),
    # --- bodies ---
    *expect("empty body", Request(body=b""), on_all(400, "invalid_request")),
    *expect("body truncated", Request(body=b'{"sub": "' + SUB.encode()[:10]), {
        "claims": (400, "invalid_request"), "events": (400, "invalid_request"),
        "revocations": (400, "invalid_request")}),
    *expect("logout token truncated", Request(fields={"logout_token": lambda c: c.issuer.mint_logout()[:-40]}),
            {"backchannel": (400, "invalid_request")}),
    *expect("form without the logout_token field", Request(body=b"logout_tok"),
            {"backchannel": (400, "invalid_request")}),
    *expect("logout_token given twice", Request(body=b"logout_token=a.b.c&logout_token=a.b.c"),
            {"backchannel": (400, "invalid_request")}),
    *expect("body one byte over the limit", Request(body=OVERSIZED), on_all(413, "body_too_large")),
    *expect("valid JSON over the limit", Request(body=_oversized_json()), {
        "claims": (413, "body_too_large"), "events": (413, "body_too_large"),
        "revocations": (413, "body_too_large")}),
    *expect("two megabytes", Request(body=b"x" * 2_000_000), on_all(413, "body_too_large")),
    *expect("deeply nested JSON", Request(body=_deep_json()), {
        "claims": (400, "invalid_request"), "events": (400, "invalid_request"),
        "revocations": (400, "invalid_request")}),
    *expect("JSON a list", Request(body=b"[1, 2]"), {
        "claims": (400, "invalid_request"), "events": (400, "invalid_request"),
        "revocations": (400, "invalid_request")}),
    *expect("JSON null", Request(body=b"null"), {
        "claims": (400, "invalid_request"), "events": (400, "invalid_request"),
        "revocations": (400, "invalid_request")}),
    *expect("a key repeated", Request(body=b'{"sub": "a", "sub": "b", "id": "x", "id": "y", "scope": "realm", '
                                           b'"scope": "user"}'), {
        "claims": (400, "invalid_request"), "events": (400, "invalid_request"),
        "revocations": (400, "invalid_request")}),
    *expect("body not UTF-8", Request(body=b'{"sub": "\xff\xfe", "scope": "\xc0\xaf"}'), {
        "claims": (400, "invalid_request"), "events": (400, "invalid_request"),
        "revocations": (400, "invalid_request")}),
    *expect("body in UTF-16", Request(body=json.dumps({"sub": SUB, "scope": "realm"}).encode("utf-16")), {
        "claims": (400, "invalid_request"), "events": (400, "invalid_request"),
        "revocations": (400, "invalid_request")}),
    *expect("form not UTF-8", Request(body=b"logout_token=%ff%fe"), {"backchannel": (400, "invalid_request")}),
    *expect("form with raw non-ASCII bytes", Request(body=b"logout_token=\xe9"),
            {"backchannel": (400, "invalid_request")}),
    *expect("form with 100 fields", Request(body="&".join(f"f{i}=x" for i in range(100)).encode()),
            {"backchannel": (400, "invalid_request")}),
    *[Case(endpoint, f"{field} is the non-JSON literal {literal}", Request(body=_with_literal(endpoint, literal,
                                                                                               field)),
           400, "invalid_request") for endpoint, literal, field in _NON_JSON_LITERALS],
    *expect("bad Content-Length", Request(credentials=lambda c: {**ENDPOINTS["claims"].credentials(c),
                                                                 "CONTENT_LENGTH": "12abc"}),
            {"claims": (400, "invalid_request")}),
]

# --- subjects and injection strings, field by field --------------------------------------------------------

INJECTIONS: dict[str, Any] = {
    "SQL": "x' OR '1'='1'; DROP TABLE tokenversion_server_subjectversion; --",
    "NUL": "alice\x00admin",
    "control characters": "alice\x1b[2J\r\nX-Injected: 1",
    "unpaired surrogate": "alice\ud800",
    "300 astral characters": "\U0001d54f" * 300,
    "HTML": "<script>alert(1)</script>",
    "path": "../../../etc/passwd",
    "right-to-left override": "alice\u202egnp.exe",
    "fullwidth letters": "\uff41\uff4c\uff49\uff43\uff45",
    "empty": "",
    "a number": 42,
    "a list": ["alice"],
    "an object": {"$ne": None},
    "true": True,
}

# Fields with a strict syntax: every injection is refused (endpoint, field, request fields to add, code).
STRICT_FIELDS: list[tuple[str, str, dict[str, Any], str]] = [
    ("claims", "sub", {}, "invalid_request"),
    ("claims", "issuer", {}, "unknown_issuer"),
    ("events", "id", {}, "invalid_request"),
    ("events", "type", {}, "unknown_event_type"),
    ("events", "user_id", {}, "invalid_request"),
    ("events", "session_id", {"type": "session.logout"}, "invalid_request"),
    ("events", "issuer", {}, "unknown_issuer"),
    ("revocations", "session_id", {}, "invalid_request"),
    ("revocations", "scope", {}, "invalid_request"),
    ("revocations", "reason", {}, "invalid_request"),
]
# Free text, stored as given: refused when it could not be stored or shown safely (control characters, NUL,
# surrogates, over-long, not a string); otherwise kept verbatim (see test_free_text_is_stored_as_data).
FREE_TEXT_FIELDS: list[tuple[str, str, int]] = [
    ("claims", "username", 255), ("claims", "email", 255), ("claims", "client_id", 255),
    ("claims", "session_id", 255), ("events", "keycloak_event", 64), ("revocations", "note", 2000),
]
FREE_TEXT_REFUSED = ["NUL", "control characters", "unpaired surrogate", "a list", "an object"]


def _injection_cases() -> list[Case]:
    cases: list[Case] = []
    for endpoint, name, extra, code in STRICT_FIELDS:
        for label, value in INJECTIONS.items():
            if name == "issuer" and not isinstance(value, str):
                expected = "invalid_request"  # not a string at all
            else:
                expected = code
            cases.append(Case(endpoint, f"{name}: {label}", Request(fields={**extra, name: value}), 400, expected))
    for endpoint, name, limit in FREE_TEXT_FIELDS:
        for label in FREE_TEXT_REFUSED:
            cases.append(Case(endpoint, f"{name}: {label}", Request(fields={name: INJECTIONS[label]}), 400,
                              "invalid_request"))
        cases.append(Case(endpoint, f"{name}: one character too long",
                          Request(fields={name: "\u00e9" * (limit + 1)}), 400, "invalid_request"))
    # The REST API's user: anything that names no known user is 404 unknown_user; what DRF refuses is 400.
    for label, value in INJECTIONS.items():
        refused = label in ("NUL", "unpaired surrogate", "300 astral characters", "empty", "a number", "a list",
                            "an object", "true")
        status, code = (400, "invalid_request") if refused else (404, "unknown_user")
        cases.append(Case("revocations", f"user: {label}", Request(fields={"scope": "user", "user": value}),
                          status, code))
    # The back-channel receiver: sub and sid come inside a validly signed logout token.
    for claim in ("sub", "sid"):
        for label, value in INJECTIONS.items():
            drop_other = {"sid": DROP} if claim == "sub" else {}
            cases.append(Case("backchannel", f"logout token {claim}: {label}", Request(fields={
                "logout_token": (lambda v, d, n: lambda c: forged_logout_token(c, **{n: v}, **d))(value, drop_other,
                                                                                                 claim)}),
                400, "invalid_request"))
    # The form field itself, carrying injection strings instead of a token.
    for label, value in INJECTIONS.items():
        if isinstance(value, str) and value:
            cases.append(Case("backchannel", f"logout_token: {label}", Request(
                body=urlencode({"logout_token": value}, encoding="utf-8", errors="surrogatepass").encode()),
                400, "invalid_request"))
    return cases


def _b64(data: dict[str, Any]) -> str:
    import base64

    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


CASES += _injection_cases()


# --- fixtures and tests ----------------------------------------------------------------------------------


def _api_token(username: str, *, allowed: bool) -> str:
    user = User.objects.create_user(username)
    if allowed:
        user.user_permissions.add(Permission.objects.get(codename="revoke_tokens"))
    return f"Token {ApiKey.issue(user, 'tests', created_by='tests')[1]}"


@pytest.fixture
def ctx(issuer) -> Ctx:
    return Ctx(issuer=issuer, rest_token=_api_token("siem", allowed=True),
               rest_token_without_permission=_api_token("reader", allowed=False))


@pytest.mark.parametrize("case", CASES, ids=[f"{c.endpoint}: {c.name}" for c in CASES])
def test_bad_input_gets_a_precise_4xx_and_writes_nothing(client, ctx, case: Case):
    before = counts()
    response = send(client, ENDPOINTS[case.endpoint], ctx, case.request)
    assert response.status_code == case.status, response.content
    assert error_code(response) == case.code, response.content
    assert response["Cache-Control"] == "no-store"
    assert counts() == before


@pytest.mark.parametrize("endpoint", sorted(ENDPOINTS))
def test_the_valid_request_each_case_starts_from_succeeds(client, ctx, endpoint: str):
    """The control: the unchanged request is accepted, so every refusal above is the bad input's doing."""
    response = send(client, ENDPOINTS[endpoint], ctx, Request())
    assert 200 <= response.status_code < 300, response.content


@pytest.mark.parametrize("label", ["SQL", "HTML", "path", "right-to-left override", "fullwidth letters"])
@pytest.mark.parametrize(("endpoint", "name"), [("claims", "username"), ("events", "keycloak_event"),
                                                ("revocations", "note")])
def test_free_text_is_stored_as_data(client, ctx, endpoint: str, name: str, label: str):
    """Injection strings in free text are inert: stored exactly as sent, by bound parameters, tables intact."""
    value = INJECTIONS[label][:64]
    response = send(client, ENDPOINTS[endpoint], ctx, Request(fields={name: value}))
    assert 200 <= response.status_code < 300, response.content
    if endpoint == "claims":
        assert KeycloakUser.objects.get(subject=SUB).username == value
    elif endpoint == "events":
        assert RevocationEvent.objects.get().actor.startswith(value)
    else:
        assert RevocationEvent.objects.get().note.partition("\n")[0] == value  # then the Keycloak outcome
    assert set(counts())  # every table is still there to count


def test_the_matrix_covers_every_endpoint_and_kind_of_input():
    by_endpoint = {name: [c.name for c in CASES if c.endpoint == name] for name in ENDPOINTS}
    for name, cases in by_endpoint.items():
        for kind in ("method", "content type", "empty body", "over the limit", "NUL", "control characters",
                     "unpaired surrogate", "SQL"):
            assert any(kind in case for case in cases), (name, kind)
    assert all(any("credentials" in c or "token" in c or "secret" in c for c in cases)
               for cases in by_endpoint.values())
