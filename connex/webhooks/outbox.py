"""The transactional outbox of webhook deliveries.

The transaction that records an event also inserts one delivery row per matching
enabled endpoint and notes the new delivery ids on its session. Only after that
transaction commits are the ids sent to the queue (Dramatiq), so a rolled-back change
sends nothing. If sending to the queue fails, the rows are still there and the
periodic sweep sends them once their queue message is overdue.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from datetime import datetime
from typing import Protocol

from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from connex.db import Database, utcnow
from connex.ids import new_id
from connex.models import DeliveryStatus, Event, WebhookDelivery, WebhookEndpoint

logger = logging.getLogger("connex.webhooks")

# Key in AsyncSession.info under which a transaction collects the ids to queue after commit.
PENDING_KEY = "connex.webhook_delivery_ids"
DELIVERY_ID_PREFIX = "msg"

_endpoints = WebhookEndpoint.__table__
_deliveries = WebhookDelivery.__table__


class DeliveryQueue(Protocol):
    """Destination of delivery ids to attempt: the webhooks actor of a Dramatiq broker."""

    def send(self, delivery_ids: Sequence[str]) -> None:
        """Queue an attempt of each delivery now."""

    def send_later(self, delivery_id: str, delay_seconds: float) -> None:
        """Queue an attempt of one delivery after ``delay_seconds``."""


def matches(event_types: Sequence[str], event_type: str) -> bool:
    return "*" in event_types or event_type in event_types


async def add_deliveries(session: AsyncSession, event: Event) -> list[str]:
    """Insert a delivery of ``event`` for each enabled endpoint that subscribes to its type."""
    query = select(_endpoints.c.id, _endpoints.c.event_types, _endpoints.c.api_version).where(
        _endpoints.c.organization_id == event.organization_id, _endpoints.c.enabled.is_(True)
    )
    endpoints = [row for row in (await session.execute(query)).all() if matches(row.event_types, event.type)]
    return await insert_deliveries(
        session, event, [(row.id, row.api_version) for row in endpoints], now=event.created_at
    )


async def insert_deliveries(
    session: AsyncSession, event: Event, targets: Sequence[tuple[str, str]], *, now: datetime | None = None
) -> list[str]:
    """Insert one pending delivery per (endpoint id, API version) and queue it after commit."""
    if not targets:
        return []
    now = now or utcnow()
    rows = [
        {
            "id": new_id(DELIVERY_ID_PREFIX),
            "endpoint_id": endpoint_id,
            "event_id": event.id,
            "event_type": event.type,
            "api_version": api_version,
            "status": DeliveryStatus.PENDING,
            "attempt_count": 0,
            "round_attempts": 0,
            "next_attempt_at": now,
            "message_due_at": now,
            "created_at": now,
        }
        for endpoint_id, api_version in targets
    ]
    await session.execute(insert(_deliveries), rows)
    ids = [row["id"] for row in rows]
    queue_after_commit(session, ids)
    return ids


def queue_after_commit(session: AsyncSession, delivery_ids: Sequence[str]) -> None:
    session.info.setdefault(PENDING_KEY, []).extend(delivery_ids)


def install(db: Database, queue: DeliveryQueue) -> None:
    """Send the delivery ids each committed transaction of ``db`` collected to ``queue``."""

    async def send_after_commit(session: AsyncSession) -> None:
        delivery_ids = session.info.pop(PENDING_KEY, None)
        if not delivery_ids:
            return
        try:
            # The Redis broker's client blocks, so it runs outside the event loop.
            await asyncio.to_thread(queue.send, delivery_ids)
        except Exception as error:  # noqa: BLE001 - the change is committed; the sweep sends these later
            logger.warning(
                "queueing webhook deliveries failed; the sweep will send them",
                extra={"delivery_count": len(delivery_ids), "error": repr(error)},
            )

    db.after_commit.append(send_after_commit)
