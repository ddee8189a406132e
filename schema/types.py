"""The GraphQL object types of the domain.

Resolvers return database rows (ORM objects or Core rows); fields without a
resolver read the attribute of the same name.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

import strawberry
from strawberry.scalars import JSON

from connex import apikeys
from connex.keys import PREFIX
from connex.models import ProjectStatus as ProjectStatusModel

ProjectStatus = strawberry.enum(
    ProjectStatusModel, name="ProjectStatus", description="Lifecycle state of a project."
)


@strawberry.enum(description="Whether an API key can still authenticate.")
class ApiKeyStatus(enum.Enum):
    ACTIVE = "active"
    EXPIRED = "expired"
    REVOKED = "revoked"


@strawberry.type(description="A tenant; every partner key and resource belongs to one.")
class Organization:
    id: strawberry.ID
    slug: str
    name: str
    created_at: datetime


@strawberry.type(description="An API key. The key itself is returned only when it is issued.")
class ApiKey:
    id: strawberry.ID
    name: str
    organization_id: strawberry.ID | None
    scopes: list[str]
    rate_limit_per_minute: int | None
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None = strawberry.field(
        description="Time of the most recent request; written in batches, so it can lag by up to a minute."
    )
    rotated_from_id: strawberry.ID | None

    @strawberry.field(description="The key with all but its prefix and last four characters hidden.")
    def redacted_key(self, root: strawberry.Parent[Any]) -> str:
        return f"{PREFIX}…{root.last4}"

    @strawberry.field
    def status(self, root: strawberry.Parent[Any]) -> ApiKeyStatus:
        return ApiKeyStatus(apikeys.key_status(root))


@strawberry.type
class IssuedApiKey:
    api_key: ApiKey
    secret: str = strawberry.field(description="The key. It is shown only in this response; store it now.")

    def __repr__(self) -> str:
        return f"IssuedApiKey(api_key={self.api_key.id!r}, secret='***')"


@strawberry.type
class RotatedApiKey:
    api_key: ApiKey = strawberry.field(description="The new key.")
    secret: str = strawberry.field(description="The new key's secret, shown only in this response.")
    previous_key: ApiKey = strawberry.field(description="The old key, valid until its expiresAt.")

    def __repr__(self) -> str:
        return f"RotatedApiKey(api_key={self.api_key.id!r}, secret='***')"


@strawberry.type(description="A resource of an organization.")
class Project:
    id: strawberry.ID
    organization_id: strawberry.ID
    name: str
    description: str | None
    status: ProjectStatus
    created_at: datetime
    updated_at: datetime


@strawberry.type(description="An immutable record of a change.")
class Event:
    id: strawberry.ID
    type: str = strawberry.field(description="For example project.created or project.archived.")
    data: JSON = strawberry.field(description="The changed object under the key 'object'.")
    created_at: datetime


@strawberry.type
class PageInfo:
    has_next_page: bool
    end_cursor: str | None = strawberry.field(description="Pass as 'after' to get the next page.")


@strawberry.type
class ProjectConnection:
    nodes: list[Project]
    page_info: PageInfo


@strawberry.type
class EventConnection:
    nodes: list[Event]
    page_info: PageInfo


def connection_from_page(connection_type: type, page: Any) -> Any:
    return connection_type(nodes=page.nodes, page_info=PageInfo(has_next_page=page.has_next_page, end_cursor=page.end_cursor))
