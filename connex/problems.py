"""RFC 9457 problem details responses."""

from __future__ import annotations

from collections.abc import Mapping

import orjson
from starlette.responses import Response

from connex.errors import ConnexError, MethodNotAllowed, Unauthenticated
from connex.logs import request_id_var

PROBLEM_MEDIA_TYPE = "application/problem+json"


def problem_body(error: ConnexError, instance: str | None = None) -> dict[str, object]:
    body: dict[str, object] = {
        "type": error.type_uri,
        "title": error.title,
        "status": error.status,
        "detail": error.detail,
        "code": error.code,
    }
    if instance:
        body["instance"] = instance
    if error.errors:
        body["errors"] = [field_error.as_dict() for field_error in error.errors]
    request_id = request_id_var.get()
    if request_id:
        body["request_id"] = request_id
    return body


def problem_headers(error: ConnexError) -> dict[str, str]:
    headers: dict[str, str] = {}
    if isinstance(error, Unauthenticated):
        headers["WWW-Authenticate"] = 'Bearer realm="connex"'
    if isinstance(error, MethodNotAllowed):
        headers["Allow"] = ", ".join(error.allowed)
    return headers


def problem_response(
    error: ConnexError, instance: str | None = None, headers: Mapping[str, str] | None = None
) -> Response:
    all_headers = problem_headers(error)
    if headers:
        all_headers.update(headers)
    return Response(
        orjson.dumps(problem_body(error, instance)),
        status_code=error.status,
        media_type=PROBLEM_MEDIA_TYPE,
        headers=all_headers,
    )
