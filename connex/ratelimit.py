"""Per-key sliding-window rate limiting with a Redis backend and an in-process backend.

Both backends keep a sliding log: one entry per admitted unit, timestamped when it was
admitted. A request of ``cost`` units on a bucket with limit N and window W is admitted
when the entries younger than W plus ``cost`` add up to at most N. So no half-open
interval ``[t, t + W)`` admits more than N units on one bucket, and a rejected request
records nothing. A ``cost`` of 0 records nothing and reports the budget. Memory is O(N)
entries per active bucket.

A bucket is meant to be used with one (limit, window) pair. Calls with another pair
work against the same log, so lowering the limit rejects until the log drains.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import redis.asyncio
import redis.exceptions

MICROSECONDS = 1_000_000

# The limiter proper, as a Lua function shared by SLIDING_LOG_SCRIPT and the key admission
# script in connex.admission, so both apply the same rule to the same keys.
SLIDING_LOG_FUNCTION = """\
-- Sliding-log rate limiter. Admits COST units when the units admitted during the last
-- WINDOW microseconds plus COST are at most LIMIT. A COST of 0 records nothing and
-- reports the budget.
--
-- log_key  sorted set of admitted units. Score: admission time in microseconds since
--          the Unix epoch. Member: a sequence number from seq_key, unique in the set.
-- seq_key  counter that supplies the sequence numbers. It expires together with log_key,
--          and by then every entry of log_key has left the window.
-- limit    maximum units per window, integer >= 1
-- window   window in microseconds, integer >= 1
-- cost     units this request consumes, integer from 0 to limit
-- now      the current time in microseconds, from the Redis clock (TIME)
--
-- Returns {allowed, remaining, reset_after}:
--   allowed      1 if the units were recorded (or COST is 0 and fits), 0 if nothing was
--   remaining    units still available in the window after this request, >= 0
--   reset_after  microseconds until the budget grows. On admission: until the oldest
--                counted unit leaves the window (0 for a COST of 0 on an empty log).
--                On rejection: until enough units have left the window to admit COST.

-- Lua 5.1 turns numbers into strings with "%.14g" when concatenating, which would
-- round a 16-digit microsecond timestamp. '%.0f' keeps every digit.
local function integer_string(value)
  return string.format('%.0f', value)
end

local function sliding_log_hit(log_key, seq_key, limit, window, cost, now)
  -- Section: trim and count. A unit admitted at t counts while now < t + window.
  redis.call('ZREMRANGEBYSCORE', log_key, '-inf', integer_string(now - window))
  local count = redis.call('ZCARD', log_key)

  local function expiry_of(rank)
    local entry = redis.call('ZRANGE', log_key, rank, rank, 'WITHSCORES')
    return tonumber(entry[2]) + window - now
  end

  -- Section: reject. The (count + cost - limit) oldest units must leave the window first.
  if count + cost > limit then
    local blocking = count + cost - limit
    return {0, math.max(limit - count, 0), expiry_of(blocking - 1)}
  end

  if cost == 0 then
    if count == 0 then
      return {1, limit, 0}
    end
    return {1, limit - count, expiry_of(0)}
  end

  -- Section: admit. ZADD in batches keeps the unpack() argument count small.
  local last_seq = redis.call('INCRBY', seq_key, cost)
  local score = integer_string(now)
  local batch = {}
  for seq = last_seq - cost + 1, last_seq do
    batch[#batch + 1] = score
    batch[#batch + 1] = integer_string(seq)
    if #batch >= 512 then
      redis.call('ZADD', log_key, unpack(batch))
      batch = {}
    end
  end
  if #batch > 0 then
    redis.call('ZADD', log_key, unpack(batch))
  end

  local window_ms = integer_string(math.ceil(window / 1000))
  redis.call('PEXPIRE', log_key, window_ms)
  redis.call('PEXPIRE', seq_key, window_ms)

  return {1, limit - count - cost, expiry_of(0)}
end
"""

SLIDING_LOG_SCRIPT = SLIDING_LOG_FUNCTION + """
-- KEYS[1]  sorted set of admitted units (log_key above)
-- KEYS[2]  sequence counter (seq_key above)
-- ARGV[1]  limit, ARGV[2] window in microseconds, ARGV[3] cost
-- Time comes from the Redis clock, so all application servers share one clock.
local clock = redis.call('TIME')
-- Microseconds since the epoch (about 1.7e15) fit exactly in a Lua double (2^53).
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
return sliding_log_hit(KEYS[1], KEYS[2], tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), now)
"""


@dataclass(frozen=True, slots=True)
class Decision:
    """Outcome of one rate-limit check.

    ``reset_after`` is the number of seconds until the budget grows. After an admitted
    request it is the time until the oldest counted unit leaves the window, which equals
    ``window`` on an empty bucket. After a rejection it is the time until enough units
    have left the window to admit the rejected cost. It is greater than 0 and at most
    ``window`` unless the clock that timed the entries steps backwards, or the check had
    a cost of 0 on an empty bucket, where it is 0.
    """

    allowed: bool
    limit: int
    remaining: int
    reset_after: float
    window: int


class RateLimiter(Protocol):
    """Interface shared by the Redis, in-process and fallback limiters."""

    async def hit(self, bucket: str, limit: int, window: int, cost: int = 1) -> Decision:
        """Record ``cost`` units on ``bucket`` if the budget allows it, else record nothing."""
        ...


def validate_hit(limit: int, window: int, cost: int) -> None:
    """Raise ValueError unless limit, window and cost form a request that can be admitted.

    A cost of 0 is valid: it reports the budget without consuming any of it.
    """
    for name, value, minimum in (("limit", limit, 1), ("window", window, 1), ("cost", cost, 0)):
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")

    if cost > limit:
        raise ValueError(
            f"cost {cost} exceeds limit {limit}, so the request could never be admitted. "
            "Raise the limit or split the request"
        )


class RedisRateLimiter:
    """Sliding-log limiter shared by all processes that use the same Redis.

    Each bucket uses two keys: ``<prefix>{<bucket>}`` (sorted set of admitted units)
    and ``<prefix>{<bucket>}:seq`` (member counter). The braces make both keys hash to
    the same Redis Cluster slot. Both keys expire one window after the last admission.
    A bucket contains one sorted-set entry per admitted unit, so up to ``limit`` entries.
    docs/benchmarks.md records the measured MEMORY USAGE of a bucket at limit 600.

    Connection errors and timeouts propagate unchanged and are never retried, because
    Redis may have run the script before the reply was lost. For the same reason the
    client must not retry on its own, and the constructor raises ValueError if it
    would. In redis-py 8.2, ``redis.asyncio.Redis(...)`` retries 10 times by default,
    so pass ``retry=Retry(NoBackoff(), 0)``. Also set ``socket_timeout``, because the
    default of None lets a stalled Redis block every request.
    """

    def __init__(self, redis: redis.asyncio.Redis, prefix: str = "connex:rl:") -> None:
        require_no_retries(redis, "RedisRateLimiter")
        self._redis = redis
        self._prefix = prefix
        self._sha: str | None = None

    async def hit(self, bucket: str, limit: int, window: int, cost: int = 1) -> Decision:
        """Run the sliding-log script for ``bucket`` and return its decision."""
        validate_hit(limit, window, cost)
        log_key = self.key_for(bucket)
        keys_and_args = (log_key, f"{log_key}:seq", limit, window * MICROSECONDS, cost)

        sha = self._sha or await self._load_script()
        try:
            reply = await self._redis.evalsha(sha, 2, *keys_and_args)
        except redis.exceptions.NoScriptError:
            # Redis lost its script cache (restart, failover or SCRIPT FLUSH). The script
            # did not run, so one retry after reloading cannot count the request twice.
            sha = await self._load_script()
            reply = await self._redis.evalsha(sha, 2, *keys_and_args)

        return _decision_from_reply(reply, limit, window)

    def key_for(self, bucket: str) -> str:
        """Return the sorted-set key that stores the admitted units of ``bucket``."""
        return f"{self._prefix}{{{bucket}}}"

    async def _load_script(self) -> str:
        self._sha = await self._redis.script_load(SLIDING_LOG_SCRIPT)
        return self._sha


def require_no_retries(client: redis.asyncio.Redis, user: str) -> None:
    """Raise ValueError if ``client`` retries commands on its own, naming ``user`` as the caller."""
    # The pool's connections, not the client, carry the retry policy that applies.
    # A connection object built from the pool's settings shows it without connecting.
    pool = client.connection_pool
    retries = pool.connection_class(**pool.connection_kwargs).retry.get_retries()
    if retries != 0:
        raise ValueError(
            f"{user} needs a Redis client without automatic retries, "
            f"got retries={retries}: "
            "a retried EVALSHA after a timeout can count one request twice. "
            "Create the client with retry=redis.asyncio.retry.Retry(redis.backoff.NoBackoff(), 0) "
            "and without retry_on_timeout or retry_on_error"
        )


def _decision_from_reply(reply: Sequence[int], limit: int, window: int) -> Decision:
    allowed, remaining, reset_us = (int(value) for value in reply)
    return Decision(
        allowed=allowed == 1,
        limit=limit,
        remaining=remaining,
        reset_after=reset_us / MICROSECONDS,
        window=window,
    )


@dataclass(slots=True)
class _BucketLog:
    """Admission times of one bucket, oldest first, one entry per unit."""

    window: int
    times: deque[float]


class MemoryRateLimiter:
    """Sliding-log limiter for one process, with the same contract as RedisRateLimiter.

    ``hit`` does not await, so under asyncio each call runs atomically. The limiter is
    not thread-safe. Idle buckets, whose newest entry has left the window, are deleted
    by a sweep that runs on the first ``hit`` after every ``sweep_interval`` seconds.
    Memory is therefore bounded by the buckets hit during the last
    ``max(window) + sweep_interval`` seconds, times their limits.
    """

    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        sweep_interval: float = 60.0,
    ) -> None:
        self._clock = clock
        self._sweep_interval = sweep_interval
        self._logs: dict[str, _BucketLog] = {}
        self._next_sweep = clock() + sweep_interval

    @property
    def bucket_count(self) -> int:
        """Number of buckets currently held in memory."""
        return len(self._logs)

    async def hit(self, bucket: str, limit: int, window: int, cost: int = 1) -> Decision:
        """Record ``cost`` units on ``bucket`` if the budget allows it, else record nothing."""
        validate_hit(limit, window, cost)
        now = self._clock()
        self._sweep_idle_buckets(now)

        log = self._logs.get(bucket)
        if log is None:
            log = self._logs[bucket] = _BucketLog(window, deque())
        log.window = window
        times = log.times
        while times and times[0] + window <= now:
            times.popleft()

        count = len(times)
        if count + cost > limit:
            blocking = count + cost - limit
            reset_after = times[blocking - 1] + window - now
            return Decision(False, limit, max(limit - count, 0), reset_after, window)

        if cost == 0:
            reset_after = times[0] + window - now if times else 0.0
            return Decision(True, limit, limit - count, reset_after, window)

        times.extend([now] * cost)
        return Decision(True, limit, limit - count - cost, times[0] + window - now, window)

    def _sweep_idle_buckets(self, now: float) -> None:
        if now < self._next_sweep:
            return
        self._next_sweep = now + self._sweep_interval
        idle = [
            bucket
            for bucket, log in self._logs.items()
            if not log.times or log.times[-1] + log.window <= now
        ]
        for bucket in idle:
            del self._logs[bucket]


REDIS_UNAVAILABLE_ERRORS = (
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    TimeoutError,
)


class RedisOutage:
    """The switch between Redis and an in-process fallback, shared by every Redis-backed path.

    After a failure ``degraded`` is True and ``use_redis`` lets one call every
    ``probe_interval`` seconds try Redis again as a probe. The switch to the fallback is
    logged once as a WARNING and the return to Redis once as INFO. Failed probes are
    logged at DEBUG and counted.
    """

    def __init__(
        self,
        logger: logging.Logger | logging.LoggerAdapter[logging.Logger],
        probe_interval: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
        subject: str = "rate limiter",
        fallback: str = "in-process limits",
    ) -> None:
        self._logger = logger
        self._probe_interval = probe_interval
        self._clock = clock
        self._subject = subject
        self._fallback = fallback
        self.degraded = False
        self._degraded_since = 0.0
        self._next_probe = 0.0
        self._failed_probes = 0

    def use_redis(self) -> bool:
        """Return whether this call should go to Redis: always when healthy, else as a due probe."""
        if not self.degraded:
            return True
        now = self._clock()
        if now < self._next_probe:
            return False
        # Claim the probe before the caller awaits, so concurrent calls keep using the fallback.
        self._next_probe = now + self._probe_interval
        return True

    def record_failure(self, error: Exception) -> None:
        if self.degraded:
            self._failed_probes += 1
            self._logger.debug("%s probe of Redis failed: %r", self._subject, error)
            return

        now = self._clock()
        self.degraded = True
        self._degraded_since = now
        self._next_probe = now + self._probe_interval
        self._failed_probes = 0
        self._logger.warning("%s falling back to %s: %r", self._subject, self._fallback, error)

    def record_success(self) -> None:
        if not self.degraded:
            return
        self.degraded = False
        self._logger.info(
            "%s using Redis again after %.1f s of %s and %d failed probes",
            self._subject,
            self._clock() - self._degraded_since,
            self._fallback,
            self._failed_probes,
        )


class FallbackRateLimiter:
    """Rate limiter that uses Redis and falls back to in-process limits while Redis is down.

    While ``degraded`` is True, decisions come from ``fallback``. Its limits apply per
    process, so P processes together admit up to P times the limit, and the units
    admitted in Redis before the switch do not count. At most one request every
    ``probe_interval`` seconds is sent to Redis as a probe. The switch and the return
    are each logged once.
    """

    def __init__(
        self,
        primary: RedisRateLimiter,
        fallback: MemoryRateLimiter,
        logger: logging.Logger | logging.LoggerAdapter[logging.Logger],
        probe_interval: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._primary = primary
        self._fallback = fallback
        self._outage = RedisOutage(logger, probe_interval, clock)

    @property
    def degraded(self) -> bool:
        return self._outage.degraded

    async def hit(self, bucket: str, limit: int, window: int, cost: int = 1) -> Decision:
        """Return the Redis decision, or the in-process one while Redis is unavailable."""
        if not self._outage.use_redis():
            return await self._fallback.hit(bucket, limit, window, cost)

        try:
            decision = await self._primary.hit(bucket, limit, window, cost)
        except REDIS_UNAVAILABLE_ERRORS as error:
            self._outage.record_failure(error)
            return await self._fallback.hit(bucket, limit, window, cost)

        self._outage.record_success()
        return decision
