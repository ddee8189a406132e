"""Tests for connex.ratelimit against an in-process fake clock and a real Redis (database 15)."""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import socket
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest
import pytest_asyncio
import redis.asyncio
import redis.exceptions
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from connex.ratelimit import (
    Decision,
    FallbackRateLimiter,
    MemoryRateLimiter,
    RateLimiter,
    RedisRateLimiter,
)

REDIS_URL = "redis://127.0.0.1:6379/15"
REDIS_PORT = 6379
LOGGER_NAME = "connex.tests.ratelimit"
FALLBACK_WARNING = "rate limiter falling back to in-process limits"
RECOVERY_INFO = "rate limiter using Redis again"

PROCESSES = 4
HITS_PER_PROCESS = 50
SHARED_LIMIT = 60

# Window for tests that never wait, so a stalled test machine cannot expire entries.
LONG_WINDOW = 60


def make_redis_client(url: str = REDIS_URL, **options: Any) -> redis.asyncio.Redis:
    """Create a client that never retries, as RedisRateLimiter requires."""
    settings: dict[str, Any] = {"retry": Retry(NoBackoff(), 0), "socket_timeout": 5.0}
    settings.update(options)
    return redis.asyncio.from_url(url, **settings)


def unique_prefix() -> str:
    return f"connex:test:rl:{uuid.uuid4().hex}:"


async def delete_prefixed_keys(client: redis.asyncio.Redis, prefix: str) -> None:
    keys = [key async for key in client.scan_iter(match=f"{prefix}*")]
    if keys:
        await client.delete(*keys)


class FakeClock:
    """Monotonic clock that moves only when a test advances it."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class Harness:
    """One backend under test, with a way to let time pass for it."""

    limiter: RateLimiter
    advance: Callable[[float], Awaitable[None]]
    exact_clock: bool
    bucket: str = "client-1"
    window: int = 1


@pytest_asyncio.fixture
async def redis_client() -> AsyncIterator[redis.asyncio.Redis]:
    client = make_redis_client()
    yield client
    await client.aclose()


@pytest_asyncio.fixture
async def redis_limiter(redis_client: redis.asyncio.Redis) -> AsyncIterator[RedisRateLimiter]:
    prefix = unique_prefix()
    yield RedisRateLimiter(redis_client, prefix=prefix)
    await delete_prefixed_keys(redis_client, prefix)


@pytest_asyncio.fixture(params=["memory", "redis"])
async def harness(request: pytest.FixtureRequest) -> AsyncIterator[Harness]:
    if request.param == "memory":
        clock = FakeClock()

        async def advance_clock(seconds: float) -> None:
            clock.advance(seconds)

        yield Harness(MemoryRateLimiter(clock=clock), advance_clock, exact_clock=True)
        return

    client = make_redis_client()
    prefix = unique_prefix()
    yield Harness(RedisRateLimiter(client, prefix=prefix), asyncio.sleep, exact_clock=False)
    await delete_prefixed_keys(client, prefix)
    await client.aclose()


async def hit_many(
    limiter: RateLimiter, bucket: str, count: int, limit: int, window: int
) -> list[Decision]:
    return [await limiter.hit(bucket, limit, window) for _ in range(count)]


# Contract tests, run against both backends.


@pytest.mark.asyncio
async def test_admits_exactly_limit(harness: Harness) -> None:
    decisions = await hit_many(harness.limiter, harness.bucket, 8, limit=5, window=LONG_WINDOW)

    assert [d.allowed for d in decisions] == [True] * 5 + [False] * 3
    assert [d.remaining for d in decisions] == [4, 3, 2, 1, 0, 0, 0, 0]
    assert all(d.limit == 5 for d in decisions)
    assert all(d.window == LONG_WINDOW for d in decisions)


@pytest.mark.asyncio
async def test_rejections_consume_no_budget(harness: Harness) -> None:
    window = harness.window
    first = await hit_many(harness.limiter, harness.bucket, 5, limit=5, window=window)
    assert all(d.allowed for d in first)

    # Rejected hits halfway through the window would still be inside the window
    # when the admitted ones have left it, so counting them would block the next batch.
    await harness.advance(window / 2)
    rejected = await hit_many(harness.limiter, harness.bucket, 10, limit=5, window=window)
    assert not any(d.allowed for d in rejected)

    await harness.advance(window / 2 + 0.05)
    second = await hit_many(harness.limiter, harness.bucket, 6, limit=5, window=window)
    assert [d.allowed for d in second] == [True] * 5 + [False]


@pytest.mark.asyncio
async def test_reset_after_on_admission(harness: Harness) -> None:
    window = harness.window
    first = await harness.limiter.hit(harness.bucket, 3, window)
    assert first.reset_after == window

    await harness.advance(0.25)
    second = await harness.limiter.hit(harness.bucket, 3, window)
    assert second.allowed
    assert 0 < second.reset_after <= window - 0.25


@pytest.mark.asyncio
async def test_reset_after_on_rejection(harness: Harness) -> None:
    window = harness.window
    first_sent = time.monotonic()
    first = await harness.limiter.hit(harness.bucket, 3, window)
    first_received = time.monotonic()
    assert first.allowed

    await harness.advance(0.5)
    later = await hit_many(harness.limiter, harness.bucket, 2, limit=3, window=window)
    assert all(d.allowed for d in later)

    rejected_sent = time.monotonic()
    rejected = await harness.limiter.hit(harness.bucket, 3, window)
    rejected_received = time.monotonic()
    assert not rejected.allowed
    assert 0 < rejected.reset_after <= window

    if harness.exact_clock:
        assert rejected.reset_after == pytest.approx(window - 0.5)
    else:
        # Redis timed both hits somewhere between sending and receiving them.
        assert rejected.reset_after >= window - (rejected_received - first_sent) - 1e-6
        assert rejected.reset_after <= window - (rejected_sent - first_received) + 1e-6

    await harness.advance(rejected.reset_after + 0.02)
    readmitted = await harness.limiter.hit(harness.bucket, 3, window)
    assert readmitted.allowed
    if harness.exact_clock:
        assert readmitted.remaining == 0


@pytest.mark.asyncio
async def test_budget_returns_after_window(harness: Harness) -> None:
    window = harness.window
    await hit_many(harness.limiter, harness.bucket, 3, limit=3, window=window)
    assert not (await harness.limiter.hit(harness.bucket, 3, window)).allowed

    await harness.advance(window + 0.02)
    decision = await harness.limiter.hit(harness.bucket, 3, window)
    assert decision.allowed
    assert decision.remaining == 2


@pytest.mark.asyncio
async def test_cost_consumes_units(harness: Harness) -> None:
    decision = await harness.limiter.hit(harness.bucket, 10, LONG_WINDOW, cost=4)
    assert decision.allowed
    assert decision.remaining == 6

    decision = await harness.limiter.hit(harness.bucket, 10, LONG_WINDOW, cost=6)
    assert decision.allowed
    assert decision.remaining == 0


@pytest.mark.asyncio
async def test_cost_above_remaining_rejected(harness: Harness) -> None:
    window = LONG_WINDOW
    await harness.limiter.hit(harness.bucket, 5, window, cost=3)

    rejected = await harness.limiter.hit(harness.bucket, 5, window, cost=3)
    assert not rejected.allowed
    assert rejected.remaining == 2
    assert 0 < rejected.reset_after <= window

    fitting = await harness.limiter.hit(harness.bucket, 5, window, cost=2)
    assert fitting.allowed
    assert fitting.remaining == 0


@pytest.mark.asyncio
async def test_cost_rejection_waits_for_enough_units(harness: Harness) -> None:
    window = harness.window
    await harness.limiter.hit(harness.bucket, 4, window, cost=2)
    await harness.advance(0.5)
    newer_sent = time.monotonic()
    await harness.limiter.hit(harness.bucket, 4, window, cost=2)

    # Admitting 3 units needs the 2 older units and 1 of the newer ones to leave,
    # so the wait is measured from the newer hit.
    rejected = await harness.limiter.hit(harness.bucket, 4, window, cost=3)
    rejected_received = time.monotonic()
    assert not rejected.allowed
    if harness.exact_clock:
        assert rejected.reset_after == pytest.approx(window)
    else:
        assert rejected.reset_after >= window - (rejected_received - newer_sent) - 1e-6
        assert rejected.reset_after <= window


@pytest.mark.asyncio
async def test_zero_cost_reports_budget(harness: Harness) -> None:
    empty = await harness.limiter.hit(harness.bucket, 5, LONG_WINDOW, cost=0)
    assert empty.allowed
    assert empty.remaining == 5
    assert empty.reset_after == 0

    await hit_many(harness.limiter, harness.bucket, 2, limit=5, window=LONG_WINDOW)
    peek = await harness.limiter.hit(harness.bucket, 5, LONG_WINDOW, cost=0)
    assert peek.remaining == 3
    assert 0 < peek.reset_after <= LONG_WINDOW

    after = await harness.limiter.hit(harness.bucket, 5, LONG_WINDOW)
    assert after.remaining == 2


@pytest.mark.asyncio
async def test_zero_cost_on_full_bucket(harness: Harness) -> None:
    await hit_many(harness.limiter, harness.bucket, 3, limit=3, window=LONG_WINDOW)

    peek = await harness.limiter.hit(harness.bucket, 3, LONG_WINDOW, cost=0)
    assert peek.remaining == 0
    assert 0 < peek.reset_after <= LONG_WINDOW
    assert not (await harness.limiter.hit(harness.bucket, 3, LONG_WINDOW)).allowed


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("limit", "window", "cost"),
    [(0, 1, 1), (5, 0, 1), (5, 1, -1), (5, 1, 6), (5, 1.5, 1), (True, 1, 1)],
)
async def test_invalid_arguments_raise(
    harness: Harness, limit: Any, window: Any, cost: Any
) -> None:
    with pytest.raises(ValueError):
        await harness.limiter.hit(harness.bucket, limit, window, cost)


# In-process backend.


@pytest.mark.asyncio
async def test_memory_rejects_until_exact_boundary() -> None:
    clock = FakeClock()
    limiter = MemoryRateLimiter(clock=clock)
    await limiter.hit("b", 1, 10)

    clock.advance(10 - 1e-3)
    assert not (await limiter.hit("b", 1, 10)).allowed

    clock.advance(1e-3)
    assert (await limiter.hit("b", 1, 10)).allowed


@pytest.mark.asyncio
async def test_memory_evicts_idle_buckets() -> None:
    clock = FakeClock()
    limiter = MemoryRateLimiter(clock=clock, sweep_interval=10)
    for index in range(100):
        await limiter.hit(f"idle-{index}", 5, 1)
    assert limiter.bucket_count == 100

    clock.advance(9.5)
    await limiter.hit("active", 5, 1)
    assert limiter.bucket_count == 101

    clock.advance(0.6)
    await limiter.hit("fresh", 5, 1)
    assert limiter.bucket_count == 2


# Redis backend.


@pytest.mark.asyncio
async def test_redis_keys_expire_after_window(
    redis_client: redis.asyncio.Redis, redis_limiter: RedisRateLimiter
) -> None:
    await redis_limiter.hit("b", 5, 2)
    key = redis_limiter.key_for("b")

    for name in (key, f"{key}:seq"):
        ttl = await redis_client.pttl(name)
        assert 0 < ttl <= 2000


@pytest.mark.asyncio
async def test_redis_cost_adds_distinct_members(
    redis_client: redis.asyncio.Redis, redis_limiter: RedisRateLimiter
) -> None:
    await redis_limiter.hit("b", 700, 2, cost=600)
    await redis_limiter.hit("b", 700, 2, cost=50)

    assert await redis_client.zcard(redis_limiter.key_for("b")) == 650


@pytest.mark.asyncio
async def test_redis_reloads_flushed_script(
    redis_client: redis.asyncio.Redis, redis_limiter: RedisRateLimiter
) -> None:
    assert (await redis_limiter.hit("b", 5, 2)).remaining == 4
    await redis_client.script_flush()

    decision = await redis_limiter.hit("b", 5, 2)
    assert decision.allowed
    assert decision.remaining == 3
    assert await redis_client.zcard(redis_limiter.key_for("b")) == 2


class ScriptlessRedis(redis.asyncio.Redis):
    """Client whose EVALSHA always fails with a chosen error, counting the calls."""

    def __init__(self, error: Exception, **options: Any) -> None:
        super().__init__(**options)
        self.error = error
        self.evalsha_calls = 0

    async def evalsha(self, *args: Any) -> Any:  # type: ignore[override]
        self.evalsha_calls += 1
        raise self.error


def make_scriptless_client(error: Exception) -> ScriptlessRedis:
    return ScriptlessRedis(
        error, port=REDIS_PORT, db=15, retry=Retry(NoBackoff(), 0), socket_timeout=5.0
    )


@pytest.mark.asyncio
async def test_redis_noscript_retried_once() -> None:
    client = make_scriptless_client(redis.exceptions.NoScriptError("NOSCRIPT No matching script"))
    limiter = RedisRateLimiter(client, prefix=unique_prefix())

    with pytest.raises(redis.exceptions.NoScriptError):
        await limiter.hit("b", 5, 1)
    assert client.evalsha_calls == 2
    await client.aclose()


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "error",
    [
        redis.exceptions.TimeoutError("Timeout reading from socket"),
        redis.exceptions.ConnectionError("Connection reset by peer"),
    ],
)
async def test_redis_unavailable_not_retried(error: Exception) -> None:
    client = make_scriptless_client(error)
    limiter = RedisRateLimiter(client, prefix=unique_prefix())

    with pytest.raises(type(error)):
        await limiter.hit("b", 5, 1)
    assert client.evalsha_calls == 1
    await client.aclose()


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "make_client",
    [
        lambda: redis.asyncio.Redis(port=REDIS_PORT, db=15),
        lambda: redis.asyncio.Redis(port=REDIS_PORT, db=15, retry=Retry(NoBackoff(), 3)),
        lambda: redis.asyncio.from_url(REDIS_URL, retry_on_error=[redis.exceptions.TimeoutError]),
    ],
    ids=["default-retry", "explicit-retry", "retry-on-error"],
)
async def test_redis_rejects_retrying_client(
    make_client: Callable[[], redis.asyncio.Redis],
) -> None:
    client = make_client()
    with pytest.raises(ValueError, match="without automatic retries"):
        RedisRateLimiter(client)
    await client.aclose()


def hit_from_process(prefix: str, bucket: str, start: Any, results: Any) -> None:
    """Fire HITS_PER_PROCESS concurrent hits once all processes reach ``start``."""
    results.put(asyncio.run(fire_concurrent_hits(prefix, bucket, start)))


async def fire_concurrent_hits(prefix: str, bucket: str, start: Any) -> int:
    client = make_redis_client()
    limiter = RedisRateLimiter(client, prefix=prefix)

    # Open one connection per hit and load the script before the start signal.
    await asyncio.gather(*(client.ping() for _ in range(HITS_PER_PROCESS)))
    await limiter.hit(f"{bucket}:warm-up", 1, 1)
    start.wait(timeout=30)

    hits = (limiter.hit(bucket, SHARED_LIMIT, 10) for _ in range(HITS_PER_PROCESS))
    decisions = await asyncio.gather(*hits)
    await client.aclose()
    return sum(d.allowed for d in decisions)


@pytest.mark.asyncio
async def test_redis_processes_admit_exactly_limit(redis_client: redis.asyncio.Redis) -> None:
    context = multiprocessing.get_context("spawn")
    start = context.Barrier(PROCESSES)
    results = context.Queue()
    prefix = unique_prefix()
    processes = [
        context.Process(target=hit_from_process, args=(prefix, "shared", start, results))
        for _ in range(PROCESSES)
    ]
    for process in processes:
        process.start()

    admitted = [await asyncio.to_thread(results.get, timeout=60) for _ in processes]
    for process in processes:
        process.join(timeout=10)

    assert all(process.exitcode == 0 for process in processes)
    assert sum(admitted) == SHARED_LIMIT
    limiter = RedisRateLimiter(redis_client, prefix=prefix)
    assert await redis_client.zcard(limiter.key_for("shared")) == SHARED_LIMIT
    await delete_prefixed_keys(redis_client, prefix)


# Fallback between Redis and in-process limits.


def count_records(caplog: pytest.LogCaptureFixture, level: int, message: str) -> int:
    return sum(
        1 for r in caplog.records if r.levelno == level and r.getMessage().startswith(message)
    )


def reserve_free_port() -> int:
    """Return a local TCP port that had no listener a moment ago."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


async def pipe_stream(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


async def start_redis_proxy(port: int) -> asyncio.Server:
    """Listen on ``port`` and forward every connection to the local Redis."""

    async def forward(
        client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter
    ) -> None:
        redis_reader, redis_writer = await asyncio.open_connection("127.0.0.1", REDIS_PORT)
        await asyncio.gather(
            pipe_stream(client_reader, redis_writer), pipe_stream(redis_reader, client_writer)
        )

    return await asyncio.start_server(forward, "127.0.0.1", port)


@pytest.mark.asyncio
async def test_fallback_serves_from_memory(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER_NAME)
    client = make_redis_client("redis://127.0.0.1:1/15", socket_connect_timeout=0.2)
    limiter = FallbackRateLimiter(
        RedisRateLimiter(client, prefix=unique_prefix()),
        MemoryRateLimiter(),
        logging.getLogger(LOGGER_NAME),
        probe_interval=0.0,
    )

    decisions = await hit_many(limiter, "b", 20, limit=3, window=60)

    assert [d.allowed for d in decisions] == [True] * 3 + [False] * 17
    assert limiter.degraded
    assert count_records(caplog, logging.WARNING, FALLBACK_WARNING) == 1
    assert count_records(caplog, logging.INFO, RECOVERY_INFO) == 0
    await client.aclose()


class UnreachableLimiter:
    """Primary limiter stand-in whose every call fails as if Redis were down."""

    def __init__(self) -> None:
        self.calls = 0

    async def hit(self, bucket: str, limit: int, window: int, cost: int = 1) -> Decision:
        self.calls += 1
        raise redis.exceptions.ConnectionError("Connection refused")


@pytest.mark.asyncio
async def test_fallback_probes_once_per_interval() -> None:
    clock = FakeClock()
    primary = UnreachableLimiter()
    limiter = FallbackRateLimiter(
        primary,  # type: ignore[arg-type]
        MemoryRateLimiter(clock=clock),
        logging.getLogger(LOGGER_NAME),
        probe_interval=5.0,
        clock=clock,
    )

    await hit_many(limiter, "b", 10, limit=100, window=60)
    assert primary.calls == 1

    clock.advance(4.9)
    await hit_many(limiter, "b", 10, limit=100, window=60)
    assert primary.calls == 1

    clock.advance(0.1)
    await hit_many(limiter, "b", 10, limit=100, window=60)
    assert primary.calls == 2
    assert limiter.degraded


@pytest.mark.asyncio
async def test_fallback_returns_to_redis(
    caplog: pytest.LogCaptureFixture, redis_client: redis.asyncio.Redis
) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER_NAME)
    clock = FakeClock()
    port = reserve_free_port()
    proxied_client = make_redis_client(f"redis://127.0.0.1:{port}/15", socket_connect_timeout=0.5)
    primary = RedisRateLimiter(proxied_client, prefix=unique_prefix())
    limiter = FallbackRateLimiter(
        primary, MemoryRateLimiter(clock=clock), logging.getLogger(LOGGER_NAME), clock=clock
    )
    key = primary.key_for("b")

    assert (await limiter.hit("b", 10, 60)).remaining == 9
    assert limiter.degraded

    proxy = await start_redis_proxy(port)
    try:
        # Redis is reachable again, but the next probe is not due yet.
        assert (await limiter.hit("b", 10, 60)).remaining == 8
        assert await redis_client.zcard(key) == 0

        clock.advance(5.0)
        decisions = await hit_many(limiter, "b", 3, limit=10, window=60)
        assert [d.remaining for d in decisions] == [9, 8, 7]
        assert await redis_client.zcard(key) == 3
        assert not limiter.degraded
    finally:
        await proxied_client.aclose()
        proxy.close()
        await proxy.wait_closed()
        await redis_client.delete(key, f"{key}:seq")

    assert count_records(caplog, logging.WARNING, FALLBACK_WARNING) == 1
    assert count_records(caplog, logging.INFO, RECOVERY_INFO) == 1
