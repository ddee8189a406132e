"""A webhook receiver for bench/webhook_delivery.py: replies 200 at once and records arrivals.

Run by the benchmark as ``uvicorn bench.webhook_receiver:app`` in a process of its own.
GET /arrivals returns [[arrival time, webhook-id, project id or null], ...] and clears them.
"""

from __future__ import annotations

import time
from typing import Any

import orjson

_arrivals: list[tuple[float, str, str | None]] = []


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    if scope["method"] == "GET":
        payload = orjson.dumps(_arrivals)
        _arrivals.clear()
    else:
        arrived = time.time()
        headers = dict(scope["headers"])
        webhook_id = headers.get(b"webhook-id", b"").decode()
        project_id = orjson.loads(body).get("data", {}).get("object", {}).get("id") if body else None
        _arrivals.append((arrived, webhook_id, project_id))
        payload = b"ok"
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", str(len(payload)).encode())]})
    await send({"type": "http.response.body", "body": payload})
