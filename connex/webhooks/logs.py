"""Delivery logs and replay: reading deliveries and attempts, retrying and recovering failures."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Select, select, update

from connex.context import RequestContext
from connex.db import utcnow
from connex.errors import Conflict, FieldError, NotFound, ValidationFailed
from connex.models import (
    AttemptStatus,
    DeliveryStatus,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
)
from connex.pagination import Page, fetch_page, page_request
from connex.scopes import Scope
from connex.webhooks import outbox
from connex.webhooks.endpoints import load_endpoint

_endpoints = WebhookEndpoint.__table__
_deliveries = WebhookDelivery.__table__
_attempts = WebhookAttempt.__table__


def _check_range(after: datetime | None, before: datetime | None, after_name: str, before_name: str) -> None:
    if after is not None and before is not None and after >= before:
        raise ValidationFailed(
            "Invalid time range", errors=[FieldError(before_name, f"must be later than {after_name}")]
        )


async def _scope_to_endpoints(
    ctx: RequestContext, query: Select[Any], endpoint_column: Any, organization_id: str | None, endpoint_id: str | None
) -> Select[Any]:
    """Restrict a query to one endpoint, or to every endpoint of the caller's organization."""
    if endpoint_id is not None:
        async with ctx.db.sessions() as session:
            endpoint = await load_endpoint(ctx, session, endpoint_id)
        if organization_id is not None and endpoint.organization_id != organization_id:
            raise NotFound(f"No webhook endpoint with id {endpoint_id!r} in organization {organization_id!r}")
        return query.where(endpoint_column == endpoint_id)
    organization = ctx.principal.organization_for(organization_id)
    owned = select(_endpoints.c.id).where(_endpoints.c.organization_id == organization)
    return query.where(endpoint_column.in_(owned))


async def list_deliveries(
    ctx: RequestContext,
    *,
    organization_id: str | None,
    endpoint_id: str | None,
    status: DeliveryStatus | None,
    event_type: str | None,
    created_after: datetime | None,
    created_before: datetime | None,
    first: int | None,
    after: str | None,
    offset: int | None,
) -> Page[Any]:
    """List deliveries newest first, filtered by endpoint, status, event type and creation time."""
    ctx.principal.require(Scope.WEBHOOKS_READ)
    request = page_request(first, after, offset)
    _check_range(created_after, created_before, "createdAfter", "createdBefore")
    query = await _scope_to_endpoints(
        ctx, select(_deliveries), _deliveries.c.endpoint_id, organization_id, endpoint_id
    )
    if status is not None:
        query = query.where(_deliveries.c.status == status)
    if event_type is not None:
        query = query.where(_deliveries.c.event_type == event_type)
    if created_after is not None:
        query = query.where(_deliveries.c.created_at >= created_after)
    if created_before is not None:
        query = query.where(_deliveries.c.created_at < created_before)
    return await fetch_page(ctx.db, query, _deliveries.c.created_at, _deliveries.c.id, request)


async def get_delivery(ctx: RequestContext, delivery_id: str, endpoint_id: str | None = None) -> WebhookDelivery:
    ctx.principal.require(Scope.WEBHOOKS_READ)
    async with ctx.db.sessions() as session:
        return await _load_delivery(ctx, session, delivery_id, endpoint_id)


async def _load_delivery(
    ctx: RequestContext, session: Any, delivery_id: str, endpoint_id: str | None, *, lock: bool = False
) -> WebhookDelivery:
    delivery = await session.get(WebhookDelivery, delivery_id, with_for_update=lock)
    if delivery is None or (endpoint_id is not None and delivery.endpoint_id != endpoint_id):
        raise NotFound(f"No webhook delivery with id {delivery_id!r}")
    await load_endpoint(ctx, session, delivery.endpoint_id)
    return delivery


async def list_attempts(
    ctx: RequestContext,
    *,
    organization_id: str | None,
    endpoint_id: str | None,
    delivery_id: str | None,
    status: AttemptStatus | None,
    started_after: datetime | None,
    started_before: datetime | None,
    first: int | None,
    after: str | None,
    offset: int | None,
) -> Page[Any]:
    """List attempts newest first, filtered by endpoint, delivery, status and start time."""
    ctx.principal.require(Scope.WEBHOOKS_READ)
    request = page_request(first, after, offset)
    _check_range(started_after, started_before, "startedAfter", "startedBefore")
    query = await _scope_to_endpoints(ctx, select(_attempts), _attempts.c.endpoint_id, organization_id, endpoint_id)
    if delivery_id is not None:
        query = query.where(_attempts.c.delivery_id == delivery_id)
    if status is not None:
        query = query.where(_attempts.c.status == status)
    if started_after is not None:
        query = query.where(_attempts.c.started_at >= started_after)
    if started_before is not None:
        query = query.where(_attempts.c.started_at < started_before)
    return await fetch_page(ctx.db, query, _attempts.c.started_at, _attempts.c.id, request)


def _replay_values(now: datetime) -> dict[str, Any]:
    """Column values that put a failed delivery back at the start of the retry schedule."""
    return {
        "status": DeliveryStatus.PENDING,
        "round_attempts": 0,
        "next_attempt_at": now,
        "message_due_at": now,
        "completed_at": None,
    }


async def retry_delivery(ctx: RequestContext, delivery_id: str, endpoint_id: str | None = None) -> WebhookDelivery:
    """Send a failed delivery again, with the same webhook-id, from the start of the schedule."""
    ctx.principal.require(Scope.WEBHOOKS_WRITE)
    now = utcnow()
    async with ctx.db.transaction() as session:
        delivery = await _load_delivery(ctx, session, delivery_id, endpoint_id, lock=True)
        if delivery.status is not DeliveryStatus.FAILED:
            raise Conflict(
                f"Webhook delivery {delivery_id!r} is {delivery.status.value}; only failed deliveries can be retried"
            )
        endpoint = await load_endpoint(ctx, session, delivery.endpoint_id)
        _require_enabled(endpoint)
        for name, value in _replay_values(now).items():
            setattr(delivery, name, value)
        await session.flush()
        outbox.queue_after_commit(session, [delivery.id])
    return delivery


def _require_enabled(endpoint: WebhookEndpoint) -> None:
    if not endpoint.enabled:
        raise Conflict(f"Webhook endpoint {endpoint.id!r} is disabled; enable it before replaying deliveries")


async def recover_deliveries(
    ctx: RequestContext, endpoint_id: str, since: datetime, until: datetime | None
) -> list[str]:
    """Replay every failed delivery of an endpoint created in [since, until); return their ids."""
    ctx.principal.require(Scope.WEBHOOKS_WRITE)
    _check_range(since, until, "since", "until")
    now = utcnow()
    async with ctx.db.transaction() as session:
        endpoint = await load_endpoint(ctx, session, endpoint_id, lock=True)
        _require_enabled(endpoint)
        statement = update(_deliveries).where(
            _deliveries.c.endpoint_id == endpoint_id,
            _deliveries.c.status == DeliveryStatus.FAILED,
            _deliveries.c.created_at >= since,
        )
        if until is not None:
            statement = statement.where(_deliveries.c.created_at < until)
        statement = statement.values(**_replay_values(now)).returning(_deliveries.c.id)
        delivery_ids = list((await session.execute(statement)).scalars())
        outbox.queue_after_commit(session, delivery_ids)
    return delivery_ids
