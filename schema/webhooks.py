"""GraphQL types, queries and mutations of webhook endpoints, deliveries and attempts."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Annotated, Any

import strawberry
from strawberry.scalars import JSON

from connex.context import RequestContext
from connex.models import AttemptStatus as AttemptStatusModel
from connex.models import DeliveryStatus as DeliveryStatusModel
from connex.webhooks import endpoints, logs
from schema.queries import (
    AFTER_DESCRIPTION,
    FIRST_DESCRIPTION,
    OFFSET_DESCRIPTION,
    ORGANIZATION_DESCRIPTION,
)
from schema.types import PageInfo, connection_from_page

Info = strawberry.Info[RequestContext, None]


@strawberry.enum(description="The REST API version whose representation a webhook payload uses.")
class WebhookApiVersion(enum.Enum):
    V1 = "v1"
    V2 = "v2"


WebhookDeliveryStatus = strawberry.enum(
    DeliveryStatusModel,
    name="WebhookDeliveryStatus",
    description="pending: attempts remain; succeeded: a 2xx arrived; failed: every attempt failed (dead letter).",
)
WebhookAttemptStatus = strawberry.enum(
    AttemptStatusModel,
    name="WebhookAttemptStatus",
    description="interrupted: the worker stopped while sending, so the outcome is unknown.",
)


@strawberry.type(description="A URL of an organization that receives signed webhooks.")
class WebhookEndpoint:
    id: strawberry.ID
    organization_id: strawberry.ID
    url: str
    description: str | None
    event_types: list[str] = strawberry.field(description="Exact event type names, or '*' for every type.")
    api_version: WebhookApiVersion = strawberry.field(description="The REST version whose payload representation is sent.")
    enabled: bool
    disabled_reason: str | None = strawberry.field(description="Why the endpoint was disabled, if it is.")
    disabled_at: datetime | None
    failing_since: datetime | None = strawberry.field(
        description="Start of the current run of failed attempts; null after a success."
    )
    previous_secret_expires_at: datetime | None = strawberry.field(
        description="Until then, deliveries are also signed with the secret before the last rotation."
    )
    created_at: datetime
    updated_at: datetime


@strawberry.type(description="An endpoint and its new signing secret, shown only in this response.")
class WebhookEndpointWithSecret(WebhookEndpoint):
    secret: str = strawberry.field(description="The signing secret, 'whsec_' + base64. Store it now.")

    def __repr__(self) -> str:
        return f"WebhookEndpointWithSecret(id={self.id!r}, secret='***')"


@strawberry.type(description="One event for one endpoint. Its id is the webhook-id header of every attempt.")
class WebhookDelivery:
    id: strawberry.ID
    endpoint_id: strawberry.ID
    event_id: strawberry.ID
    event_type: str
    status: WebhookDeliveryStatus  # type: ignore[valid-type]
    attempt_count: int = strawberry.field(description="Attempts made so far, replays included.")
    next_attempt_at: datetime | None
    last_attempt_at: datetime | None
    last_status_code: int | None
    completed_at: datetime | None = strawberry.field(description="When the delivery succeeded or failed.")
    created_at: datetime


@strawberry.type(description="One HTTP request of a delivery and what came back.")
class WebhookAttempt:
    id: strawberry.ID
    delivery_id: strawberry.ID
    endpoint_id: strawberry.ID
    number: int = strawberry.field(description="1 for the first attempt of the delivery.")
    status: WebhookAttemptStatus  # type: ignore[valid-type]
    started_at: datetime
    duration_ms: int | None
    status_code: int | None
    error: str | None = strawberry.field(description="The network error, timeout or rejection; null when a response came.")
    response_body: str | None = strawberry.field(description="The first 4 KiB of the response body.")
    request_headers: JSON = strawberry.field(description="The headers sent; signatures are redacted.")


@strawberry.type
class WebhookEndpointConnection:
    nodes: list[WebhookEndpoint]
    page_info: PageInfo


@strawberry.type
class WebhookDeliveryConnection:
    nodes: list[WebhookDelivery]
    page_info: PageInfo


@strawberry.type
class WebhookAttemptConnection:
    nodes: list[WebhookAttempt]
    page_info: PageInfo


@strawberry.type(description="The failed deliveries that a recovery queued again.")
class WebhookRecovery:
    endpoint_id: strawberry.ID
    since: datetime
    until: datetime | None
    delivery_count: int
    delivery_ids: list[strawberry.ID]


@strawberry.input
class CreateWebhookEndpointInput:
    url: str = strawberry.field(description="An https URL with a public host.")
    event_types: list[str] = strawberry.field(description="Exact event type names, or ['*'] for every type.")
    api_version: WebhookApiVersion = strawberry.field(description="The payload representation: v1 or v2.")
    description: str | None = None
    enabled: bool = True
    organization_id: strawberry.ID | None = strawberry.field(
        default=None, description="Needed only with a platform admin key."
    )


ENDPOINT_ID = "The webhook endpoint's ID."


@strawberry.input(description="Fields left out stay unchanged; enabled: true re-enables a disabled endpoint.")
class UpdateWebhookEndpointInput:
    id: strawberry.ID = strawberry.field(description=ENDPOINT_ID)
    url: str | None = strawberry.UNSET
    event_types: list[str] | None = strawberry.UNSET
    api_version: WebhookApiVersion | None = strawberry.UNSET  # type: ignore[assignment]
    description: str | None = strawberry.UNSET
    enabled: bool | None = strawberry.UNSET


@strawberry.input
class WebhookEndpointIdInput:
    id: strawberry.ID = strawberry.field(description=ENDPOINT_ID)


@strawberry.input
class RotateWebhookEndpointSecretInput:
    id: strawberry.ID = strawberry.field(description=ENDPOINT_ID)
    overlap_seconds: int | None = strawberry.field(
        default=None,
        description="How long the old secret keeps signing next to the new one: 0 to 604800; 86400 when omitted.",
    )


@strawberry.input
class RetryWebhookDeliveryInput:
    id: strawberry.ID = strawberry.field(description="The ID of a failed delivery.")
    endpoint_id: strawberry.ID | None = strawberry.field(
        default=None, description="The webhook endpoint's ID; when given, the delivery must belong to it."
    )


@strawberry.input
class RecoverWebhookDeliveriesInput:
    endpoint_id: strawberry.ID = strawberry.field(description=ENDPOINT_ID)
    since: datetime = strawberry.field(description="Replay failed deliveries created at or after this time.")
    until: datetime | None = strawberry.field(default=None, description="And created before this time.")


ENDPOINT_FILTER = "Only this endpoint's items."


@strawberry.type
class Query:
    @strawberry.field(description="Webhook endpoints, newest first.")
    async def webhook_endpoints(
        self,
        info: Info,
        organization_id: Annotated[strawberry.ID | None, strawberry.argument(description=ORGANIZATION_DESCRIPTION)] = None,
        first: Annotated[int | None, strawberry.argument(description=FIRST_DESCRIPTION)] = None,
        after: Annotated[str | None, strawberry.argument(description=AFTER_DESCRIPTION)] = None,
        offset: Annotated[int | None, strawberry.argument(description=OFFSET_DESCRIPTION)] = None,
    ) -> WebhookEndpointConnection:
        page = await endpoints.list_endpoints(
            info.context, organization_id=organization_id, first=first, after=after, offset=offset
        )
        return connection_from_page(WebhookEndpointConnection, page)

    @strawberry.field
    async def webhook_endpoint(
        self, info: Info, id: Annotated[strawberry.ID, strawberry.argument(description="The endpoint's ID.")]
    ) -> WebhookEndpoint:
        return await endpoints.get_endpoint(info.context, id)  # type: ignore[return-value]

    @strawberry.field(description="Webhook deliveries, newest first.")
    async def webhook_deliveries(
        self,
        info: Info,
        organization_id: Annotated[strawberry.ID | None, strawberry.argument(description=ORGANIZATION_DESCRIPTION)] = None,
        endpoint_id: Annotated[strawberry.ID | None, strawberry.argument(description=ENDPOINT_FILTER)] = None,
        status: Annotated[
            WebhookDeliveryStatus | None, strawberry.argument(description="Only deliveries in this state.")  # type: ignore[valid-type]
        ] = None,
        event_type: Annotated[str | None, strawberry.argument(description="Only deliveries of this event type.")] = None,
        created_after: Annotated[
            datetime | None, strawberry.argument(description="Only deliveries created at or after this time.")
        ] = None,
        created_before: Annotated[
            datetime | None, strawberry.argument(description="Only deliveries created before this time.")
        ] = None,
        first: Annotated[int | None, strawberry.argument(description=FIRST_DESCRIPTION)] = None,
        after: Annotated[str | None, strawberry.argument(description=AFTER_DESCRIPTION)] = None,
        offset: Annotated[int | None, strawberry.argument(description=OFFSET_DESCRIPTION)] = None,
    ) -> WebhookDeliveryConnection:
        page = await logs.list_deliveries(
            info.context,
            organization_id=organization_id,
            endpoint_id=endpoint_id,
            status=status,
            event_type=event_type,
            created_after=created_after,
            created_before=created_before,
            first=first,
            after=after,
            offset=offset,
        )
        return connection_from_page(WebhookDeliveryConnection, page)

    @strawberry.field
    async def webhook_delivery(
        self,
        info: Info,
        id: Annotated[strawberry.ID, strawberry.argument(description="The delivery's ID, its webhook-id.")],
        endpoint_id: Annotated[
            strawberry.ID | None, strawberry.argument(description="When given, the delivery must belong to it.")
        ] = None,
    ) -> WebhookDelivery:
        return await logs.get_delivery(info.context, id, endpoint_id)  # type: ignore[return-value]

    @strawberry.field(description="Webhook attempts, newest first.")
    async def webhook_attempts(
        self,
        info: Info,
        organization_id: Annotated[strawberry.ID | None, strawberry.argument(description=ORGANIZATION_DESCRIPTION)] = None,
        endpoint_id: Annotated[strawberry.ID | None, strawberry.argument(description=ENDPOINT_FILTER)] = None,
        delivery_id: Annotated[strawberry.ID | None, strawberry.argument(description="Only this delivery's attempts.")] = None,
        status: Annotated[
            WebhookAttemptStatus | None, strawberry.argument(description="Only attempts with this outcome.")  # type: ignore[valid-type]
        ] = None,
        started_after: Annotated[
            datetime | None, strawberry.argument(description="Only attempts started at or after this time.")
        ] = None,
        started_before: Annotated[
            datetime | None, strawberry.argument(description="Only attempts started before this time.")
        ] = None,
        first: Annotated[int | None, strawberry.argument(description=FIRST_DESCRIPTION)] = None,
        after: Annotated[str | None, strawberry.argument(description=AFTER_DESCRIPTION)] = None,
        offset: Annotated[int | None, strawberry.argument(description=OFFSET_DESCRIPTION)] = None,
    ) -> WebhookAttemptConnection:
        page = await logs.list_attempts(
            info.context,
            organization_id=organization_id,
            endpoint_id=endpoint_id,
            delivery_id=delivery_id,
            status=status,
            started_after=started_after,
            started_before=started_before,
            first=first,
            after=after,
            offset=offset,
        )
        return connection_from_page(WebhookAttemptConnection, page)


def _api_version(value: Any) -> str:
    return value.value if isinstance(value, WebhookApiVersion) else value


@strawberry.type
class Mutation:
    @strawberry.mutation(description="Create an endpoint. The response contains its signing secret, shown only once.")
    async def create_webhook_endpoint(self, info: Info, input: CreateWebhookEndpointInput) -> WebhookEndpointWithSecret:
        return await endpoints.create_endpoint(  # type: ignore[return-value]
            info.context,
            url=input.url,
            event_types=input.event_types,
            api_version=_api_version(input.api_version),
            description=input.description,
            enabled=input.enabled,
            organization_id=input.organization_id,
        )

    @strawberry.mutation
    async def update_webhook_endpoint(self, info: Info, input: UpdateWebhookEndpointInput) -> WebhookEndpoint:
        changes = {
            name: getattr(input, name)
            for name in ("url", "event_types", "api_version", "description", "enabled")
            if getattr(input, name) is not strawberry.UNSET
        }
        if changes.get("api_version") is not None:
            changes["api_version"] = _api_version(changes["api_version"])
        return await endpoints.update_endpoint(info.context, input.id, changes)  # type: ignore[return-value]

    @strawberry.mutation(description="Delete an endpoint with its deliveries and attempts.")
    async def delete_webhook_endpoint(self, info: Info, input: WebhookEndpointIdInput) -> WebhookEndpoint:
        return await endpoints.delete_endpoint(info.context, input.id)  # type: ignore[return-value]

    @strawberry.mutation(description="Issue a new signing secret; the old one keeps signing for the overlap.")
    async def rotate_webhook_endpoint_secret(
        self, info: Info, input: RotateWebhookEndpointSecretInput
    ) -> WebhookEndpointWithSecret:
        return await endpoints.rotate_secret(info.context, input.id, input.overlap_seconds)  # type: ignore[return-value]

    @strawberry.mutation(description="Send a webhook_endpoint.test event to this endpoint only.")
    async def send_webhook_test_event(self, info: Info, input: WebhookEndpointIdInput) -> WebhookDelivery:
        return await endpoints.send_test_event(info.context, input.id)  # type: ignore[return-value]

    @strawberry.mutation(description="Send a failed delivery again with the same webhook-id.")
    async def retry_webhook_delivery(self, info: Info, input: RetryWebhookDeliveryInput) -> WebhookDelivery:
        return await logs.retry_delivery(info.context, input.id, input.endpoint_id)  # type: ignore[return-value]

    @strawberry.mutation(description="Send again every failed delivery of an endpoint created since a time.")
    async def recover_webhook_deliveries(self, info: Info, input: RecoverWebhookDeliveriesInput) -> WebhookRecovery:
        delivery_ids = await logs.recover_deliveries(info.context, input.endpoint_id, input.since, input.until)
        return WebhookRecovery(
            endpoint_id=input.endpoint_id,
            since=input.since,
            until=input.until,
            delivery_count=len(delivery_ids),
            delivery_ids=delivery_ids,  # type: ignore[arg-type]
        )
