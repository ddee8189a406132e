"""Issuing, listing, revoking and rotating API keys."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from connex.context import RequestContext
from connex.db import Database, utcnow
from connex.errors import FieldError, NotFound, PermissionDenied, ValidationFailed
from connex.ids import new_id
from connex.keys import SecretKey, generate_key, hash_key
from connex.models import ApiKey, Organization
from connex.scopes import Scope, grants, parse_scopes
from connex.validation import check_text

MAX_GRACE = timedelta(days=30)
DEFAULT_GRACE = timedelta(hours=24)
MAX_RATE_LIMIT = 1_000_000


def key_status(key: ApiKey, now: datetime | None = None) -> str:
    now = now or utcnow()
    if key.revoked_at is not None:
        return "revoked"
    if key.expires_at is not None and key.expires_at <= now:
        return "expired"
    return "active"


async def issue_key(
    session: AsyncSession,
    secret_key: bytes,
    *,
    name: str,
    organization_id: str | None,
    scopes: frozenset[Scope],
    expires_at: datetime | None = None,
    rate_limit_per_minute: int | None = None,
    rotated_from_id: str | None = None,
) -> tuple[ApiKey, SecretKey]:
    """Create a key row and return it with the key, which exists nowhere else."""
    secret = SecretKey(generate_key())
    row = ApiKey(
        id=new_id("key"),
        organization_id=organization_id,
        name=name,
        key_hash=hash_key(secret_key, secret),
        last4=secret[-4:],
        scopes=sorted(scope.value for scope in scopes),
        expires_at=expires_at,
        rate_limit_per_minute=rate_limit_per_minute,
        rotated_from_id=rotated_from_id,
    )
    session.add(row)
    await session.flush()
    return row, secret


def _check_new_key(
    ctx: RequestContext,
    *,
    name: str,
    organization_id: str | None,
    scopes: frozenset[Scope],
    expires_at: datetime | None,
    rate_limit_per_minute: int | None,
) -> None:
    errors: list[FieldError] = []
    check_text(errors, "input.name", name, max_length=200, required=True)
    if not scopes:
        errors.append(FieldError("input.scopes", "must name at least one scope"))
    if expires_at is not None and expires_at <= utcnow():
        errors.append(FieldError("input.expiresAt", "must be in the future"))
    check_rate_limit(errors, rate_limit_per_minute)
    if Scope.ADMIN in scopes and organization_id is not None:
        errors.append(FieldError("input.scopes", "the admin scope is only for keys without an organization"))
    if organization_id is None and Scope.ADMIN not in scopes:
        errors.append(FieldError("input.organizationId", "required unless the key is a platform admin key"))
    if errors:
        raise ValidationFailed("Invalid API key request", errors=errors)
    require_rate_limit_permission(ctx, rate_limit_per_minute)

    missing = [scope.value for scope in scopes if not grants(ctx.principal.scopes, scope)]
    if missing:
        raise PermissionDenied(f"A key cannot grant scopes its creator lacks: {', '.join(sorted(missing))}")


def check_rate_limit(errors: list[FieldError], rate_limit_per_minute: int | None) -> None:
    if rate_limit_per_minute is not None and not 1 <= rate_limit_per_minute <= MAX_RATE_LIMIT:
        errors.append(FieldError("input.rateLimitPerMinute", f"must be between 1 and {MAX_RATE_LIMIT}"))


def require_rate_limit_permission(ctx: RequestContext, rate_limit_per_minute: int | None) -> None:
    """Raise PermissionDenied when a key other than a platform admin key sets a limit above the default.

    A partner key with keys:write may lower its keys' limits but not raise them past
    the server default, which would buy it more capacity.
    """
    default = ctx.services.settings.rate_limit_per_minute
    if rate_limit_per_minute is not None and rate_limit_per_minute > default and not ctx.principal.is_platform_admin:
        raise PermissionDenied(f"Only a platform admin key can set a rate limit above the default of {default} per minute")


async def set_api_key_rate_limit(ctx: RequestContext, key_id: str, rate_limit_per_minute: int | None) -> ApiKey:
    """Set a key's own limit, or None for the server default; it applies from the next request."""
    errors: list[FieldError] = []
    check_rate_limit(errors, rate_limit_per_minute)
    if errors:
        raise ValidationFailed("Invalid rate limit", errors=errors)
    require_rate_limit_permission(ctx, rate_limit_per_minute)
    async with ctx.db.transaction() as session:
        key = await _load_manageable(ctx, session, key_id)
        key.rate_limit_per_minute = rate_limit_per_minute
    await ctx.services.authenticator.invalidate(key.key_hash)
    return key


def _parse_requested_scopes(values: list[str]) -> frozenset[Scope]:
    try:
        return parse_scopes(values)
    except ValueError as error:
        raise ValidationFailed("Invalid scopes", errors=[FieldError("input.scopes", str(error))]) from None


async def create_api_key(
    ctx: RequestContext,
    *,
    name: str,
    organization_id: str | None,
    scopes: list[str],
    expires_at: datetime | None,
    rate_limit_per_minute: int | None,
) -> tuple[ApiKey, SecretKey]:
    ctx.principal.require(Scope.KEYS_WRITE)
    requested = _parse_requested_scopes(scopes)
    if organization_id is None and not ctx.principal.is_platform_admin:
        organization_id = ctx.principal.organization_id
    if organization_id is not None:
        ctx.principal.check_organization(organization_id)
    _check_new_key(
        ctx,
        name=name,
        organization_id=organization_id,
        scopes=requested,
        expires_at=expires_at,
        rate_limit_per_minute=rate_limit_per_minute,
    )
    async with ctx.db.transaction() as session:
        if organization_id is not None and await session.get(Organization, organization_id) is None:
            raise NotFound(f"No organization with id {organization_id!r}")
        return await issue_key(
            session,
            ctx.services.settings.secret_key_bytes(),
            name=name.strip(),
            organization_id=organization_id,
            scopes=requested,
            expires_at=expires_at,
            rate_limit_per_minute=rate_limit_per_minute,
        )


async def list_api_keys(ctx: RequestContext, organization_id: str | None) -> list[ApiKey]:
    ctx.principal.require(Scope.KEYS_WRITE)
    query = select(ApiKey).order_by(ApiKey.created_at, ApiKey.id)
    if ctx.principal.is_platform_admin:
        if organization_id is not None:
            query = query.where(ApiKey.organization_id == organization_id)
    else:
        query = query.where(ApiKey.organization_id == ctx.principal.organization_for(organization_id))
    async with ctx.db.sessions() as session:
        return list((await session.execute(query)).scalars())


async def _load_manageable(ctx: RequestContext, session: AsyncSession, key_id: str) -> ApiKey:
    ctx.principal.require(Scope.KEYS_WRITE)
    key = await session.get(ApiKey, key_id, with_for_update=True)
    if key is None:
        raise NotFound(f"No API key with id {key_id!r}")
    if key.organization_id is None:
        ctx.principal.require(Scope.ADMIN)
    else:
        ctx.principal.check_organization(key.organization_id)
    return key


async def revoke_api_key(ctx: RequestContext, key_id: str) -> ApiKey:
    async with ctx.db.transaction() as session:
        key = await _load_manageable(ctx, session, key_id)
        if key.revoked_at is None:
            key.revoked_at = utcnow()
    await ctx.services.authenticator.invalidate(key.key_hash)
    return key


async def rotate_api_key(
    ctx: RequestContext, key_id: str, grace_period_seconds: int | None
) -> tuple[ApiKey, SecretKey, ApiKey]:
    """Issue a successor key; the old one stays valid for the grace period."""
    grace = DEFAULT_GRACE if grace_period_seconds is None else timedelta(seconds=grace_period_seconds)
    if not timedelta(0) <= grace <= MAX_GRACE:
        raise ValidationFailed(
            "Invalid grace period",
            errors=[FieldError("input.gracePeriodSeconds", f"must be between 0 and {int(MAX_GRACE.total_seconds())}")],
        )
    async with ctx.db.transaction() as session:
        old = await _load_manageable(ctx, session, key_id)
        if key_status(old) != "active":
            raise ValidationFailed(
                "Only an active key can be rotated", errors=[FieldError("input.id", f"the key is {key_status(old)}")]
            )
        now = utcnow()
        old_expiry = now + grace
        new, secret = await issue_key(
            session,
            ctx.services.settings.secret_key_bytes(),
            name=old.name,
            organization_id=old.organization_id,
            scopes=parse_scopes(old.scopes),
            expires_at=old.expires_at,
            rate_limit_per_minute=old.rate_limit_per_minute,
            rotated_from_id=old.id,
        )
        if old.expires_at is None or old.expires_at > old_expiry:
            old.expires_at = old_expiry
    await ctx.services.authenticator.invalidate(old.key_hash)
    return new, secret, old


async def create_key_offline(
    db: Database,
    secret_key: bytes,
    *,
    name: str,
    organization_slug: str | None,
    scopes: list[str],
) -> SecretKey:
    """Issue a key from the command line, where the operator is trusted."""
    requested = parse_scopes(scopes)
    async with db.transaction() as session:
        organization_id = None
        if organization_slug is not None:
            query = select(Organization.id).where(Organization.slug == organization_slug)
            organization_id = (await session.execute(query)).scalar_one_or_none()
            if organization_id is None:
                raise LookupError(f"no organization with slug {organization_slug!r}")
        if Scope.ADMIN in requested and organization_id is not None:
            raise ValueError("the admin scope is only for keys without --org")
        if organization_id is None and Scope.ADMIN not in requested:
            raise ValueError("a key without --org must have the admin scope")
        _, secret = await issue_key(
            session, secret_key, name=name, organization_id=organization_id, scopes=requested
        )
    return secret


