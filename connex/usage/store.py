"""Storage of usage counts: the Redis buffer, the database tables and the rollup between them.

Redis layout, all under one prefix:

- ``usage:pending``: a hash that every process adds its counts to with HINCRBY.
  Field: ``<minute>|<api key id>|<organization id or empty>|<metric>``, where the
  metric is ``n`` (requests), ``2``, ``4``, ``5`` (status classes), ``r``
  (rate-limited) or ``h<bucket>`` (latency histogram). Value: the count.
- ``usage:batch`` and ``usage:batch-id``: the pending hash renamed by a rollup, and
  the id under which its counts are written to the database.
- ``usage:rollup-lock``: held by the one process that rolls up at a time.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any

import redis.asyncio
from sqlalchemy import Table, delete, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from connex.db import Database, utcnow
from connex.ids import new_id
from connex.models import ApiKey, UsageCount, UsageLatency, UsageRollup
from connex.usage.meter import UsageBatch, UsageCounts, UsageKey

logger = logging.getLogger("connex.usage")

_COUNTERS = {"n": "requests", "2": "status_2xx", "4": "status_4xx", "5": "status_5xx", "r": "rate_limited"}
_ROWS_PER_STATEMENT = 500
# Rollup ids are kept this long. A batch left in Redis by a crashed rollup is retried
# within seconds, so a day is far more than any retry needs.
ROLLUP_ID_RETENTION = timedelta(days=1)
# A rollup that takes longer than this loses the lock to the next one. The rollup id
# still keeps the batch from being added twice.
LOCK_SECONDS = 60

# Move the pending counters aside as the current batch, unless a batch that an earlier
# rollup failed to finish is still there. Returns the batch id, or false for no counters.
_CLAIM_BATCH = """
if redis.call('EXISTS', KEYS[2]) == 1 then
  local batch_id = redis.call('GET', KEYS[3])
  if not batch_id then
    batch_id = ARGV[1]
    redis.call('SET', KEYS[3], batch_id)
  end
  return batch_id
end
if redis.call('EXISTS', KEYS[1]) == 0 then
  return false
end
redis.call('RENAME', KEYS[1], KEYS[2])
redis.call('SET', KEYS[3], ARGV[1])
return ARGV[1]
"""

# Delete the lock only if this process still holds it.
_RELEASE_LOCK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


def batch_to_fields(batch: UsageBatch) -> dict[str, int]:
    """Flatten counts into the hash fields of ``usage:pending``."""
    fields: dict[str, int] = {}
    for key, counts in batch.items():
        prefix = f"{key.minute}|{key.api_key_id}|{key.organization_id or ''}|"
        for metric, attribute in _COUNTERS.items():
            value = getattr(counts, attribute)
            if value:
                fields[prefix + metric] = value
        for index, count in counts.latency.items():
            fields[f"{prefix}h{index}"] = count
    return fields


def fields_to_batch(fields: Mapping[bytes | str, bytes | str | int]) -> UsageBatch:
    """Rebuild counts from hash fields written by ``batch_to_fields``."""
    batch: UsageBatch = {}
    for raw_field, raw_value in fields.items():
        field = raw_field.decode() if isinstance(raw_field, bytes) else raw_field
        minute, api_key_id, organization_id, metric = field.split("|")
        key = UsageKey(int(minute), api_key_id, organization_id or None)
        counts = batch.get(key)
        if counts is None:
            counts = batch[key] = UsageCounts()
        value = int(raw_value)
        if metric.startswith("h"):
            index = int(metric[1:])
            counts.latency[index] = counts.latency.get(index, 0) + value
        else:
            attribute = _COUNTERS[metric]
            setattr(counts, attribute, getattr(counts, attribute) + value)
    return batch


class RedisUsageBuffer:
    """The counters in Redis between the flushes of every process and the next rollup."""

    def __init__(self, client: redis.asyncio.Redis, prefix: str = "connex:") -> None:
        self._client = client
        self.pending_key = prefix + "usage:pending"
        self.batch_key = prefix + "usage:batch"
        self.batch_id_key = prefix + "usage:batch-id"
        self.lock_key = prefix + "usage:rollup-lock"
        self._claim_batch = client.register_script(_CLAIM_BATCH)
        self._release_lock = client.register_script(_RELEASE_LOCK)

    async def add(self, batch: UsageBatch) -> None:
        """Add counts to the pending hash in one MULTI/EXEC transaction: all or nothing.

        NOTE: if the reply to EXEC is lost, the caller cannot tell whether the counts
        were added. UsageFlusher then stores them again, so they can count twice.
        """
        fields = batch_to_fields(batch)
        if not fields:
            return
        async with self._client.pipeline(transaction=True) as pipeline:
            for field, value in fields.items():
                pipeline.hincrby(self.pending_key, field, value)
            await pipeline.execute()

    async def roll_up(self, db: Database) -> int | None:
        """Move the pending counters into the database; return the rows' key count.

        Returns None when another process holds the rollup lock. A batch whose database
        write fails stays in Redis under its id and is retried by the next rollup.
        """
        token = uuid.uuid4().hex
        if not await self._client.set(self.lock_key, token, nx=True, ex=LOCK_SECONDS):
            return None
        try:
            keys = [self.pending_key, self.batch_key, self.batch_id_key]
            batch_id = await self._claim_batch(keys=keys, args=[new_id("usage")])
            if batch_id is None:
                return 0
            fields = await self._client.hgetall(self.batch_key)
            batch = fields_to_batch(fields)
            await write_usage(db, batch, rollup_id=batch_id.decode() if isinstance(batch_id, bytes) else batch_id)
            await self._client.delete(self.batch_key, self.batch_id_key)
            return len(batch)
        finally:
            await self._release_lock(keys=[self.lock_key], args=[token])


async def write_usage(db: Database, batch: UsageBatch, rollup_id: str | None = None) -> int:
    """Add counts to the usage tables; return how many (minute, key) rows they touched.

    With ``rollup_id``, the id is recorded in the same transaction and a batch whose id
    is already recorded is skipped, so retrying a rollup never adds its counts twice.
    Counts of keys that no longer exist are dropped.
    """
    if not batch:
        return 0
    async with db.transaction() as session:
        if rollup_id is not None:
            if await session.get(UsageRollup, rollup_id) is not None:
                logger.info("usage batch already rolled up", extra={"rollup_id": rollup_id})
                return 0
            session.add(UsageRollup(id=rollup_id))
            await session.flush()
            cutoff = utcnow() - ROLLUP_ID_RETENTION
            await session.execute(delete(UsageRollup).where(UsageRollup.applied_at < cutoff))

        batch = await _drop_unknown_keys(session, batch)
        count_rows, latency_rows = _rows(batch)
        dialect = db.engine.dialect.name
        await _add_rows(session, dialect, UsageCount.__table__, count_rows, ["api_key_id", "minute"])
        await _add_rows(session, dialect, UsageLatency.__table__, latency_rows, ["api_key_id", "minute", "bucket"])
    return len(count_rows)


async def _drop_unknown_keys(session: AsyncSession, batch: UsageBatch) -> UsageBatch:
    key_ids = {key.api_key_id for key in batch}
    known = set((await session.execute(select(ApiKey.id).where(ApiKey.id.in_(key_ids)))).scalars())
    if len(known) < len(key_ids):
        logger.info("usage of deleted API keys dropped", extra={"api_key_ids": sorted(key_ids - known)})
    return {key: counts for key, counts in batch.items() if key.api_key_id in known}


def _rows(batch: UsageBatch) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    count_rows = []
    latency_rows = []
    for key, counts in batch.items():
        identity = {"api_key_id": key.api_key_id, "minute": key.minute, "organization_id": key.organization_id}
        count_rows.append({**identity, **{name: getattr(counts, name) for name in _COUNTERS.values()}})
        for index, count in counts.latency.items():
            latency_rows.append({**identity, "bucket": index, "count": count})
    return count_rows, latency_rows


async def _add_rows(
    session: AsyncSession, dialect: str, table: Table, rows: list[dict[str, Any]], key_columns: Sequence[str]
) -> None:
    """Insert rows, or add their counts to the rows with the same key (an upsert)."""
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    added = [name for name in rows[0] if name not in key_columns and name != "organization_id"] if rows else []
    for start in range(0, len(rows), _ROWS_PER_STATEMENT):
        statement = insert(table).values(rows[start : start + _ROWS_PER_STATEMENT])
        statement = statement.on_conflict_do_update(
            index_elements=list(key_columns),
            set_={name: table.c[name] + statement.excluded[name] for name in added},
        )
        await session.execute(statement)
