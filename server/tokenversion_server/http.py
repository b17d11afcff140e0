"""Strict JSON-over-HTTP helpers shared by the provider's machine-facing endpoints.

Every refusal is a precise 4xx with ``{"error": code, "detail": text}``; nothing is parsed before the caller
is authenticated, and nothing is written before the whole body has been validated.
"""

from __future__ import annotations

import functools
import hmac
import json
import logging
import re
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qsl

from django.db import DatabaseError
from django.http import HttpRequest, HttpResponse, JsonResponse

logger = logging.getLogger("tokenversion.server")

MAX_BODY_BYTES = 16 * 1024
FORM_CONTENT_TYPE = "application/x-www-form-urlencoded"
MAX_FORM_FIELDS = 32
SECRET_HEADER = "HTTP_X_TOKENVERSION_SECRET"
# Never in a username, email or id; NUL breaks PostgreSQL and an unpaired surrogate cannot be encoded at all.
_CONTROL_OR_SURROGATE = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")


class HttpError(Exception):
    def __init__(self, status: int, code: str, detail: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status, self.code, self.detail, self.headers = status, code, detail, headers or {}


def json_response(data: dict[str, Any], status: int = 200, headers: dict[str, str] | None = None):
    response = JsonResponse(data, status=status)
    response["Cache-Control"] = "no-store"
    for name, value in (headers or {}).items():
        response[name] = value
    return response


def error_response(status: int, code: str, detail: str, headers: dict[str, str] | None = None):
    return json_response({"error": code, "detail": detail}, status, headers)


def machine_endpoint(view: Callable[[HttpRequest], HttpResponse],
                     method: str = "POST") -> Callable[[HttpRequest], HttpResponse]:
    """One method only, ``HttpError`` to its JSON answer, database outages to 503, never a 500 page."""

    @functools.wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if request.method != method:
            return error_response(405, "method_not_allowed", f"use {method}", {"Allow": method})
        try:
            return view(request, *args, **kwargs)
        except HttpError as exc:
            return error_response(exc.status, exc.code, exc.detail, exc.headers)
        except DatabaseError:
            logger.exception("database error in %s", view.__name__)
            return error_response(503, "unavailable", "the provider's database is unavailable",
                                  {"Retry-After": "1"})

    # Machine-to-machine, authenticated by a secret or a signed token, never by cookie.
    wrapper.csrf_exempt = True
    return wrapper


def require_secret(request: HttpRequest, secrets: Iterable[str]) -> None:
    """Constant-time comparison against every accepted secret (several, so they can be rotated)."""
    given = request.META.get(SECRET_HEADER, "")
    given_bytes = given.encode("utf-8", "surrogateescape") if isinstance(given, str) else b""
    matched = False
    for secret in secrets:
        matched |= hmac.compare_digest(given_bytes, secret.encode("utf-8"))
    if not given_bytes or not matched:
        raise HttpError(401, "invalid_secret", "missing or wrong X-TokenVersion-Secret header")


def _content_type(request: HttpRequest) -> str:
    return request.META.get("CONTENT_TYPE", "").split(";", 1)[0].strip().lower()


def read_body(request: HttpRequest, content_type: str, limit: int = MAX_BODY_BYTES,
              wrong_type_status: int = 415) -> bytes:
    if _content_type(request) != content_type:
        code = "unsupported_media_type" if wrong_type_status == 415 else "invalid_request"
        raise HttpError(wrong_type_status, code, f"Content-Type must be {content_type}")
    try:
        length = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        raise HttpError(400, "invalid_request", "bad Content-Length") from None
    if length > limit:
        raise HttpError(413, "body_too_large", f"body larger than {limit} bytes")
    body = request.body
    if len(body) > limit:
        raise HttpError(413, "body_too_large", f"body larger than {limit} bytes")
    if not body:
        raise HttpError(400, "invalid_request", "empty body")
    return body


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"duplicate key {key!r}")
        result[key] = value
    return result


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def loads_strict(text: str) -> Any:
    """RFC 8259 JSON only: no repeated key, and none of Python's extensions ``NaN``, ``Infinity`` and
    ``-Infinity`` (which no other parser reads back, and which would reach the database as floats)."""
    return json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constant)


def read_json_object(request: HttpRequest, limit: int = MAX_BODY_BYTES) -> dict[str, Any]:
    body = read_body(request, "application/json", limit)
    try:
        data = loads_strict(body.decode("utf-8"))
    except UnicodeDecodeError:
        raise HttpError(400, "invalid_request", "body is not UTF-8") from None
    except (ValueError, RecursionError):
        raise HttpError(400, "invalid_request",
                        "body is not valid JSON (or repeats a key, or has NaN or Infinity)") from None
    if not isinstance(data, dict):
        raise HttpError(400, "invalid_request", "body must be a JSON object")
    return data


def read_form(request: HttpRequest, limit: int = MAX_BODY_BYTES) -> dict[str, list[str]]:
    """An ``application/x-www-form-urlencoded`` body as ``{name: [values]}``, repeated names kept, so a
    caller can insist on exactly one value. Wrong content type, bad encoding: 400 ``invalid_request``."""
    body = read_body(request, FORM_CONTENT_TYPE, limit, wrong_type_status=400)
    try:
        pairs = parse_qsl(body.decode("ascii"), keep_blank_values=True, encoding="utf-8", errors="strict",
                          max_num_fields=MAX_FORM_FIELDS)
    except ValueError:  # includes UnicodeDecodeError and too many fields
        raise HttpError(400, "invalid_request", "body is not a valid form") from None
    form: dict[str, list[str]] = {}
    for name, value in pairs:
        form.setdefault(name, []).append(value)
    return form


def optional_string(data: dict[str, Any], key: str, max_length: int = 255) -> str:
    value = data.get(key)
    if value is None:
        return ""
    if not isinstance(value, str) or len(value) > max_length or _CONTROL_OR_SURROGATE.search(value):
        raise HttpError(400, "invalid_request",
                        f"{key} must be a string of at most {max_length} characters, without control characters")
    return value
