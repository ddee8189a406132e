"""The route table: each REST route is one fixed GraphQL operation of the schema.

A version is a projection of the same operations: its own selection sets
(aliases rename fields), argument names (``params``), list envelope and
date-time representation. Everything else about a route (parameter types,
body schema, response schema, errors) is derived from the schema.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Literal

from connex.scopes import Scope

ResultKind = Literal["object", "list", "empty"]


@dataclass(frozen=True, slots=True)
class RouteSpec:
    method: str
    path: str
    operation: str
    summary: str
    tag: str
    scope: Scope
    kind: ResultKind = "object"
    status: int = 200
    # REST parameter name -> variable name, or "variable.field" to set one field of an input
    # object. Parameters not listed here use the snake_case form of their variable's name.
    params: Mapping[str, str] = field(default_factory=dict)
    # The variable that receives the JSON request body, if the route takes one.
    body: str | None = None
    # Template of the Location header of a 201 response, filled from the response object.
    location: str | None = None
    description: str = ""


@dataclass(frozen=True, slots=True)
class Version:
    name: str
    routes: tuple[RouteSpec, ...]
    # "cursor": {"data": [...], "next_cursor": ...}; "offset": {"object": "list", "data": [...], "has_more": ...}
    list_style: Literal["cursor", "offset"]
    # "rfc3339": "2026-12-04T20:00:00Z"; "unix": 1796414400
    datetime_style: Literal["rfc3339", "unix"]
    deprecated: bool = False
    changelog: tuple[tuple[date, str], ...] = ()


PROJECT_V2 = "fragment ProjectFields on Project { id organizationId name description status createdAt updatedAt }"
PROJECT_V1 = (
    "fragment ProjectFields on Project "
    "{ id organizationId name description status created: createdAt updated: updatedAt }"
)
EVENT_V2 = "fragment EventFields on Event { id type data createdAt }"
EVENT_V1 = "fragment EventFields on Event { id type data created: createdAt }"


def _project_routes(fragment: str, list_args: str, list_vars: str, page_fields: str, params: dict[str, str]) -> tuple[RouteSpec, ...]:
    tag = "Projects"
    return (
        RouteSpec(
            "GET",
            "/projects",
            f"query ListProjects({list_vars}, $status: ProjectStatus = ACTIVE, $organizationId: ID) "
            f"{{ projects({list_args}, status: $status, organizationId: $organizationId) "
            f"{{ nodes {{ ...ProjectFields }} pageInfo {{ {page_fields} }} }} }} {fragment}",
            "List projects",
            tag,
            Scope.PROJECTS_READ,
            kind="list",
            params=params,
            description="Newest update first. Only active projects unless `status` names another state.",
        ),
        RouteSpec(
            "POST",
            "/projects",
            f"mutation CreateProject($input: CreateProjectInput!) {{ createProject(input: $input) {{ ...ProjectFields }} }} {fragment}",
            "Create a project",
            tag,
            Scope.PROJECTS_WRITE,
            status=201,
            body="input",
            location="/projects/{id}",
        ),
        RouteSpec(
            "GET",
            "/projects/{id}",
            f"query GetProject($id: ID!) {{ project(id: $id) {{ ...ProjectFields }} }} {fragment}",
            "Get a project",
            tag,
            Scope.PROJECTS_READ,
        ),
        RouteSpec(
            "PATCH",
            "/projects/{id}",
            f"mutation UpdateProject($input: UpdateProjectInput!) {{ updateProject(input: $input) {{ ...ProjectFields }} }} {fragment}",
            "Update a project",
            tag,
            Scope.PROJECTS_WRITE,
            params={"id": "input.id"},
            body="input",
            description="Fields left out stay unchanged; `\"description\": null` clears the description.",
        ),
        RouteSpec(
            "DELETE",
            "/projects/{id}",
            "mutation ArchiveProject($id: ID!) { archiveProject(input: {id: $id}) { id } }",
            "Archive a project",
            tag,
            Scope.PROJECTS_WRITE,
            kind="empty",
            status=204,
            description="Archives the project; it stays readable and can be listed with `status=archived`.",
        ),
    )


def _event_routes(fragment: str, list_args: str, list_vars: str, page_fields: str, params: dict[str, str]) -> tuple[RouteSpec, ...]:
    tag = "Events"
    return (
        RouteSpec(
            "GET",
            "/events",
            f"query ListEvents({list_vars}, $type: String, $organizationId: ID) "
            f"{{ events({list_args}, type: $type, organizationId: $organizationId) "
            f"{{ nodes {{ ...EventFields }} pageInfo {{ {page_fields} }} }} }} {fragment}",
            "List events",
            tag,
            Scope.EVENTS_READ,
            kind="list",
            params=params,
            description="Newest first. Use it to reconcile after missed webhooks.",
        ),
        RouteSpec(
            "GET",
            "/events/{id}",
            f"query GetEvent($id: ID!) {{ event(id: $id) {{ ...EventFields }} }} {fragment}",
            "Get an event",
            tag,
            Scope.EVENTS_READ,
        ),
    )


_ENDPOINT_FIELDS = (
    "id organizationId url description eventTypes apiVersion enabled disabledReason disabledAt "
    "failingSince previousSecretExpiresAt"
)
_DELIVERY_FIELDS = "id endpointId eventId eventType status attemptCount nextAttemptAt lastAttemptAt lastStatusCode completedAt"
_ATTEMPT_FIELDS = (
    "id deliveryId endpointId number status startedAt durationMs statusCode error responseBody requestHeaders"
)


def _webhook_fragments(created: str, updated: str) -> str:
    """Return the fragments of the webhook routes, given the selections of the two times."""
    times = f"{created} {updated}"
    return (
        f"fragment EndpointFields on WebhookEndpoint {{ {_ENDPOINT_FIELDS} {times} }} "
        f"fragment EndpointSecretFields on WebhookEndpointWithSecret {{ {_ENDPOINT_FIELDS} {times} secret }} "
        f"fragment DeliveryFields on WebhookDelivery {{ {_DELIVERY_FIELDS} {created} }} "
        f"fragment AttemptFields on WebhookAttempt {{ {_ATTEMPT_FIELDS} }}"
    )


WEBHOOKS_V2 = _webhook_fragments("createdAt", "updatedAt")
WEBHOOKS_V1 = _webhook_fragments("created: createdAt", "updated: updatedAt")


def _operation(text: str, fragments: str) -> str:
    """Append only the fragments that ``text`` spreads, since unused fragments fail validation."""
    used = [part for part in fragments.split("fragment ")[1:] if f"...{part.split()[0]}" in text]
    return text + " " + " ".join("fragment " + part.strip() for part in used)


def _webhook_endpoint_routes(fragments: str, list_args: str, list_vars: str, page_fields: str, params: dict[str, str]) -> tuple[RouteSpec, ...]:
    tag = "Webhook endpoints"
    return (
        RouteSpec(
            "GET",
            "/webhook_endpoints",
            _operation(
                f"query ListWebhookEndpoints({list_vars}, $organizationId: ID) "
                f"{{ webhookEndpoints({list_args}, organizationId: $organizationId) "
                f"{{ nodes {{ ...EndpointFields }} pageInfo {{ {page_fields} }} }} }}",
                fragments,
            ),
            "List webhook endpoints",
            tag,
            Scope.WEBHOOKS_READ,
            kind="list",
            params=params,
            description="Newest first.",
        ),
        RouteSpec(
            "POST",
            "/webhook_endpoints",
            _operation(
                "mutation CreateWebhookEndpoint($input: CreateWebhookEndpointInput!) "
                "{ createWebhookEndpoint(input: $input) { ...EndpointSecretFields } }",
                fragments,
            ),
            "Create a webhook endpoint",
            tag,
            Scope.WEBHOOKS_WRITE,
            status=201,
            body="input",
            location="/webhook_endpoints/{id}",
            description="The response contains the signing secret `secret`. It is never shown again.",
        ),
        RouteSpec(
            "GET",
            "/webhook_endpoints/{id}",
            _operation(
                "query GetWebhookEndpoint($id: ID!) { webhookEndpoint(id: $id) { ...EndpointFields } }", fragments
            ),
            "Get a webhook endpoint",
            tag,
            Scope.WEBHOOKS_READ,
        ),
        RouteSpec(
            "PATCH",
            "/webhook_endpoints/{id}",
            _operation(
                "mutation UpdateWebhookEndpoint($input: UpdateWebhookEndpointInput!) "
                "{ updateWebhookEndpoint(input: $input) { ...EndpointFields } }",
                fragments,
            ),
            "Update a webhook endpoint",
            tag,
            Scope.WEBHOOKS_WRITE,
            params={"id": "input.id"},
            body="input",
            description="Fields left out stay unchanged. `\"enabled\": true` re-enables a disabled endpoint "
            "and resumes its pending deliveries.",
        ),
        RouteSpec(
            "DELETE",
            "/webhook_endpoints/{id}",
            "mutation DeleteWebhookEndpoint($id: ID!) { deleteWebhookEndpoint(input: {id: $id}) { id } }",
            "Delete a webhook endpoint",
            tag,
            Scope.WEBHOOKS_WRITE,
            kind="empty",
            status=204,
            description="Deletes the endpoint with its deliveries and attempts.",
        ),
        RouteSpec(
            "POST",
            "/webhook_endpoints/{id}/rotate_secret",
            _operation(
                "mutation RotateWebhookEndpointSecret($input: RotateWebhookEndpointSecretInput!) "
                "{ rotateWebhookEndpointSecret(input: $input) { ...EndpointSecretFields } }",
                fragments,
            ),
            "Rotate the signing secret",
            tag,
            Scope.WEBHOOKS_WRITE,
            params={"id": "input.id"},
            body="input",
            description="Returns the new secret once. Deliveries carry a signature with the old secret too "
            "until `previous_secret_expires_at`.",
        ),
        RouteSpec(
            "POST",
            "/webhook_endpoints/{id}/test",
            _operation(
                "mutation SendWebhookTestEvent($id: ID!) { sendWebhookTestEvent(input: {id: $id}) { ...DeliveryFields } }",
                fragments,
            ),
            "Send a test event",
            tag,
            Scope.WEBHOOKS_WRITE,
            status=202,
            description="Records a `webhook_endpoint.test` event and delivers it to this endpoint only.",
        ),
    )


def _webhook_delivery_routes(fragments: str, list_args: str, list_vars: str, page_fields: str, params: dict[str, str]) -> tuple[RouteSpec, ...]:
    tag = "Webhook deliveries"
    return (
        RouteSpec(
            "GET",
            "/webhook_endpoints/{id}/deliveries",
            _operation(
                f"query ListWebhookDeliveries($id: ID!, {list_vars}, $status: WebhookDeliveryStatus, "
                "$eventType: String, $createdAfter: DateTime, $createdBefore: DateTime) "
                f"{{ webhookDeliveries(endpointId: $id, {list_args}, status: $status, eventType: $eventType, "
                "createdAfter: $createdAfter, createdBefore: $createdBefore) "
                f"{{ nodes {{ ...DeliveryFields }} pageInfo {{ {page_fields} }} }} }}",
                fragments,
            ),
            "List an endpoint's deliveries",
            tag,
            Scope.WEBHOOKS_READ,
            kind="list",
            params=params,
            description="Newest first. A delivery's `id` is the `webhook-id` header of each of its attempts.",
        ),
        RouteSpec(
            "GET",
            "/webhook_endpoints/{id}/deliveries/{delivery_id}",
            _operation(
                "query GetWebhookDelivery($id: ID!, $deliveryId: ID!) "
                "{ webhookDelivery(id: $deliveryId, endpointId: $id) { ...DeliveryFields } }",
                fragments,
            ),
            "Get a delivery",
            tag,
            Scope.WEBHOOKS_READ,
        ),
        RouteSpec(
            "GET",
            "/webhook_endpoints/{id}/deliveries/{delivery_id}/attempts",
            _operation(
                f"query ListWebhookDeliveryAttempts($id: ID!, $deliveryId: ID!, {list_vars}) "
                f"{{ webhookAttempts(endpointId: $id, deliveryId: $deliveryId, {list_args}) "
                f"{{ nodes {{ ...AttemptFields }} pageInfo {{ {page_fields} }} }} }}",
                fragments,
            ),
            "List a delivery's attempts",
            tag,
            Scope.WEBHOOKS_READ,
            kind="list",
            params=params,
            description="Newest first.",
        ),
        RouteSpec(
            "GET",
            "/webhook_endpoints/{id}/attempts",
            _operation(
                f"query ListWebhookAttempts($id: ID!, {list_vars}, $deliveryId: ID, $status: WebhookAttemptStatus, "
                "$startedAfter: DateTime, $startedBefore: DateTime) "
                f"{{ webhookAttempts(endpointId: $id, {list_args}, deliveryId: $deliveryId, status: $status, "
                "startedAfter: $startedAfter, startedBefore: $startedBefore) "
                f"{{ nodes {{ ...AttemptFields }} pageInfo {{ {page_fields} }} }} }}",
                fragments,
            ),
            "List an endpoint's attempts",
            tag,
            Scope.WEBHOOKS_READ,
            kind="list",
            params=params,
            description="Newest first, across all deliveries of the endpoint.",
        ),
        RouteSpec(
            "POST",
            "/webhook_endpoints/{id}/deliveries/{delivery_id}/retry",
            _operation(
                "mutation RetryWebhookDelivery($id: ID!, $deliveryId: ID!) "
                "{ retryWebhookDelivery(input: {id: $deliveryId, endpointId: $id}) { ...DeliveryFields } }",
                fragments,
            ),
            "Retry a failed delivery",
            tag,
            Scope.WEBHOOKS_WRITE,
            status=202,
            description="Only failed deliveries can be retried. The retry keeps the `webhook-id` and starts "
            "the retry schedule again.",
        ),
        RouteSpec(
            "POST",
            "/webhook_endpoints/{id}/recover",
            "mutation RecoverWebhookDeliveries($input: RecoverWebhookDeliveriesInput!) "
            "{ recoverWebhookDeliveries(input: $input) { endpointId since until deliveryCount deliveryIds } }",
            "Recover failed deliveries",
            tag,
            Scope.WEBHOOKS_WRITE,
            status=202,
            params={"id": "input.endpointId"},
            body="input",
            description="Retries every failed delivery of the endpoint created at or after `since` "
            "(and before `until`, when given).",
        ),
    )


_USAGE_STATS = (
    "requests status_2xx: status2xx status_4xx: status4xx status_5xx: status5xx rateLimited errorRate "
    "latency { p50Ms p95Ms p99Ms }"
)
USAGE_OPERATION = (
    "query GetUsage($from: DateTime!, $to: DateTime!, $granularity: UsageGranularity = HOUR, "
    "$apiKeyId: ID, $organizationId: ID) "
    "{ usage(from: $from, to: $to, granularity: $granularity, apiKeyId: $apiKeyId, organizationId: $organizationId) "
    f"{{ granularity start end apiKeyId organizationId buckets {{ start {_USAGE_STATS} }} totals {{ {_USAGE_STATS} }} }} }}"
)


def _usage_routes() -> tuple[RouteSpec, ...]:
    return (
        RouteSpec(
            "GET",
            "/usage",
            USAGE_OPERATION,
            "Get API usage",
            "Usage",
            Scope.USAGE_READ,
            description=(
                "Requests per period for the key's organization, or for one of its keys with "
                "`api_key_id`: counts by status class, rate-limited requests, error rate and "
                "latency percentiles. Requests appear within about 10 seconds with the default settings."
            ),
        ),
    )


_V1_LIST = ("first: $first, offset: $offset", "$first: Int, $offset: Int", "hasNextPage", {"limit": "first"})
_V2_LIST = (
    "first: $first, after: $after",
    "$first: Int, $after: String",
    "hasNextPage endCursor",
    {"limit": "first", "cursor": "after"},
)

V1 = Version(
    name="v1",
    routes=(
        _project_routes(PROJECT_V1, *_V1_LIST)
        + _event_routes(EVENT_V1, *_V1_LIST)
        + _webhook_endpoint_routes(WEBHOOKS_V1, *_V1_LIST)
        + _webhook_delivery_routes(WEBHOOKS_V1, *_V1_LIST)
        + _usage_routes()
    ),
    list_style="offset",
    datetime_style="unix",
    deprecated=True,
    changelog=((date(2025, 3, 1), "First public version."),),
)

V2 = Version(
    name="v2",
    routes=(
        _project_routes(PROJECT_V2, *_V2_LIST)
        + _event_routes(EVENT_V2, *_V2_LIST)
        + _webhook_endpoint_routes(WEBHOOKS_V2, *_V2_LIST)
        + _webhook_delivery_routes(WEBHOOKS_V2, *_V2_LIST)
        + _usage_routes()
    ),
    list_style="cursor",
    datetime_style="rfc3339",
    changelog=(
        (
            date(2026, 10, 1),
            "Lists page with an opaque `cursor` and return `next_cursor` instead of `limit`/`offset` "
            "and `has_more`; the list envelope drops `object`.",
        ),
        (
            date(2026, 10, 1),
            "Timestamps are RFC 3339 strings named `created_at` and `updated_at` instead of Unix "
            "seconds named `created` and `updated`.",
        ),
    ),
)

VERSIONS: dict[str, Version] = {version.name: version for version in (V1, V2)}
