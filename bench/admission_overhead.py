"""Measure what the rate limit adds to key admission, and Redis memory per active key.

Run from the repository root against a Redis that may be written to:

    .venv/bin/python -m bench.admission_overhead --url redis://127.0.0.1:6379/1

Two scripts are timed in alternating blocks over the same keys. ADMISSION_SCRIPT runs
authentication, the sliding-log limit and the last-use time in one EVALSHA. The
baseline only reads the cached record and records the last-use time, which is what
authentication cost before the limit existed. The difference of the two is the
limiter's overhead per request, round trip and Python client included. Calls are
sent one at a time from one connection.

The memory figures are MEMORY USAGE of the keys one API key occupies after
``--limit`` admitted requests inside one window. The script deletes only the keys
it created.
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

from connex.admission import RateLimitPolicy, RedisAdmission
from connex.auth import Principal, RedisKeyCache, principal_from_record
from connex.scopes import Scope
from connex.usage.meter import UsageMeter
from connex.usage.store import batch_to_fields

# The record lookup before the limit existed: GET the record, HSET the last-use time.
AUTHENTICATION_ONLY_SCRIPT = """
local record = redis.call('GET', KEYS[1])
if record then
  redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
end
return record
"""


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.admission_overhead", description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="redis://127.0.0.1:6379/1", help="Redis URL (default: %(default)s)")
    parser.add_argument("--calls", type=int, default=20_000, help="timed calls per script (default: %(default)s)")
    parser.add_argument(
        "--limit", type=int, default=600, help="requests per window, the default limit (default: %(default)s)"
    )
    parser.add_argument("--window", type=int, default=60, help="window in seconds (default: %(default)s)")
    return parser.parse_args()


def percentile(sorted_values: list[float], fraction: float) -> float:
    """Return the nearest-rank percentile of an ascending list."""
    rank = max(1, round(fraction * len(sorted_values)))
    return sorted_values[rank - 1]


def summary(name: str, durations: list[float]) -> str:
    ordered = sorted(durations)
    return (
        f"  {name:<22} mean {statistics.fmean(ordered):7.1f}  p50 {percentile(ordered, 0.5):7.1f}"
        f"  p99 {percentile(ordered, 0.99):7.1f}"
    )


class Bench:
    def __init__(self, client: redis.asyncio.Redis, limit: int, window: int) -> None:
        self.client = client
        self.prefix = f"connex:bench:{uuid.uuid4().hex}:"
        self.cache = RedisKeyCache(client, prefix=self.prefix)
        self.admission = RedisAdmission(
            client, self.cache, RateLimitPolicy(limit, window), record_seconds=3600, prefix=self.prefix + "rl:"
        )
        self.authentication_only = client.register_script(AUTHENTICATION_ONLY_SCRIPT)
        self.principal = Principal(
            "key_01JDW8M3R6Q9T2XK5B7N4C1VZE",
            "org_01JB7Q4X9M2K8T5R3N6C1VZD0E",
            frozenset({Scope.PROJECTS_READ}),
            None,
            False,
            None,
        )

    async def load(self, key_hash: str) -> Principal:
        return self.principal

    async def admit(self, key_hash: str) -> None:
        admission = await self.admission.admit(key_hash, 1, self.load)
        if not admission.allowed:
            raise RuntimeError("a timed admission was rejected; lower --calls or raise --limit")

    async def authenticate_only(self, key_hash: str) -> None:
        keys = [self.cache.record_key(key_hash), self.cache.last_used_key]
        record = await self.authentication_only(keys=keys, args=[key_hash, time.time()])
        principal_from_record(record)

    async def evalsha_stats(self) -> tuple[int, int]:
        """Return the server's EVALSHA calls and microseconds so far, from INFO commandstats."""
        stats = (await self.client.info("commandstats")).get("cmdstat_evalsha", {"calls": 0, "usec": 0})
        return int(stats["calls"]), int(stats["usec"])

    async def time_calls(self, calls: int, limit: int) -> dict[str, tuple[list[float], float]]:
        """Time both scripts in alternating blocks; each key ends with at most ``limit`` entries.

        Returns, per script, the round-trip times and the mean time Redis spent in one
        EVALSHA, both in microseconds. The Redis figure counts every client's EVALSHA,
        so it is only meaningful on a Redis that nothing else uses meanwhile.
        """
        key_hashes = [uuid.uuid4().hex * 2 for _ in range(max(1, -(-calls // limit)))]
        for key_hash in key_hashes:
            await self.admission.admit(key_hash, 0, self.load)  # caches the record, records nothing
        scripts = {"with the limit": self.admit, "authentication only": self.authenticate_only}
        durations: dict[str, list[float]] = {name: [] for name in scripts}
        server_time = {name: [0, 0] for name in scripts}
        block = 500
        for start in range(0, calls, block):
            for name, call in scripts.items():
                calls_before, usec_before = await self.evalsha_stats()
                for index in range(start, min(start + block, calls)):
                    key_hash = key_hashes[index % len(key_hashes)]
                    began = time.perf_counter_ns()
                    await call(key_hash)
                    durations[name].append((time.perf_counter_ns() - began) / 1000)
                calls_after, usec_after = await self.evalsha_stats()
                server_time[name][0] += calls_after - calls_before
                server_time[name][1] += usec_after - usec_before
        return {
            name: (durations[name], server_time[name][1] / max(server_time[name][0], 1)) for name in scripts
        }

    async def memory_of_one_key(self, limit: int) -> dict[str, int]:
        """Admit ``limit`` requests for one fresh key and return MEMORY USAGE of its keys."""
        key_hash = uuid.uuid4().hex * 2
        for _ in range(limit):
            await self.admit(key_hash)
        log_key = self.admission.log_key(key_hash)
        sizes = {
            "cached record": await self.client.memory_usage(self.cache.record_key(key_hash), samples=0),
            "sliding log": await self.client.memory_usage(log_key, samples=0),
            "sequence counter": await self.client.memory_usage(f"{log_key}:seq", samples=0),
        }
        sizes["log entries"] = await self.client.zcard(log_key)
        return sizes

    async def last_used_field_bytes(self, fields: int = 1000) -> float:
        """Return the bytes one key adds to the hash of last-use times, averaged over ``fields`` keys."""
        hash_key = self.prefix + "last-used-sample"
        for _ in range(fields):
            await self.client.hset(hash_key, uuid.uuid4().hex * 2, f"{time.time():.6f}")
        return await self.client.memory_usage(hash_key, samples=0) / fields

    async def delete_keys(self) -> None:
        keys = [key async for key in self.client.scan_iter(match=f"{self.prefix}*", count=1000)]
        for start in range(0, len(keys), 1000):
            await self.client.delete(*keys[start : start + 1000])


def time_usage_meter(calls: int = 200_000) -> tuple[float, int, int]:
    """Time UsageMeter.record for one key with latencies from 2 to 7 ms.

    Returns the microseconds per call, the latency buckets used and the hash fields
    that the key's counts take in one flush.
    """
    meter = UsageMeter(clock=lambda: 1_800_000_000.0)
    began = time.perf_counter_ns()
    for index in range(calls):
        meter.record("key_01JDW8M3R6Q9T2XK5B7N4C1VZE", "org_01JB7Q4X9M2K8T5R3N6C1VZD0E", 200, 0.002 + index % 50 / 10_000)
    per_call = (time.perf_counter_ns() - began) / 1000 / calls
    batch = meter.drain()
    (counts,) = batch.values()
    return per_call, len(counts.latency), len(batch_to_fields(batch))


async def main() -> None:
    args = parse_args()
    client = redis.asyncio.from_url(args.url, retry=Retry(NoBackoff(), 0), socket_timeout=5.0)
    bench = Bench(client, args.limit, args.window)
    try:
        timings = await bench.time_calls(args.calls, args.limit)
        memory = await bench.memory_of_one_key(args.limit)
        field_bytes = await bench.last_used_field_bytes()
        server = await client.info("server")
        encoding = await client.config_get("zset-max-listpack-entries")
    finally:
        await bench.delete_keys()
        await client.aclose()
    meter_us, meter_buckets, meter_fields = time_usage_meter()

    print(f"redis {server['redis_version']} at {args.url}, zset-max-listpack-entries {encoding}")
    print(f"admission round trip over {args.calls} sequential calls per script (microseconds):")
    for name, (durations, server_us) in timings.items():
        print(summary(name, durations) + f"  in Redis {server_us:5.1f}")
    with_limit, with_limit_server = timings["with the limit"]
    without_limit, without_limit_server = timings["authentication only"]
    mean_overhead = statistics.fmean(with_limit) - statistics.fmean(without_limit)
    median_overhead = statistics.median(with_limit) - statistics.median(without_limit)
    print(
        f"  limiter overhead: mean {mean_overhead:.1f}, median {median_overhead:.1f},"
        f" of which in Redis {with_limit_server - without_limit_server:.1f}"
    )
    print(f"usage metering in process: {meter_us:.2f} microseconds per request recorded;")
    print(
        f"  one key whose latencies fall in {meter_buckets} buckets flushes as {meter_fields} hash fields"
    )
    print(f"memory of one key after {args.limit} requests in a {args.window} s window (bytes):")
    total = memory["cached record"] + memory["sliding log"] + memory["sequence counter"] + field_bytes
    print(
        f"  sliding log {memory['sliding log']} ({memory['log entries']} entries,"
        f" {memory['sliding log'] / memory['log entries']:.1f} per entry),"
        f" sequence counter {memory['sequence counter']},"
        f" cached record {memory['cached record']}, last-use hash field about {field_bytes:.0f}"
    )
    print(f"  total about {total:.0f}")


if __name__ == "__main__":
    asyncio.run(main())
