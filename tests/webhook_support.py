"""Helpers shared by the webhook tests: a fake resolver, a controllable clock, a recording queue."""

from __future__ import annotations

import socket
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from ipaddress import ip_address
from typing import Any

import httpx
from sqlalchemy import select

from connex.db import utcnow
from connex.models import WebhookAttempt, WebhookDelivery
from tests.conftest import Caller

# Webhook scopes plus what the tests need to cause events.
WEBHOOK_SCOPES = ("webhooks:write", "projects:write", "events:read")


class FakeDNS:
    """A resolver for ssrf._resolve: names map to addresses the test sets; others do not resolve.

    The ``fake_dns`` fixture installs it, so that no test makes a real DNS query.
    """

    def __init__(self) -> None:
        self.records: dict[str, list[str]] = {}
        self.lookups: list[str] = []

    async def resolve(self, host: str, port: int) -> list[Any]:
        self.lookups.append(host)
        if host not in self.records:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [ip_address(address) for address in self.records[host]]


def _an_hour_ahead() -> datetime:
    return utcnow() + timedelta(hours=1)


@dataclass
class FakeClock:
    """A clock that moves only when a test sets or advances it. It starts an hour ahead, so new deliveries are due."""

    now: datetime = field(default_factory=_an_hour_ahead)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


class RecordingQueue:
    """A DeliveryQueue that only records, so tests decide when each attempt runs."""

    def __init__(self) -> None:
        self.sent: list[str] = []
        self.later: list[tuple[str, float]] = []

    def send(self, delivery_ids: Sequence[str]) -> None:
        self.sent.extend(delivery_ids)

    def send_later(self, delivery_id: str, delay_seconds: float) -> None:
        self.later.append((delivery_id, delay_seconds))


async def create_endpoint(
    client: httpx.AsyncClient, caller: Caller, url: str, version: str = "v2", **fields: Any
) -> dict[str, Any]:
    body = {"url": url, "event_types": ["*"], "api_version": "v2", **fields}
    response = await client.post(f"/{version}/webhook_endpoints", json=body, headers=caller.headers)
    assert response.status_code == 201, response.text
    return response.json()


async def create_project(client: httpx.AsyncClient, caller: Caller, name: str = "Zürich 東京 ✓") -> dict[str, Any]:
    response = await client.post("/v2/projects", json={"name": name}, headers=caller.headers)
    assert response.status_code == 201, response.text
    return response.json()


async def load_delivery(db: Any, delivery_id: str) -> WebhookDelivery:
    async with db.sessions() as session:
        delivery = await session.get(WebhookDelivery, delivery_id)
    assert delivery is not None
    return delivery


async def deliveries_of(db: Any, endpoint_id: str) -> list[WebhookDelivery]:
    query = select(WebhookDelivery).where(WebhookDelivery.endpoint_id == endpoint_id).order_by(WebhookDelivery.created_at)
    async with db.sessions() as session:
        return list((await session.execute(query)).scalars())


async def attempts_of(db: Any, delivery_id: str) -> list[WebhookAttempt]:
    query = select(WebhookAttempt).where(WebhookAttempt.delivery_id == delivery_id).order_by(WebhookAttempt.number)
    async with db.sessions() as session:
        return list((await session.execute(query)).scalars())
