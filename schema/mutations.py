"""Root mutation fields. Each takes a single ``input`` argument."""

from __future__ import annotations

from datetime import datetime

import strawberry

from connex import apikeys, organizations, projects
from connex.context import RequestContext
from schema.types import ApiKey, IssuedApiKey, Organization, Project, ProjectStatus, RotatedApiKey

Info = strawberry.Info[RequestContext, None]


@strawberry.input
class CreateOrganizationInput:
    slug: str = strawberry.field(description="Lowercase letters, digits and hyphens; unique.")
    name: str


@strawberry.input
class CreateApiKeyInput:
    name: str
    organization_id: strawberry.ID | None = strawberry.field(
        default=None, description="Omit for a platform admin key, which must have the admin scope."
    )
    scopes: list[str] = strawberry.field(description="For example projects:read, projects:write.")
    expires_at: datetime | None = None
    rate_limit_per_minute: int | None = strawberry.field(
        default=None, description="Overrides the server's default limit for this key."
    )


@strawberry.input
class ApiKeyIdInput:
    id: strawberry.ID


@strawberry.input
class RotateApiKeyInput:
    id: strawberry.ID
    grace_period_seconds: int | None = strawberry.field(
        default=None, description="How long the old key keeps working: 0 to 2592000 seconds, 86400 when omitted."
    )


@strawberry.input
class CreateProjectInput:
    name: str
    description: str | None = None
    organization_id: strawberry.ID | None = strawberry.field(
        default=None, description="Needed only with a platform admin key."
    )


@strawberry.input(description="Fields left out stay unchanged; description: null clears the description.")
class UpdateProjectInput:
    id: strawberry.ID
    name: str | None = strawberry.UNSET
    description: str | None = strawberry.UNSET
    status: ProjectStatus | None = strawberry.UNSET  # type: ignore[assignment]


@strawberry.input
class ProjectIdInput:
    id: strawberry.ID


@strawberry.type
class Mutation:
    @strawberry.mutation
    async def create_organization(self, info: Info, input: CreateOrganizationInput) -> Organization:
        return await organizations.create_organization(info.context, slug=input.slug, name=input.name)  # type: ignore[return-value]

    @strawberry.mutation(description="Issue a key. The response contains the secret, which is never shown again.")
    async def create_api_key(self, info: Info, input: CreateApiKeyInput) -> IssuedApiKey:
        row, secret = await apikeys.create_api_key(
            info.context,
            name=input.name,
            organization_id=input.organization_id,
            scopes=input.scopes,
            expires_at=input.expires_at,
            rate_limit_per_minute=input.rate_limit_per_minute,
        )
        return IssuedApiKey(api_key=row, secret=secret)  # type: ignore[arg-type]

    @strawberry.mutation(description="Revoke a key; it stops working on the next request.")
    async def revoke_api_key(self, info: Info, input: ApiKeyIdInput) -> ApiKey:
        return await apikeys.revoke_api_key(info.context, input.id)  # type: ignore[return-value]

    @strawberry.mutation(description="Issue a successor key; the old one keeps working for the grace period.")
    async def rotate_api_key(self, info: Info, input: RotateApiKeyInput) -> RotatedApiKey:
        new, secret, old = await apikeys.rotate_api_key(info.context, input.id, input.grace_period_seconds)
        return RotatedApiKey(api_key=new, secret=secret, previous_key=old)  # type: ignore[arg-type]

    @strawberry.mutation
    async def create_project(self, info: Info, input: CreateProjectInput) -> Project:
        return await projects.create_project(  # type: ignore[return-value]
            info.context, name=input.name, description=input.description, organization_id=input.organization_id
        )

    @strawberry.mutation
    async def update_project(self, info: Info, input: UpdateProjectInput) -> Project:
        changes = {
            name: getattr(input, name)
            for name in ("name", "description", "status")
            if getattr(input, name) is not strawberry.UNSET
        }
        return await projects.update_project(info.context, input.id, changes)  # type: ignore[return-value]

    @strawberry.mutation(description="Archive a project. Archiving twice is not an error.")
    async def archive_project(self, info: Info, input: ProjectIdInput) -> Project:
        return await projects.archive_project(info.context, input.id)  # type: ignore[return-value]
