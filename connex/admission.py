"""Admission of API requests: authentication, the per-key rate limit and last-use tracking.

With Redis, one Lua script (``ADMISSION_SCRIPT``) reads the cached key record, checks
that the key is neither revoked nor expired, applies the sliding-log limit of
connex.ratelimit with the key's own limit and records the last-use time. A request
with a key seen within ``key_cache_seconds`` therefore costs one Redis round trip and
no database query. A cache miss reads the database and runs the script once more.

Without Redis (embedded mode), and in each process while Redis is unreachable, the
same contract runs in process: records cached in memory and MemoryRateLimiter. During
an outage a record read from the database is reused for ``outage_key_cache_seconds``,
which bounds how late a revocation made on another process takes effect, and each
process enforces the limits on its own.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import redis.asyncio

from connex.auth import (
    Authenticator,
    MemoryKeyCache,
    Principal,
    RedisKeyCache,
    principal_from_record,
    unusable_error,
)
from connex.errors import Unauthenticated
from connex.keys import is_well_formed
from connex.ratelimit import (
    MICROSECONDS,
    REDIS_UNAVAILABLE_ERRORS,
    SLIDING_LOG_FUNCTION,
    Decision,
    MemoryRateLimiter,
    RedisOutage,
    require_no_retries,
)

logger = logging.getLogger("connex.admission")

# The policy name in the RateLimit and RateLimit-Policy headers.
POLICY_NAME = "default"

_MISS = 0
_DECIDED = 1
_UNUSABLE = 2
_COST_OVER_LIMIT = 3

ADMISSION_SCRIPT = SLIDING_LOG_FUNCTION + """
-- Admission of one request by API key.
--
-- KEYS[1]  the cached key record: JSON written by Principal.to_json
-- KEYS[2]  hash of buffered last-use times. Field: key hash. Value: Unix seconds.
-- KEYS[3]  the record's epoch, a counter that every invalidation increments
-- KEYS[4]  the key's sliding log, KEYS[5] its sequence counter
-- ARGV[1]  key hash
-- ARGV[2]  limit for keys whose record has no limit of its own ("rpm": null)
-- ARGV[3]  window in microseconds
-- ARGV[4]  cost in units; 0 checks the key and reports the budget without consuming
-- ARGV[5]  a record just read from the database, or '' to use the cached one
-- ARGV[6]  the epoch that the cache miss before that database read returned
-- ARGV[7]  seconds to keep a stored record
--
-- Returns {0, epoch} when no record is cached and ARGV[5] is ''. Otherwise returns
-- {status, record, limit, allowed, remaining, reset_after, now}:
--   status 1  the limiter decided; allowed, remaining and reset_after are its result
--   status 2  the key is revoked or expired; nothing was recorded
--   status 3  the cost exceeds the key's whole limit; nothing was recorded, and the
--             limiter figures are those of a cost-0 check
--   now       the Redis clock in microseconds since the Unix epoch

local record_key, last_used_key, epoch_key = KEYS[1], KEYS[2], KEYS[3]
local key_hash = ARGV[1]
local default_limit = tonumber(ARGV[2])
local window = tonumber(ARGV[3])
local cost = tonumber(ARGV[4])

local record
if ARGV[5] ~= '' then
  record = ARGV[5]
  -- An invalidation since the miss means the database read may predate a revocation:
  -- the record still decides this request, which raced the revocation, but is not stored.
  if (redis.call('GET', epoch_key) or '0') == ARGV[6] then
    redis.call('SET', record_key, record, 'EX', ARGV[7])
  end
else
  record = redis.call('GET', record_key)
  if not record then
    return {0, redis.call('GET', epoch_key) or '0'}
  end
end

local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])

local key = cjson.decode(record)
if key.revoked == true or (type(key.exp) == 'number' and key.exp * 1000000 <= now) then
  return {2, record, 0, 0, 0, 0, now}
end

redis.call('HSET', last_used_key, key_hash, string.format('%.6f', now / 1000000))

local limit = default_limit
if type(key.rpm) == 'number' then
  limit = key.rpm
end

if cost > limit then
  local budget = sliding_log_hit(KEYS[4], KEYS[5], limit, window, 0, now)
  return {3, record, limit, 0, budget[2], budget[3], now}
end

local result = sliding_log_hit(KEYS[4], KEYS[5], limit, window, cost, now)
return {1, record, limit, result[1], result[2], result[3], now}
"""


@dataclass(frozen=True, slots=True)
class RateLimitPolicy:
    """The limit for keys without their own, and the window every limit applies to."""

    default_limit: int
    window: int

    def limit_for(self, principal: Principal) -> int:
        return principal.rate_limit_per_minute or self.default_limit


@dataclass(frozen=True, slots=True)
class Admission:
    """The outcome of admitting one request: the caller and the rate-limit decision.

    ``decided_at`` is the Unix time of the decision on the clock that timed it: the Redis
    clock when Redis decided. ``cost_over_limit`` means the request costs more than the
    key's whole limit, so it was rejected without consuming budget, and ``decision``
    reports the budget as a cost-0 check.
    """

    principal: Principal
    decision: Decision
    cost: int
    decided_at: float
    cost_over_limit: bool = False

    @property
    def allowed(self) -> bool:
        return self.decision.allowed and not self.cost_over_limit

    @property
    def retry_after(self) -> int:
        """Whole seconds until the budget has grown enough to admit this request, at least 1."""
        return max(1, math.ceil(self.decision.reset_after))

    @property
    def reset_at(self) -> int:
        """Unix time in whole seconds when the budget next grows, as GitHub's X-RateLimit-Reset."""
        return math.ceil(self.decided_at + self.decision.reset_after)


def rate_limit_headers(admission: Admission) -> list[tuple[bytes, bytes]]:
    """Return the rate-limit headers of a response to an admitted or rejected request.

    ``RateLimit-Policy`` and ``RateLimit`` follow draft-ietf-httpapi-ratelimit-headers-11:
    ``q`` is the quota, ``w`` the window in seconds, ``r`` the remaining quota and ``t``
    the seconds until more quota is available. The ``X-RateLimit-*`` headers carry the
    same figures under GitHub's names, with the reset as Unix time.
    """
    decision = admission.decision
    reset_seconds = math.ceil(decision.reset_after)
    return [
        (b"ratelimit-policy", f'"{POLICY_NAME}";q={decision.limit};w={decision.window}'.encode()),
        (b"ratelimit", f'"{POLICY_NAME}";r={decision.remaining};t={reset_seconds}'.encode()),
        (b"x-ratelimit-limit", str(decision.limit).encode()),
        (b"x-ratelimit-remaining", str(decision.remaining).encode()),
        (b"x-ratelimit-reset", str(admission.reset_at).encode()),
    ]


KeyLoader = Callable[[str], Awaitable[Principal]]


class RedisAdmission:
    """Admission through ADMISSION_SCRIPT, shared by every process that uses the same Redis.

    The rate-limit keys are those of ``RedisRateLimiter`` with the key hash as the
    bucket. As with RedisRateLimiter, the client must not retry on its own, because a
    retried script after a timeout can count one request twice. redis-py's registered
    script retries only NOSCRIPT (a Redis restart emptied the script cache, so the
    script did not run), once, after loading the script.

    NOTE: the script touches keys of several hash slots, so it needs a single Redis
    server or a primary with replicas, not Redis Cluster.
    """

    def __init__(
        self,
        client: redis.asyncio.Redis,
        cache: RedisKeyCache,
        policy: RateLimitPolicy,
        record_seconds: int,
        prefix: str = "connex:rl:",
    ) -> None:
        require_no_retries(client, "RedisAdmission")
        self._cache = cache
        self._policy = policy
        self._record_seconds = record_seconds
        self._prefix = prefix
        self._script = client.register_script(ADMISSION_SCRIPT)

    def log_key(self, key_hash: str) -> str:
        """Return the sorted-set key of the key's sliding log."""
        return f"{self._prefix}{{{key_hash}}}"

    async def admit(self, key_hash: str, cost: int, load: KeyLoader) -> Admission:
        log_key = self.log_key(key_hash)
        keys = [
            self._cache.record_key(key_hash),
            self._cache.last_used_key,
            self._cache.epoch_key(key_hash),
            log_key,
            f"{log_key}:seq",
        ]
        window_us = self._policy.window * MICROSECONDS
        args: list[str | int] = [key_hash, self._policy.default_limit, window_us, cost, "", "", self._record_seconds]

        reply = await self._script(keys=keys, args=args)
        if int(reply[0]) == _MISS:
            principal = await load(key_hash)
            args[4] = principal.to_json().decode()
            args[5] = _text(reply[1])
            reply = await self._script(keys=keys, args=args)

        return self._admission_from_reply(reply, cost)

    def _admission_from_reply(self, reply: list[object], cost: int) -> Admission:
        status = int(reply[0])  # type: ignore[call-overload]
        record = reply[1]
        limit, allowed, remaining, reset_us, now_us = (int(value) for value in reply[2:7])  # type: ignore[call-overload]
        principal = principal_from_record(record if isinstance(record, bytes) else str(record).encode())
        decided_at = now_us / MICROSECONDS

        if status == _UNUSABLE:
            # The script compared the expiry with the Redis clock. Where this process's clock
            # is behind it, unusable_error finds nothing, so the key is reported as expired.
            raise unusable_error(principal, decided_at) or Unauthenticated("The API key has expired")

        decision = Decision(
            allowed=allowed == 1,
            limit=limit,
            remaining=remaining,
            reset_after=reset_us / MICROSECONDS,
            window=self._policy.window,
        )
        return Admission(principal, decision, cost, decided_at, cost_over_limit=status == _COST_OVER_LIMIT)


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class LocalAdmission:
    """Admission in this process, with the same contract as RedisAdmission."""

    def __init__(
        self,
        cache: MemoryKeyCache,
        limiter: MemoryRateLimiter,
        policy: RateLimitPolicy,
        record_seconds: float,
    ) -> None:
        self.cache = cache
        self._limiter = limiter
        self._policy = policy
        self._record_seconds = record_seconds

    async def admit(self, key_hash: str, cost: int, load: KeyLoader) -> Admission:
        now = time.time()
        record = self.cache.get(key_hash)
        if record is None:
            epoch = self.cache.epoch(key_hash)
            principal = await load(key_hash)
            await self.cache.put(key_hash, principal.to_json(), self._record_seconds, epoch)
        else:
            principal = principal_from_record(record)

        error = unusable_error(principal, now)
        if error is not None:
            raise error
        # Only a request the key may make counts as use, as in the Redis script.
        self.cache.touch(key_hash, now)

        limit = self._policy.limit_for(principal)
        over_limit = cost > limit
        decision = await self._limiter.hit(key_hash, limit, self._policy.window, 0 if over_limit else cost)
        return Admission(principal, decision, cost, now, cost_over_limit=over_limit)


class KeyAdmission:
    """Admission of requests by API key, through Redis when it is configured and reachable.

    While Redis is unreachable every request takes ``fallback``, and one request every
    probe interval tries Redis again (``RedisOutage``). The switch and the return are
    each logged once.
    """

    def __init__(
        self,
        authenticator: Authenticator,
        fallback: LocalAdmission,
        primary: RedisAdmission | None = None,
        outage: RedisOutage | None = None,
    ) -> None:
        self._authenticator = authenticator
        self._fallback = fallback
        self._primary = primary
        self._outage = outage or RedisOutage(logger, subject="key admission", fallback="in-process keys and limits")

    @property
    def degraded(self) -> bool:
        return self._primary is not None and self._outage.degraded

    @property
    def fallback_cache(self) -> MemoryKeyCache:
        return self._fallback.cache

    async def admit(self, key: str, cost: int) -> Admission:
        """Authenticate ``key`` and charge ``cost`` units; raise Unauthenticated for a bad key.

        A cost of 0 authenticates and reports the budget without consuming any.
        """
        if not is_well_formed(key):
            raise Unauthenticated("Invalid API key")
        key_hash = self._authenticator.hash(key)
        load = self._authenticator.load

        if self._primary is None or not self._outage.use_redis():
            return await self._fallback.admit(key_hash, cost, load)
        try:
            admission = await self._primary.admit(key_hash, cost, load)
        except REDIS_UNAVAILABLE_ERRORS as error:
            self._outage.record_failure(error)
            return await self._fallback.admit(key_hash, cost, load)

        self._outage.record_success()
        return admission
