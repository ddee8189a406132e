"""Root query fields."""

from __future__ import annotations

from typing import Annotated

import strawberry

from connex import apikeys, events, organizations, projects
from connex.context import RequestContext
from connex.pagination import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE
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

# Descriptions of the arguments that every list field shares. The REST routes show them too.
ORGANIZATION_DESCRIPTION = (
    "The organization whose items are listed. "
    "Defaults to the API key's own organization. Required for a platform admin key."
)
FIRST_DESCRIPTION = f"Page size, from 1 to {MAX_PAGE_SIZE}. Defaults to {DEFAULT_PAGE_SIZE}."
AFTER_DESCRIPTION = "The end cursor of the previous page. The page starts after it."
OFFSET_DESCRIPTION = "Number of items to skip. Cannot be combined with a cursor."


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
        organization_id: Annotated[
            strawberry.ID | None, strawberry.argument(description=ORGANIZATION_DESCRIPTION)
        ] = None,
        status: Annotated[
            ProjectStatus | None,
            strawberry.argument(description="Only projects in this state. Defaults to active."),
        ] = ProjectStatus.ACTIVE,  # type: ignore[assignment]
        first: Annotated[int | None, strawberry.argument(description=FIRST_DESCRIPTION)] = None,
        after: Annotated[str | None, strawberry.argument(description=AFTER_DESCRIPTION)] = None,
        offset: Annotated[int | None, strawberry.argument(description=OFFSET_DESCRIPTION)] = None,
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
    async def project(
        self,
        info: Info,
        id: Annotated[strawberry.ID, strawberry.argument(description="The project's ID.")],
    ) -> Project:
        return await projects.get_project(info.context, id)  # type: ignore[return-value]

    @strawberry.field(description="Events, newest first.")
    async def events(
        self,
        info: Info,
        organization_id: Annotated[
            strawberry.ID | None, strawberry.argument(description=ORGANIZATION_DESCRIPTION)
        ] = None,
        type: Annotated[
            str | None,
            strawberry.argument(description="Only events of this type, for example project.created."),
        ] = None,
        first: Annotated[int | None, strawberry.argument(description=FIRST_DESCRIPTION)] = None,
        after: Annotated[str | None, strawberry.argument(description=AFTER_DESCRIPTION)] = None,
        offset: Annotated[int | None, strawberry.argument(description=OFFSET_DESCRIPTION)] = None,
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
    async def event(
        self,
        info: Info,
        id: Annotated[strawberry.ID, strawberry.argument(description="The event's ID.")],
    ) -> Event:
        return await events.get_event(info.context, id)  # type: ignore[return-value]


