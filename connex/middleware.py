"""Plain ASGI middleware: request ids and access logs, body size limits, API key admission and metering."""

from __future__ import annotations

import logging
import re
import secrets
import time
from collections.abc import Iterable
from typing import Any

from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from connex.admission import Admission, KeyAdmission, rate_limit_headers
from connex.auth import parse_authorization
from connex.errors import ConnexError, PayloadTooLarge, RateLimited
from connex.logs import request_id_var
from connex.problems import problem_response
from connex.usage.meter import UsageMeter

logger = logging.getLogger("connex.access")
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{8,64}$")


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return value.decode("latin-1")
    return None


class RequestIdMiddleware:
    """Give each request an id, return it as X-Request-Id, and log one line per request."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = _header(scope, b"x-request-id")
        request_id = incoming if incoming and _REQUEST_ID.match(incoming) else secrets.token_hex(12)
        token = request_id_var.set(request_id)
        scope.setdefault("state", {})["request_id"] = request_id
        started = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message = {**message, "headers": [*message.get("headers", []), (b"x-request-id", request_id.encode())]}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            principal = scope["state"].get("principal")
            logger.info(
                "request",
                extra={
                    "method": scope["method"],
                    "path": scope["path"],
                    "status": status,
                    "duration_ms": round((time.perf_counter() - started) * 1000, 2),
                    "key_id": principal.key_id if principal else None,
                },
            )
            request_id_var.reset(token)


class BodyLimitMiddleware:
    """Reject request bodies over ``max_bytes`` with 413, by Content-Length or while reading."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _header(scope, b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._reject(scope, receive, send)
            return

        received = 0
        response_started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise PayloadTooLarge(f"The body exceeds {self.max_bytes} bytes")
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal response_started
            response_started = response_started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except PayloadTooLarge:
            if response_started:
                raise
            await self._reject(scope, receive, send)

    async def _reject(self, scope: Scope, receive: Receive, send: Send) -> None:
        error = PayloadTooLarge(f"The body exceeds {self.max_bytes} bytes")
        await problem_response(error, instance=scope["path"], headers={"Connection": "close"})(scope, receive, send)


class AdmissionGate:
    """The admission of one request by its key: run once, with the outcome stored in the request state.

    The middleware admits most requests before calling the app. A priced path (GraphQL)
    gets the gate in ``scope["state"]["admission_gate"]`` instead, and the endpoint calls
    ``admit`` with the request's cost before it does anything else.
    """

    def __init__(self, admission: KeyAdmission, key: str, state: dict[str, Any]) -> None:
        self._admission = admission
        self._key = key
        self._state = state

    async def admit(self, cost: int) -> Admission:
        """Authenticate and charge ``cost``; raise Unauthenticated for a bad key."""
        if "admission" in self._state:
            raise RuntimeError("a request can be admitted only once")
        admission = await self._admission.admit(self._key, cost)
        self._state["admission"] = admission
        self._state["principal"] = admission.principal
        return admission


def rate_limited_response(admission: Admission, instance: str, what: str = "request") -> Response:
    """Return the 429 problem response for a rejected admission, with Retry-After."""
    decision = admission.decision
    retry_after = admission.retry_after
    detail = (
        f"The API key's rate limit of {decision.limit} per {decision.window} s is used up: "
        f"this {what} costs {admission.cost} and {decision.remaining} remain. Retry after {retry_after} s."
    )
    return problem_response(RateLimited(detail), instance=instance, headers={"Retry-After": str(retry_after)})


class ApiKeyMiddleware:
    """Authenticate, rate-limit and meter every request on the API paths.

    Each request costs one unit, except on ``priced_paths``, whose endpoint charges the
    request's own cost through an AdmissionGate. Every response to an admitted or
    rate-limited request carries the rate-limit headers, and is counted in ``meter``
    with its status and latency, from here to the last byte of the body.
    """

    def __init__(
        self,
        app: ASGIApp,
        admission: KeyAdmission,
        meter: UsageMeter,
        prefixes: Iterable[str],
        priced_paths: Iterable[str] = (),
    ) -> None:
        self.app = app
        self.admission = admission
        self.meter = meter
        self.prefixes = tuple(prefixes)
        self.priced_paths = frozenset(priced_paths)

    def _protected(self, path: str) -> bool:
        return any(path == prefix or path.startswith(prefix + "/") for prefix in self.prefixes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self._protected(scope["path"]):
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        started_at = time.time()
        state = scope.setdefault("state", {})
        app = self.app

        try:
            key = parse_authorization(_header(scope, b"authorization"))
            gate = AdmissionGate(self.admission, key, state)
            if scope["path"] in self.priced_paths and scope["method"] in ("GET", "POST"):
                state["admission_gate"] = gate
            else:
                admission = await gate.admit(1)
                if not admission.allowed:
                    app = rate_limited_response(admission, scope["path"])
        except ConnexError as error:
            await problem_response(error, instance=scope["path"])(scope, receive, send)
            return

        status = 500

        async def send_with_headers(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                admitted = state.get("admission")
                if admitted is not None:
                    message = {**message, "headers": [*message.get("headers", []), *rate_limit_headers(admitted)]}
            await send(message)

        try:
            await app(scope, receive, send_with_headers)
        finally:
            admitted = state.get("admission")
            if admitted is not None:
                principal = admitted.principal
                seconds = time.perf_counter() - started
                self.meter.record(principal.key_id, principal.organization_id, status, seconds, started_at)
