"""Authentication of API keys and the caller's permissions.

Key records are cached where revocation reaches every server process at once:
in Redis when it is configured, otherwise in this process (embedded mode runs a
single process). Revoking or rotating a key deletes its cache entry, so the next
request on any process reads the new state from the database.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

import orjson
from sqlalchemy import select

from connex.db import Database
from connex.errors import FieldError, PermissionDenied, Unauthenticated, ValidationFailed
from connex.keys import hash_key, is_well_formed
from connex.models import ApiKey
from connex.scopes import Scope, grants, parse_scopes


@dataclass(frozen=True, slots=True)
class Principal:
    """The key behind a request: who is calling and what it may do."""

    key_id: str
    organization_id: str | None
    scopes: frozenset[Scope]
    expires_at: float | None
    revoked: bool
    rate_limit_per_minute: int | None

    @property
    def is_platform_admin(self) -> bool:
        return Scope.ADMIN in self.scopes

    def require(self, scope: Scope) -> None:
        if not grants(self.scopes, scope):
            raise PermissionDenied(f"The API key lacks the {scope.value!r} scope")

    def organization_for(self, requested: str | None, *, field: str = "organizationId") -> str:
        """Return the organization an operation acts on, checking the key may reach it."""
        if self.organization_id is None:
            if requested is None:
                raise ValidationFailed(
                    "A platform admin key must name the organization",
                    errors=[FieldError(field, "required for a platform admin key")],
                )
            return requested
        if requested is not None and requested != self.organization_id:
            raise PermissionDenied("The API key cannot act on another organization")
        return self.organization_id

    def check_organization(self, organization_id: str) -> None:
        if self.organization_id is not None and self.organization_id != organization_id:
            raise PermissionDenied("The resource belongs to another organization than the API key")

    def to_json(self) -> bytes:
        return orjson.dumps(
            {
                "id": self.key_id,
                "org": self.organization_id,
                "scopes": sorted(scope.value for scope in self.scopes),
                "exp": self.expires_at,
                "revoked": self.revoked,
                "rpm": self.rate_limit_per_minute,
            }
        )

    @classmethod
    def from_json(cls, raw: bytes) -> Principal:
        data = orjson.loads(raw)
        return cls(
            key_id=data["id"],
            organization_id=data["org"],
            scopes=parse_scopes(data["scopes"]),
            expires_at=data["exp"],
            revoked=data["revoked"],
            rate_limit_per_minute=data["rpm"],
        )

    @classmethod
    def from_row(cls, row: ApiKey) -> Principal:
        return cls(
            key_id=row.id,
            organization_id=row.organization_id,
            scopes=parse_scopes(row.scopes),
            expires_at=row.expires_at.timestamp() if row.expires_at else None,
            revoked=row.revoked_at is not None,
            rate_limit_per_minute=row.rate_limit_per_minute,
        )


class KeyCache(Protocol):
    """Cached key records by key hash, plus buffered last-use times."""

    async def get_and_touch(self, key_hash: str, now: float) -> bytes | None: ...

    async def put(self, key_hash: str, record: bytes, ttl: int) -> None: ...

    async def invalidate(self, key_hash: str) -> None: ...

    async def drain_last_used(self) -> dict[str, float]: ...


class MemoryKeyCache:
    def __init__(self) -> None:
        self._records: dict[str, tuple[float, bytes]] = {}
        self._last_used: dict[str, float] = {}

    async def get_and_touch(self, key_hash: str, now: float) -> bytes | None:
        entry = self._records.get(key_hash)
        if entry is None or entry[0] < time.monotonic():
            return None
        self._last_used[key_hash] = now
        return entry[1]

    async def put(self, key_hash: str, record: bytes, ttl: int) -> None:
        self._records[key_hash] = (time.monotonic() + ttl, record)

    async def invalidate(self, key_hash: str) -> None:
        self._records.pop(key_hash, None)

    async def drain_last_used(self) -> dict[str, float]:
        drained, self._last_used = self._last_used, {}
        return drained


# KEYS[1]: the cached record, KEYS[2]: the hash of buffered last-use times.
# ARGV[1]: the key hash, ARGV[2]: the time of this request.
_GET_AND_TOUCH = """
local record = redis.call('GET', KEYS[1])
if record then
  redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
end
return record
"""

# Read and clear the buffered last-use times in one step.
_DRAIN = """
local entries = redis.call('HGETALL', KEYS[1])
redis.call('DEL', KEYS[1])
return entries
"""


class RedisKeyCache:
    def __init__(self, redis: object, prefix: str = "connex:") -> None:
        self._redis = redis
        self._prefix = prefix
        self._last_used_key = prefix + "key-last-used"
        self._get_and_touch = redis.register_script(_GET_AND_TOUCH)  # type: ignore[attr-defined]
        self._drain = redis.register_script(_DRAIN)  # type: ignore[attr-defined]

    def _record_key(self, key_hash: str) -> str:
        return f"{self._prefix}key:{key_hash}"

    async def get_and_touch(self, key_hash: str, now: float) -> bytes | None:
        keys = [self._record_key(key_hash), self._last_used_key]
        return await self._get_and_touch(keys=keys, args=[key_hash, now])

    async def put(self, key_hash: str, record: bytes, ttl: int) -> None:
        await self._redis.set(self._record_key(key_hash), record, ex=ttl)  # type: ignore[attr-defined]

    async def invalidate(self, key_hash: str) -> None:
        await self._redis.delete(self._record_key(key_hash))  # type: ignore[attr-defined]

    async def drain_last_used(self) -> dict[str, float]:
        flat = await self._drain(keys=[self._last_used_key])
        pairs = zip(flat[::2], flat[1::2], strict=True)
        return {_text(field): float(value) for field, value in pairs}


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def parse_authorization(header: str | None) -> str:
    """Return the key from an ``Authorization: Bearer`` header."""
    if not header:
        raise Unauthenticated("Missing API key: send it as 'Authorization: Bearer <key>'")
    scheme, _, credentials = header.partition(" ")
    if scheme.lower() != "bearer" or not credentials.strip():
        raise Unauthenticated("Malformed Authorization header: expected 'Bearer <key>'")
    return credentials.strip()


class Authenticator:
    def __init__(self, db: Database, cache: KeyCache, secret_key: bytes, cache_seconds: int) -> None:
        self._db = db
        self._cache = cache
        self._secret_key = secret_key
        self._cache_seconds = cache_seconds

    def hash(self, key: str) -> str:
        return hash_key(self._secret_key, key)

    async def authenticate(self, key: str) -> Principal:
        if not is_well_formed(key):
            raise Unauthenticated("Invalid API key")
        key_hash = self.hash(key)
        now = time.time()
        cached = await self._cache.get_and_touch(key_hash, now)
        if cached is not None:
            principal = Principal.from_json(cached)
        else:
            principal = await self._load(key_hash)
            await self._cache.put(key_hash, principal.to_json(), self._cache_seconds)
            await self._cache.get_and_touch(key_hash, now)
        return _check_usable(principal, now)

    async def _load(self, key_hash: str) -> Principal:
        async with self._db.sessions() as session:
            row = (await session.execute(select(ApiKey).where(ApiKey.key_hash == key_hash))).scalar_one_or_none()
        if row is None:
            raise Unauthenticated("Invalid API key")
        return Principal.from_row(row)

    async def invalidate(self, key_hash: str) -> None:
        await self._cache.invalidate(key_hash)


def _check_usable(principal: Principal, now: float) -> Principal:
    if principal.revoked:
        raise Unauthenticated("The API key has been revoked")
    if principal.expires_at is not None and principal.expires_at <= now:
        raise Unauthenticated("The API key has expired")
    return principal


async def flush_last_used(db: Database, cache: KeyCache) -> int:
    """Write buffered last-use times to the database; return how many keys changed."""
    times = await cache.drain_last_used()
    if not times:
        return 0
    updated = 0
    async with db.transaction() as session:
        for key_hash, timestamp in times.items():
            used_at = datetime.fromtimestamp(timestamp, UTC)
            statement = (
                ApiKey.__table__.update()
                .where(ApiKey.key_hash == key_hash)
                .where((ApiKey.last_used_at.is_(None)) | (ApiKey.last_used_at < used_at))
                .values(last_used_at=used_at)
            )
            result = await session.execute(statement)
            updated += result.rowcount
    return updated
