"""Authentication of API keys and the caller's permissions.

Key records are cached where revocation reaches every server process at once:
in Redis when it is configured, otherwise in this process (embedded mode runs a
single process). Revoking or rotating a key deletes its cache entry, so the next
request on any process reads the new state from the database. While Redis is
unreachable, records are cached in each process for a few seconds instead
(``outage_key_cache_seconds``); see connex.admission.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Protocol

import orjson
from sqlalchemy import select

from connex.db import Database
from connex.errors import FieldError, PermissionDenied, Unauthenticated, ValidationFailed
from connex.keys import hash_key
from connex.models import ApiKey
from connex.ratelimit import REDIS_UNAVAILABLE_ERRORS
from connex.scopes import Scope, grants, parse_scopes

logger = logging.getLogger("connex.auth")


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


@lru_cache(maxsize=4096)
def principal_from_record(record: bytes) -> Principal:
    """Decode a cached key record. Records repeat on every request, so decoded ones are kept."""
    return Principal.from_json(record)


class KeyCache(Protocol):
    """Cached key records by key hash, plus buffered last-use times."""

    async def invalidate(self, key_hash: str) -> None: ...

    async def drain_last_used(self) -> dict[str, float]: ...


class MemoryKeyCache:
    """Key records cached in this process, each for the ``ttl`` given to ``put``.

    Like RedisKeyCache, it counts invalidations per key (the epoch), so a record read
    from the database before a revocation is not stored after the revocation.
    """

    def __init__(self) -> None:
        self._records: dict[str, tuple[float, bytes]] = {}
        self._epochs: dict[str, int] = {}
        self._last_used: dict[str, float] = {}

    def get(self, key_hash: str) -> bytes | None:
        entry = self._records.get(key_hash)
        if entry is None or entry[0] < time.monotonic():
            return None
        return entry[1]

    def epoch(self, key_hash: str) -> int:
        return self._epochs.get(key_hash, 0)

    def touch(self, key_hash: str, now: float) -> None:
        self._last_used[key_hash] = now

    async def put(self, key_hash: str, record: bytes, ttl: float, epoch: int | None = None) -> None:
        """Store ``record`` unless the key was invalidated after ``epoch`` was read."""
        if epoch is not None and self.epoch(key_hash) != epoch:
            return
        self._records[key_hash] = (time.monotonic() + ttl, record)

    async def invalidate(self, key_hash: str) -> None:
        self._records.pop(key_hash, None)
        self._epochs[key_hash] = self.epoch(key_hash) + 1

    async def drain_last_used(self) -> dict[str, float]:
        drained, self._last_used = self._last_used, {}
        return drained


# Read and clear the buffered last-use times in one step.
_DRAIN = """
local entries = redis.call('HGETALL', KEYS[1])
redis.call('DEL', KEYS[1])
return entries
"""

# An epoch outlives any database read that could race with the invalidation it counts.
EPOCH_TTL_SECONDS = 86_400


class RedisKeyCache:
    """Key records in Redis, shared by every server process.

    ``connex.admission`` reads and writes the records inside its admission script. A
    record is stored only if its key's epoch, which every invalidation increments, is
    unchanged since the cache miss that led to the database read. So a record read
    before a revocation committed can never be cached after the revocation's delete.

    An invalidation that fails because Redis is unreachable is kept and retried by
    ``retry_invalidations``. Until it succeeds, a record cached before the failure can
    outlive the revocation by up to its TTL, unless Redis lost its data.
    """

    def __init__(self, redis: object, prefix: str = "connex:") -> None:
        self._redis = redis
        self._prefix = prefix
        self.last_used_key = prefix + "key-last-used"
        self._drain = redis.register_script(_DRAIN)  # type: ignore[attr-defined]
        self._pending_invalidations: set[str] = set()

    def record_key(self, key_hash: str) -> str:
        return f"{self._prefix}key:{key_hash}"

    def epoch_key(self, key_hash: str) -> str:
        return f"{self._prefix}key-epoch:{key_hash}"

    async def invalidate(self, key_hash: str) -> None:
        try:
            await self._invalidate(key_hash)
        except REDIS_UNAVAILABLE_ERRORS as error:
            self._pending_invalidations.add(key_hash)
            logger.warning("key cache invalidation failed; retrying when Redis is reachable again: %r", error)

    async def _invalidate(self, key_hash: str) -> None:
        async with self._redis.pipeline(transaction=True) as pipeline:  # type: ignore[attr-defined]
            pipeline.delete(self.record_key(key_hash))
            pipeline.incr(self.epoch_key(key_hash))
            pipeline.expire(self.epoch_key(key_hash), EPOCH_TTL_SECONDS)
            await pipeline.execute()

    async def retry_invalidations(self) -> int:
        """Retry the invalidations that failed; return how many are still pending."""
        for key_hash in list(self._pending_invalidations):
            await self._invalidate(key_hash)
            self._pending_invalidations.discard(key_hash)
        return len(self._pending_invalidations)

    async def drain_last_used(self) -> dict[str, float]:
        flat = await self._drain(keys=[self.last_used_key])
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
    """Hashing of keys, loading of key records from the database, and cache invalidation.

    ``connex.admission.KeyAdmission`` authenticates requests with it.
    """

    def __init__(self, db: Database, caches: list[KeyCache], secret_key: bytes) -> None:
        self._db = db
        self.caches = caches
        self._secret_key = secret_key

    def hash(self, key: str) -> str:
        return hash_key(self._secret_key, key)

    async def load(self, key_hash: str) -> Principal:
        """Read the key record from the database; raise Unauthenticated for an unknown key."""
        async with self._db.sessions() as session:
            row = (await session.execute(select(ApiKey).where(ApiKey.key_hash == key_hash))).scalar_one_or_none()
        if row is None:
            raise Unauthenticated("Invalid API key")
        return Principal.from_row(row)

    async def invalidate(self, key_hash: str) -> None:
        """Drop the key's cached record everywhere, so the next request reads the database."""
        for cache in self.caches:
            await cache.invalidate(key_hash)


def unusable_error(principal: Principal, now: float) -> Unauthenticated | None:
    """Return the error for a revoked or expired key, or None for a usable one."""
    if principal.revoked:
        return Unauthenticated("The API key has been revoked")
    if principal.expires_at is not None and principal.expires_at <= now:
        return Unauthenticated("The API key has expired")
    return None


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
