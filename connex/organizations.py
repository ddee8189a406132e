"""Organizations: the tenants, and the data boundary of every partner key."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from connex.context import RequestContext
from connex.errors import Conflict, FieldError, NotFound, ValidationFailed
from connex.ids import new_id
from connex.models import Organization
from connex.scopes import Scope
from connex.validation import SLUG_PATTERN, check_text


async def create_organization(ctx: RequestContext, *, slug: str, name: str) -> Organization:
    ctx.principal.require(Scope.ADMIN)
    errors: list[FieldError] = []
    if not SLUG_PATTERN.match(slug):
        errors.append(
            FieldError("input.slug", "must be 1-63 lowercase letters, digits or hyphens, not starting or ending with a hyphen")
        )
    check_text(errors, "input.name", name, max_length=200, required=True)
    if errors:
        raise ValidationFailed("Invalid organization", errors=errors)

    organization = Organization(id=new_id("org"), slug=slug, name=name.strip())
    try:
        async with ctx.db.transaction() as session:
            session.add(organization)
    except IntegrityError:
        raise Conflict(f"An organization with slug {slug!r} already exists") from None
    return organization


async def list_organizations(ctx: RequestContext) -> list[Organization]:
    query = select(Organization).order_by(Organization.created_at, Organization.id)
    if not ctx.principal.is_platform_admin:
        query = query.where(Organization.id == ctx.principal.organization_id)
    async with ctx.db.sessions() as session:
        return list((await session.execute(query)).scalars())


async def get_organization_by_slug(ctx: RequestContext, slug: str) -> Organization:
    async with ctx.db.sessions() as session:
        organization = (
            await session.execute(select(Organization).where(Organization.slug == slug))
        ).scalar_one_or_none()
    if organization is None:
        raise NotFound(f"No organization with slug {slug!r}")
    return organization
