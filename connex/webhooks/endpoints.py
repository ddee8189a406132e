"""Webhook endpoints: an organization's URLs, the events they want and their signing secrets."""

from __future__ import annotations

import socket
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from connex.context import RequestContext
from connex.db import utcnow
from connex.errors import Conflict, FieldError, NotFound, ValidationFailed
from connex.events import EVENT_TYPES, TEST_EVENT_TYPE, record_event
from connex.ids import new_id
from connex.models import DeliveryStatus, Organization, WebhookDelivery, WebhookEndpoint
from connex.pagination import Page, fetch_page, page_request
from connex.scopes import Scope
from connex.settings import Settings
from connex.validation import check_text
from connex.webhooks import outbox
from connex.webhooks.payload import API_VERSIONS
from connex.webhooks.signing import generate_secret
from connex.webhooks.ssrf import UnsafeURL, check_url, resolve_and_check

MAX_ENDPOINTS_PER_ORGANIZATION = 50
MAX_URL_LENGTH = 2048
# Event types an endpoint can subscribe to; the test event goes to its endpoint regardless.
SUBSCRIBABLE_TYPES = tuple(event_type for event_type in EVENT_TYPES if event_type != TEST_EVENT_TYPE)
DISABLED_BY_REQUEST = "Disabled through the API."

_endpoints = WebhookEndpoint.__table__
_deliveries = WebhookDelivery.__table__


@dataclass(slots=True)
class EndpointWithSecret:
    """An endpoint together with its new signing secret, returned once at creation or rotation."""

    endpoint: WebhookEndpoint
    secret: str

    def __getattr__(self, name: str) -> Any:
        # Called only for names not defined here: the GraphQL and REST fields of the endpoint.
        return getattr(self.endpoint, name)

    def __repr__(self) -> str:
        return f"EndpointWithSecret(endpoint={self.endpoint.id!r}, secret='***')"


async def check_endpoint_url(settings: Settings, url: str, field: str = "input.url") -> str:
    """Validate a webhook URL and resolve its host; raise ValidationFailed if it is unsafe."""
    if len(url) > MAX_URL_LENGTH:
        raise ValidationFailed("Invalid webhook URL", errors=[FieldError(field, f"must be at most {MAX_URL_LENGTH} characters")])
    exempt = settings.webhook_ssrf_exempt_networks
    try:
        target = check_url(url, allow_http=settings.webhook_allow_http, exempt_networks=exempt)
        await resolve_and_check(target.host, target.port, exempt_networks=exempt)
    except UnsafeURL as error:
        raise ValidationFailed("Invalid webhook URL", errors=[FieldError(field, str(error))]) from None
    except socket.gaierror:
        message = f"host {target.host!r} does not resolve; use a host name with a public DNS record"
        raise ValidationFailed("Invalid webhook URL", errors=[FieldError(field, message)]) from None
    return url


def check_event_types(errors: list[FieldError], event_types: list[str], field: str = "input.eventTypes") -> list[str]:
    """Return the types without duplicates, adding an error for each unknown one."""
    if not event_types:
        errors.append(FieldError(field, "must name at least one event type, or '*' for every type"))
    for event_type in event_types:
        if event_type != "*" and event_type not in SUBSCRIBABLE_TYPES:
            allowed = ", ".join(("*", *SUBSCRIBABLE_TYPES))
            errors.append(FieldError(field, f"unknown event type {event_type!r}; expected one of {allowed}"))
    return list(dict.fromkeys(event_types))


def check_api_version(errors: list[FieldError], api_version: str, field: str = "input.apiVersion") -> None:
    if api_version not in API_VERSIONS:
        errors.append(FieldError(field, f"must be one of {', '.join(API_VERSIONS)}"))


async def create_endpoint(
    ctx: RequestContext,
    *,
    url: str,
    event_types: list[str],
    api_version: str,
    description: str | None,
    enabled: bool,
    organization_id: str | None,
) -> EndpointWithSecret:
    ctx.principal.require(Scope.WEBHOOKS_WRITE)
    organization = ctx.principal.organization_for(organization_id, field="input.organizationId")
    errors: list[FieldError] = []
    types = check_event_types(errors, event_types)
    check_api_version(errors, api_version)
    check_text(errors, "input.description", description, max_length=500, required=False)
    if errors:
        raise ValidationFailed("Invalid webhook endpoint", errors=errors)
    await check_endpoint_url(ctx.services.settings, url)

    now = utcnow()
    secret = generate_secret()
    endpoint = WebhookEndpoint(
        id=new_id("we"),
        organization_id=organization,
        url=url,
        description=description,
        event_types=types,
        api_version=api_version,
        enabled=enabled,
        secret=secret,
        disabled_reason=None if enabled else DISABLED_BY_REQUEST,
        disabled_at=None if enabled else now,
        created_at=now,
        updated_at=now,
    )
    async with ctx.db.transaction() as session:
        if await session.get(Organization, organization) is None:
            raise NotFound(f"No organization with id {organization!r}")
        count_query = select(func.count()).select_from(_endpoints).where(_endpoints.c.organization_id == organization)
        if (await session.execute(count_query)).scalar_one() >= MAX_ENDPOINTS_PER_ORGANIZATION:
            raise Conflict(
                f"The organization already has {MAX_ENDPOINTS_PER_ORGANIZATION} webhook endpoints; delete one first"
            )
        session.add(endpoint)
    return EndpointWithSecret(endpoint, secret)


async def list_endpoints(
    ctx: RequestContext, *, organization_id: str | None, first: int | None, after: str | None, offset: int | None
) -> Page[Any]:
    """List endpoints newest first."""
    ctx.principal.require(Scope.WEBHOOKS_READ)
    organization = ctx.principal.organization_for(organization_id)
    request = page_request(first, after, offset)
    query = select(_endpoints).where(_endpoints.c.organization_id == organization)
    return await fetch_page(ctx.db, query, _endpoints.c.created_at, _endpoints.c.id, request)


async def get_endpoint(ctx: RequestContext, endpoint_id: str) -> WebhookEndpoint:
    ctx.principal.require(Scope.WEBHOOKS_READ)
    async with ctx.db.sessions() as session:
        return await load_endpoint(ctx, session, endpoint_id)


async def load_endpoint(
    ctx: RequestContext, session: AsyncSession, endpoint_id: str, *, lock: bool = False
) -> WebhookEndpoint:
    endpoint = await session.get(WebhookEndpoint, endpoint_id, with_for_update=lock)
    if endpoint is None:
        raise NotFound(f"No webhook endpoint with id {endpoint_id!r}")
    ctx.principal.check_organization(endpoint.organization_id)
    return endpoint


async def update_endpoint(ctx: RequestContext, endpoint_id: str, changes: dict[str, Any]) -> WebhookEndpoint:
    """Apply the given fields; a field absent from ``changes`` stays as it is.

    Enabling a disabled endpoint clears the reason and its run of failures, and queues
    its pending deliveries at once.
    """
    ctx.principal.require(Scope.WEBHOOKS_WRITE)
    errors: list[FieldError] = []
    for name in ("url", "event_types", "api_version", "enabled"):
        if name in changes and changes[name] is None:
            errors.append(FieldError(f"input.{_camel(name)}", "must not be null"))
    if changes.get("event_types") is not None:
        changes["event_types"] = check_event_types(errors, changes["event_types"])
    if changes.get("api_version") is not None:
        check_api_version(errors, changes["api_version"])
    if "description" in changes:
        check_text(errors, "input.description", changes["description"], max_length=500, required=False)
    if errors:
        raise ValidationFailed("Invalid webhook endpoint update", errors=errors)
    if "url" in changes:
        await check_endpoint_url(ctx.services.settings, changes["url"])

    now = utcnow()
    async with ctx.db.transaction() as session:
        endpoint = await load_endpoint(ctx, session, endpoint_id, lock=True)
        was_enabled = endpoint.enabled
        for name, value in changes.items():
            setattr(endpoint, name, value)
        if was_enabled and not endpoint.enabled:
            endpoint.disabled_reason = DISABLED_BY_REQUEST
            endpoint.disabled_at = now
        if endpoint.enabled and not was_enabled:
            endpoint.disabled_reason = None
            endpoint.disabled_at = None
            endpoint.failing_since = None
            await _queue_pending(session, endpoint.id, now)
        endpoint.updated_at = now
        await session.flush()
    return endpoint


async def _queue_pending(session: AsyncSession, endpoint_id: str, now: datetime) -> None:
    statement = (
        update(_deliveries)
        .where(_deliveries.c.endpoint_id == endpoint_id, _deliveries.c.status == DeliveryStatus.PENDING)
        .values(message_due_at=now)
        .returning(_deliveries.c.id)
    )
    outbox.queue_after_commit(session, list((await session.execute(statement)).scalars()))


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


async def delete_endpoint(ctx: RequestContext, endpoint_id: str) -> WebhookEndpoint:
    """Delete an endpoint with its deliveries and attempts."""
    ctx.principal.require(Scope.WEBHOOKS_WRITE)
    async with ctx.db.transaction() as session:
        endpoint = await load_endpoint(ctx, session, endpoint_id, lock=True)
        await session.delete(endpoint)
    return endpoint


async def rotate_secret(ctx: RequestContext, endpoint_id: str, overlap_seconds: int | None) -> EndpointWithSecret:
    """Issue a new secret; the current one keeps signing next to it for the overlap."""
    ctx.principal.require(Scope.WEBHOOKS_WRITE)
    max_overlap = 7 * 86400
    overlap = ctx.services.settings.webhook_secret_overlap_seconds if overlap_seconds is None else overlap_seconds
    if not 0 <= overlap <= max_overlap:
        raise ValidationFailed(
            "Invalid overlap", errors=[FieldError("input.overlapSeconds", f"must be between 0 and {max_overlap}")]
        )
    now = utcnow()
    secret = generate_secret()
    async with ctx.db.transaction() as session:
        endpoint = await load_endpoint(ctx, session, endpoint_id, lock=True)
        endpoint.previous_secret = endpoint.secret if overlap > 0 else None
        endpoint.previous_secret_expires_at = now + timedelta(seconds=overlap) if overlap > 0 else None
        endpoint.secret = secret
        endpoint.updated_at = now
        await session.flush()
    return EndpointWithSecret(endpoint, secret)


async def send_test_event(ctx: RequestContext, endpoint_id: str) -> WebhookDelivery:
    """Record a ``webhook_endpoint.test`` event and deliver it to this endpoint only."""
    ctx.principal.require(Scope.WEBHOOKS_WRITE)
    async with ctx.db.transaction() as session:
        endpoint = await load_endpoint(ctx, session, endpoint_id)
        if not endpoint.enabled:
            raise Conflict(f"Webhook endpoint {endpoint_id!r} is disabled; enable it before sending a test event")
        data = {"object": {"id": endpoint.id, "description": endpoint.description}}
        event = await record_event(session, endpoint.organization_id, TEST_EVENT_TYPE, data)
        [delivery_id] = await outbox.insert_deliveries(session, event, [(endpoint.id, endpoint.api_version)])
        query = select(WebhookDelivery).where(WebhookDelivery.id == delivery_id)
        return (await session.execute(query)).scalar_one()
