"""The periodic move of in-process counts to Redis or, failing that, to the database."""

from __future__ import annotations

import logging

from connex.db import Database
from connex.ratelimit import REDIS_UNAVAILABLE_ERRORS, RedisOutage
from connex.usage.meter import UsageMeter
from connex.usage.store import RedisUsageBuffer, write_usage

logger = logging.getLogger("connex.usage")


class UsageFlusher:
    """Sends the meter's counts to the Redis buffer, or writes them to the database.

    The database takes them in embedded mode and while Redis is unreachable, so no
    count waits for Redis. Counts that neither store accepted go back to the meter
    for the next flush.
    """

    def __init__(
        self,
        meter: UsageMeter,
        db: Database,
        buffer: RedisUsageBuffer | None = None,
        outage: RedisOutage | None = None,
    ) -> None:
        self.meter = meter
        self.buffer = buffer
        self._db = db
        self._outage = outage or RedisOutage(logger, subject="usage metering", fallback="database writes")

    async def flush(self) -> int:
        """Store the counts recorded since the last flush; return their (minute, key) count."""
        batch = self.meter.drain()
        if not batch:
            return 0

        if self.buffer is not None and self._outage.use_redis():
            try:
                await self.buffer.add(batch)
            except REDIS_UNAVAILABLE_ERRORS as error:
                self._outage.record_failure(error)
            else:
                self._outage.record_success()
                return len(batch)

        try:
            await write_usage(self._db, batch)
        except BaseException:
            self.meter.restore(batch)
            raise
        return len(batch)

    async def roll_up(self) -> int | None:
        """Roll the Redis counters into the database; see RedisUsageBuffer.roll_up."""
        if self.buffer is None:
            return 0
        return await self.buffer.roll_up(self._db)
