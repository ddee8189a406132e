"""A webhook receiver on 127.0.0.1 for tests. It records every request and replies as the test sets.

It runs ``http.server`` on a thread, so it serves a worker in another process as well as
the test's own event loop. Each request is recorded with its headers, exact body bytes
and arrival time, and the receiver notes when two requests with the same ``webhook-id``
were in flight at once.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass(frozen=True, slots=True)
class Reply:
    status: int = 200
    body: bytes = b"ok"
    headers: dict[str, str] = field(default_factory=dict)
    # Seconds to wait before replying, to simulate a slow receiver.
    delay: float = 0.0


@dataclass(frozen=True, slots=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    arrived: float

    @property
    def webhook_id(self) -> str:
        return self.headers["webhook-id"]


Responder = Callable[[Received], Reply]


class Receiver:
    """Records requests; ``respond`` decides each reply (200 "ok" by default)."""

    def __init__(self, respond: Responder | None = None) -> None:
        self.respond: Responder = respond or (lambda _request: Reply())
        self.requests: list[Received] = []
        self.overlaps: list[str] = []
        self._in_flight: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="webhook-receiver", daemon=True)

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def ids(self) -> list[str]:
        with self._lock:
            return [request.webhook_id for request in self.requests]

    def start(self) -> Receiver:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _record(self, request: Received) -> None:
        with self._lock:
            self.requests.append(request)
            self._in_flight[request.webhook_id] += 1
            if self._in_flight[request.webhook_id] > 1:
                self.overlaps.append(request.webhook_id)

    def _done(self, webhook_id: str) -> None:
        with self._lock:
            self._in_flight[webhook_id] -= 1

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the name http.server dispatches to
                length = int(self.headers.get("content-length", "0"))
                body = self.rfile.read(length)
                headers = {name.lower(): value for name, value in self.headers.items()}
                request = Received(self.path, headers, body, time.time())
                webhook_id = headers.get("webhook-id", "")
                receiver._record(request)
                try:
                    reply = receiver.respond(request)
                    if reply.delay:
                        time.sleep(reply.delay)
                    self.send_response(reply.status)
                    for name, value in reply.headers.items():
                        self.send_header(name, value)
                    self.send_header("content-length", str(len(reply.body)))
                    self.end_headers()
                    self.wfile.write(reply.body)
                except (BrokenPipeError, ConnectionResetError):
                    pass
                finally:
                    receiver._done(webhook_id)

            def log_message(self, format: str, *args: object) -> None:
                pass

        return Handler


@contextmanager
def running_receiver(respond: Responder | None = None) -> Iterator[Receiver]:
    receiver = Receiver(respond).start()
    try:
        yield receiver
    finally:
        receiver.stop()
