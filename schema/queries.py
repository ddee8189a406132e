"""Root query fields."""

from __future__ import annotations


import strawberry

from connex import apikeys, events, organizations, projects
from connex.context import RequestContext
from schema.types import (
    ApiKey,
    Event,
    EventConnection,
    Organization,
    Project,
    ProjectConnection,
    ProjectStatus,
    connection_from_page,
)

Info = strawberry.Info[RequestContext, None]


@strawberry.type
class Query:
    @strawberry.field(description="Every organization for an admin key; the key's own for others.")
    async def organizations(self, info: Info) -> list[Organization]:
        return await organizations.list_organizations(info.context)  # type: ignore[return-value]

    @strawberry.field(description="API keys of an organization, or every key for an admin key without organizationId.")
    async def api_keys(self, info: Info, organization_id: strawberry.ID | None = None) -> list[ApiKey]:
        return await apikeys.list_api_keys(info.context, organization_id)  # type: ignore[return-value]

    @strawberry.field(description="Projects, newest update first. Page with first+after (cursor) or first+offset.")
    async def projects(
        self,
        info: Info,
        organization_id: strawberry.ID | None = None,
        status: ProjectStatus | None = ProjectStatus.ACTIVE,  # type: ignore[assignment]
        first: int | None = None,
        after: str | None = None,
        offset: int | None = None,
    ) -> ProjectConnection:
        page = await projects.list_projects(
            info.context,
            organization_id=organization_id,
            status=status,
            first=first,
            after=after,
            offset=offset,
        )
        return connection_from_page(ProjectConnection, page)

    @strawberry.field
    async def project(self, info: Info, id: strawberry.ID) -> Project:
        return await projects.get_project(info.context, id)  # type: ignore[return-value]

    @strawberry.field(description="Events, newest first.")
    async def events(
        self,
        info: Info,
        organization_id: strawberry.ID | None = None,
        type: str | None = None,
        first: int | None = None,
        after: str | None = None,
        offset: int | None = None,
    ) -> EventConnection:
        page = await events.list_events(
            info.context,
            organization_id=organization_id,
            event_type=type,
            first=first,
            after=after,
            offset=offset,
        )
        return connection_from_page(EventConnection, page)

    @strawberry.field
    async def event(self, info: Info, id: strawberry.ID) -> Event:
        return await events.get_event(info.context, id)  # type: ignore[return-value]


