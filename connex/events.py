"""Events: immutable records of changes, written in the transaction of the change."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from connex.context import RequestContext
from connex.errors import FieldError, NotFound, ValidationFailed
from connex.ids import new_id
from connex.models import Event
from connex.pagination import Page, fetch_page, page_request
from connex.scopes import Scope
from connex.webhooks import outbox

# Sent by "send test event" to one endpoint; never fanned out to the others.
TEST_EVENT_TYPE = "webhook_endpoint.test"

EVENT_TYPES = ("project.created", "project.updated", "project.archived", TEST_EVENT_TYPE)


async def record_event(
    session: AsyncSession, organization_id: str, event_type: str, data: dict[str, Any]
) -> Event:
    """Insert an event and, in the same transaction, its webhook deliveries (the outbox).

    Test events go only to the endpoint they test, so their delivery is added by the caller.
    """
    event = Event(id=new_id("evt"), organization_id=organization_id, type=event_type, data=data)
    session.add(event)
    await session.flush()
    if event_type != TEST_EVENT_TYPE:
        await outbox.add_deliveries(session, event)
    return event


async def list_events(
    ctx: RequestContext,
    *,
    organization_id: str | None,
    event_type: str | None,
    first: int | None,
    after: str | None,
    offset: int | None,
) -> Page[Any]:
    ctx.principal.require(Scope.EVENTS_READ)
    organization = ctx.principal.organization_for(organization_id)
    request = page_request(first, after, offset)
    if event_type is not None and event_type not in EVENT_TYPES:
        raise ValidationFailed(
            "Unknown event type", errors=[FieldError("type", f"must be one of {', '.join(EVENT_TYPES)}")]
        )
    table = Event.__table__
    query = select(table).where(table.c.organization_id == organization)
    if event_type is not None:
        query = query.where(table.c.type == event_type)
    return await fetch_page(ctx.db, query, table.c.created_at, table.c.id, request)


async def get_event(ctx: RequestContext, event_id: str) -> Event:
    ctx.principal.require(Scope.EVENTS_READ)
    async with ctx.db.sessions() as session:
        event = await session.get(Event, event_id)
    if event is None:
        raise NotFound(f"No event with id {event_id!r}")
    ctx.principal.check_organization(event.organization_id)
    return event
