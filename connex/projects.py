"""Projects: an organization's resources. Every change writes its event in the same transaction."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from connex.context import RequestContext
from connex.db import rfc3339, utcnow
from connex.errors import FieldError, NotFound, ValidationFailed
from connex.events import record_event
from connex.ids import new_id
from connex.models import Organization, Project, ProjectStatus
from connex.pagination import Page, fetch_page, page_request
from connex.scopes import Scope
from connex.validation import check_text

_table = Project.__table__


def snapshot(project: Project) -> dict[str, Any]:
    """Return the project as it appears in event data."""
    return {
        "id": project.id,
        "organization_id": project.organization_id,
        "name": project.name,
        "description": project.description,
        "status": project.status.value,
        "created_at": rfc3339(project.created_at),
        "updated_at": rfc3339(project.updated_at),
    }


async def list_projects(
    ctx: RequestContext,
    *,
    organization_id: str | None,
    status: ProjectStatus | None,
    first: int | None,
    after: str | None,
    offset: int | None,
) -> Page[Any]:
    """List projects newest update first; rows come from a Core select, not ORM objects."""
    ctx.principal.require(Scope.PROJECTS_READ)
    organization = ctx.principal.organization_for(organization_id)
    request = page_request(first, after, offset)

    query = select(_table).where(_table.c.organization_id == organization)
    if status is not None:
        query = query.where(_table.c.status == status)
    return await fetch_page(ctx.db, query, _table.c.updated_at, _table.c.id, request)


async def get_project(ctx: RequestContext, project_id: str) -> Project:
    ctx.principal.require(Scope.PROJECTS_READ)
    async with ctx.db.sessions() as session:
        return await _load(ctx, session, project_id)


async def _load(ctx: RequestContext, session: AsyncSession, project_id: str, *, lock: bool = False) -> Project:
    project = await session.get(Project, project_id, with_for_update=lock)
    if project is None:
        raise NotFound(f"No project with id {project_id!r}")
    ctx.principal.check_organization(project.organization_id)
    return project


async def create_project(
    ctx: RequestContext, *, name: str, description: str | None, organization_id: str | None
) -> Project:
    ctx.principal.require(Scope.PROJECTS_WRITE)
    organization = ctx.principal.organization_for(organization_id, field="input.organizationId")
    errors: list[FieldError] = []
    check_text(errors, "input.name", name, max_length=200, required=True)
    check_text(errors, "input.description", description, max_length=2000, required=False)
    if errors:
        raise ValidationFailed("Invalid project", errors=errors)

    now = utcnow()
    project = Project(
        id=new_id("proj"),
        organization_id=organization,
        name=name.strip(),
        description=description,
        status=ProjectStatus.ACTIVE,
        created_at=now,
        updated_at=now,
    )
    async with ctx.db.transaction() as session:
        if await session.get(Organization, organization) is None:
            raise NotFound(f"No organization with id {organization!r}")
        session.add(project)
        await session.flush()
        await record_event(session, organization, "project.created", {"object": snapshot(project)})
    return project


async def update_project(
    ctx: RequestContext, project_id: str, changes: dict[str, Any]
) -> Project:
    """Apply the given fields; a field absent from ``changes`` stays as it is.

    ``description`` may be set to None to clear it; ``name`` and ``status`` may not.
    An update that changes no value leaves ``updated_at`` alone and records no event.
    """
    ctx.principal.require(Scope.PROJECTS_WRITE)
    errors: list[FieldError] = []
    if "name" in changes:
        check_text(errors, "input.name", changes["name"], max_length=200, required=True)
    if "description" in changes:
        check_text(errors, "input.description", changes["description"], max_length=2000, required=False)
    if "status" in changes and changes["status"] is None:
        errors.append(FieldError("input.status", "must not be null"))
    if errors:
        raise ValidationFailed("Invalid project update", errors=errors)

    async with ctx.db.transaction() as session:
        project = await _load(ctx, session, project_id, lock=True)
        was_archived = project.status is ProjectStatus.ARCHIVED
        changed = False
        for name, value in changes.items():
            value = value.strip() if name == "name" else value
            if getattr(project, name) != value:
                setattr(project, name, value)
                changed = True
        if not changed:
            # Nothing differs, so the project keeps its place in lists and no event is recorded.
            return project
        project.updated_at = utcnow()
        await session.flush()
        archived_now = project.status is ProjectStatus.ARCHIVED and not was_archived
        event_type = "project.archived" if archived_now else "project.updated"
        await record_event(session, project.organization_id, event_type, {"object": snapshot(project)})
    return project


async def archive_project(ctx: RequestContext, project_id: str) -> Project:
    """Archive a project; archiving an archived project changes nothing and records no event."""
    ctx.principal.require(Scope.PROJECTS_WRITE)
    async with ctx.db.transaction() as session:
        project = await _load(ctx, session, project_id, lock=True)
        if project.status is ProjectStatus.ARCHIVED:
            return project
        project.status = ProjectStatus.ARCHIVED
        project.updated_at = utcnow()
        await session.flush()
        await record_event(session, project.organization_id, "project.archived", {"object": snapshot(project)})
    return project
