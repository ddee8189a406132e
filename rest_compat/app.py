"""The ASGI application serving one REST version from its compiled routes."""

from __future__ import annotations

import email.utils
import logging
from collections.abc import Mapping
from datetime import UTC, datetime, time
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Message, Receive, Scope, Send

from connex.context import RequestContext, Services
from connex.errors import BadRequest, ConnexError, MethodNotAllowed, NotFound, UnsupportedMediaType
from connex.problems import problem_response
from rest_compat import executor
from rest_compat.compiler import CompiledRoute
from rest_compat.routes import Version

logger = logging.getLogger("connex.rest")
JSON_MEDIA_TYPES = ("application/json", "application/merge-patch+json")


class VersionApp:
    def __init__(self, version: Version, routes: list[CompiledRoute], services: Services) -> None:
        self.version = version
        self.routes = routes
        self.services = services

    def match(self, method: str, path: str) -> tuple[CompiledRoute, dict[str, str]]:
        """Find the route for a method and a path relative to the version.

        A trailing slash is ignored, and HEAD is served by the GET route.
        """
        if len(path) > 1:
            path = path.rstrip("/")
        wanted = "GET" if method == "HEAD" else method
        allowed: set[str] = set()
        for route in self.routes:
            found = route.path_pattern.match(path)
            if found is None:
                continue
            if route.spec.method == wanted:
                return route, found.groupdict()
            allowed.add(route.spec.method)
        if allowed:
            if "GET" in allowed:
                allowed.add("HEAD")
            raise MethodNotAllowed(sorted(allowed))
        raise NotFound(f"No route for {path!r} in API {self.version.name}; see /docs/{self.version.name}")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        try:
            response = await self.handle(request)
        except ConnexError as error:
            response = problem_response(error, instance=request.url.path)
        except Exception:
            logger.exception("unexpected error in REST route", extra={"path": request.url.path})
            response = problem_response(ConnexError(), instance=request.url.path)
        await response(scope, receive, send)

    async def handle(self, request: Request) -> Response:
        relative = request.url.path[len(self.version.name) + 1 :] or "/"
        route, path_values = self.match(request.method, relative)
        body = await read_json_body(request) if route.body is not None else None
        variables = executor.bind(route, path_values, request.query_params, body)
        context = RequestContext(self.services, request.state.principal, request.state.request_id)
        value = await executor.run(route, variables, context)
        return self.respond(route, value)

    def respond(self, route: CompiledRoute, value: Any) -> Response:
        if route.spec.kind == "empty":
            return Response(status_code=route.spec.status)
        if route.spec.kind == "list":
            value = list_envelope(self.version, value)
        headers = {}
        if route.spec.location is not None:
            headers["Location"] = f"/{self.version.name}" + route.spec.location.format(**value)
        return Response(orjson.dumps(value), status_code=route.spec.status, media_type="application/json", headers=headers)


def list_envelope(version: Version, connection: Mapping[str, Any]) -> dict[str, Any]:
    page_info = connection["page_info"]
    if version.list_style == "offset":
        return {"object": "list", "data": connection["nodes"], "has_more": page_info["has_next_page"]}
    next_cursor = page_info["end_cursor"] if page_info["has_next_page"] else None
    return {"data": connection["nodes"], "next_cursor": next_cursor}


async def read_json_body(request: Request) -> Any:
    raw = await request.body()
    if not raw.strip():
        return {}
    media_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media_type not in JSON_MEDIA_TYPES and not media_type.endswith("+json"):
        raise UnsupportedMediaType(f"Send the body as application/json, not {media_type or 'an unlabelled body'!r}")
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as error:
        raise BadRequest(f"The body is not valid JSON: {error}") from None


def deprecation_headers(version: Version, deprecated_on: Any, sunset_on: Any, base_url: str) -> list[tuple[bytes, bytes]]:
    """Headers for every response of a deprecated version (RFC 9745, RFC 8594, RFC 8288)."""
    deprecated_at = datetime.combine(deprecated_on, time(0), UTC)
    sunset_at = datetime.combine(sunset_on, time(0), UTC)
    links = (
        f'<{base_url}/docs/v2>; rel="successor-version", '
        f'<{base_url}/docs/changelog>; rel="deprecation"; type="text/html"'
    )
    return [
        (b"deprecation", f"@{int(deprecated_at.timestamp())}".encode()),
        (b"sunset", email.utils.format_datetime(sunset_at, usegmt=True).encode()),
        (b"link", links.encode()),
    ]


class DeprecationHeaders:
    """Add the deprecation headers to every response under a deprecated version's prefix."""

    def __init__(self, app: Any, prefix: str, headers: list[tuple[bytes, bytes]]) -> None:
        self.app = app
        self.prefix = prefix
        self.headers = headers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not (scope["path"] + "/").startswith(self.prefix + "/"):
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *self.headers]}
            await send(message)

        await self.app(scope, receive, send_with_headers)
