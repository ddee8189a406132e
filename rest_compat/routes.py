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
            description="Newest update first. Only active projects unless `status` says otherwise.",
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
    routes=_project_routes(PROJECT_V1, *_V1_LIST) + _event_routes(EVENT_V1, *_V1_LIST) + _usage_routes(),
    list_style="offset",
    datetime_style="unix",
    deprecated=True,
    changelog=((date(2025, 3, 1), "First public version."),),
)

V2 = Version(
    name="v2",
    routes=_project_routes(PROJECT_V2, *_V2_LIST) + _event_routes(EVENT_V2, *_V2_LIST) + _usage_routes(),
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
