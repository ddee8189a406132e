"""Measure RedisRateLimiter latency per hit and Redis memory per active bucket.

Run from the repository root against a local Redis that may be written to:

    PYTHONPATH=. .venv/bin/python bench/ratelimit_overhead.py --url redis://127.0.0.1:6379/15

Hits are sent one at a time, so the latency includes one network round trip and the
Python client. The script deletes only the keys it created.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid

import redis.asyncio
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from connex.ratelimit import RedisRateLimiter


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--url", default="redis://127.0.0.1:6379/15", help="Redis URL (default: %(default)s)"
    )
    parser.add_argument(
        "--hits", type=int, default=10_000, help="timed hits (default: %(default)s)"
    )
    parser.add_argument(
        "--keys",
        type=int,
        default=1_000,
        help="buckets the hits rotate over (default: %(default)s)",
    )
    parser.add_argument(
        "--limit",
        type=int,
        default=600,
        help="limit for the memory measurement (default: %(default)s)",
    )
    parser.add_argument(
        "--window", type=int, default=60, help="window in seconds (default: %(default)s)"
    )
    return parser.parse_args()


def percentile(sorted_values: list[float], fraction: float) -> float:
    """Return the nearest-rank percentile of an ascending list."""
    rank = max(1, round(fraction * len(sorted_values)))
    return sorted_values[rank - 1]


async def measure_latency(
    limiter: RedisRateLimiter, hits: int, keys: int, window: int
) -> list[float]:
    """Return the duration of each hit in microseconds, after one warm-up hit."""
    await limiter.hit("warm-up", 1, window)
    durations = []
    for index in range(hits):
        started = time.perf_counter_ns()
        await limiter.hit(f"key-{index % keys}", 1_000_000, window)
        durations.append((time.perf_counter_ns() - started) / 1000)
    return durations


async def measure_memory(
    client: redis.asyncio.Redis, limiter: RedisRateLimiter, limit: int, window: int
) -> tuple[int, int, int]:
    """Fill one bucket to ``limit`` and return its key sizes in bytes and its entry count.

    The sizes are MEMORY USAGE of the sorted-set key and of the counter key.
    """
    for _ in range(limit):
        await limiter.hit("memory", limit, window)

    log_key = limiter.key_for("memory")
    log_bytes = await client.memory_usage(log_key, samples=0)
    seq_bytes = await client.memory_usage(f"{log_key}:seq", samples=0)
    return log_bytes, seq_bytes, await client.zcard(log_key)


async def delete_prefixed_keys(client: redis.asyncio.Redis, prefix: str) -> None:
    keys = [key async for key in client.scan_iter(match=f"{prefix}*", count=1000)]
    for start in range(0, len(keys), 1000):
        await client.delete(*keys[start : start + 1000])


async def main() -> None:
    args = parse_args()
    client = redis.asyncio.from_url(args.url, retry=Retry(NoBackoff(), 0), socket_timeout=5.0)
    prefix = f"connex:bench:{uuid.uuid4().hex}:"
    limiter = RedisRateLimiter(client, prefix=prefix)
    try:
        durations = sorted(await measure_latency(limiter, args.hits, args.keys, args.window))
        log_bytes, seq_bytes, entries = await measure_memory(
            client, limiter, args.limit, args.window
        )
        server = await client.info("server")
    finally:
        await delete_prefixed_keys(client, prefix)
        await client.aclose()

    print(f"redis {server['redis_version']} at {args.url}")
    print(f"hit latency over {args.hits} sequential hits on {args.keys} keys (microseconds):")
    print(
        f"  mean {statistics.fmean(durations):.1f}"
        f"  p50 {percentile(durations, 0.50):.1f}"
        f"  p99 {percentile(durations, 0.99):.1f}"
    )
    print(
        f"memory of one bucket after {args.limit} hits at limit {args.limit} per {args.window} s:"
    )
    print(
        f"  log key {log_bytes} bytes for {entries} entries"
        f" ({log_bytes / entries:.1f} bytes per entry)"
    )
    print(f"  counter key {seq_bytes} bytes, total {log_bytes + seq_bytes} bytes")


if __name__ == "__main__":
    asyncio.run(main())
