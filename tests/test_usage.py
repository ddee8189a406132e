"""Usage metering: histograms, in-process counts, the Redis buffer, the rollup and the report."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import math
import random
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from connex.admission import Admission
from connex.app import PeriodicJob, build_services, create_app
from connex.auth import Principal
from connex.context import Services
from connex.db import Database
from connex.middleware import ApiKeyMiddleware
from connex.models import UsageCount, UsageLatency
from connex.ratelimit import Decision
from connex.settings import Settings
from connex.usage import histogram, store
from connex.usage.flusher import UsageFlusher
from connex.usage.meter import UsageCounts, UsageKey, UsageMeter
from connex.usage.store import batch_to_fields, fields_to_batch, write_usage
from tests.conftest import Caller, KeyFactory, create_organization, graphql, make_settings
from tests.test_admission import unused_redis_url

USAGE = """
query($from: DateTime!, $to: DateTime!, $granularity: UsageGranularity, $key: ID, $org: ID) {
  usage(from: $from, to: $to, granularity: $granularity, apiKeyId: $key, organizationId: $org) {
    granularity start end apiKeyId organizationId
    buckets { start requests status2xx status4xx status5xx rateLimited errorRate latency { p50Ms p95Ms p99Ms } }
    totals { requests status2xx status4xx status5xx rateLimited errorRate latency { p50Ms p95Ms p99Ms } }
  }
}"""


@pytest.fixture(params=["redis", "memory"])
def backend_redis_url(request: pytest.FixtureRequest) -> str | None:
    return request.getfixturevalue("redis_url") if request.param == "redis" else None


@pytest.fixture
async def settings(database_url: str, backend_redis_url: str | None) -> Settings:
    return make_settings(database_url, backend_redis_url, rate_limit_per_minute=4)


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def today() -> tuple[str, str]:
    now = datetime.now(UTC)
    return iso(now - timedelta(hours=1)), iso(now + timedelta(minutes=1))


async def store_counts(services: Services) -> None:
    """Do what the periodic jobs do: flush this process's counts, then roll up Redis."""
    await services.usage.flush()
    await services.usage.roll_up()


# Histogram.


def exact_percentile(sorted_values: list[float], fraction: float) -> float:
    return sorted_values[max(1, math.ceil(fraction * len(sorted_values))) - 1]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_percentiles_within_two_percent(seed: int) -> None:
    generator = random.Random(seed)
    latencies = [generator.lognormvariate(math.log(20_000), 1.2) for _ in range(50_000)]
    counts: dict[int, int] = {}
    for value in latencies:
        index = histogram.bucket_index(value)
        counts[index] = counts.get(index, 0) + 1

    ordered = sorted(latencies)
    for fraction in (0.5, 0.95, 0.99):
        estimate = histogram.percentile(counts, fraction)
        exact = exact_percentile(ordered, fraction)
        assert estimate is not None
        assert abs(estimate - exact) / exact <= histogram.RELATIVE_ACCURACY + 1e-9, fraction


def test_histograms_merge_exactly() -> None:
    generator = random.Random(7)
    parts = [[histogram.bucket_index(generator.expovariate(1 / 5000)) for _ in range(1000)] for _ in range(3)]
    per_part = [{index: part.count(index) for index in set(part)} for part in parts]
    everything = [index for part in parts for index in part]

    merged = histogram.merge(per_part)
    assert merged == {index: everything.count(index) for index in set(everything)}


def test_bucket_bounds() -> None:
    assert histogram.bucket_index(0.2) == 0
    assert histogram.bucket_index(1.0) == 0
    for value in (1.5, 37.0, 1000.0, 123_456.7, 3.6e9):
        index = histogram.bucket_index(value)
        assert histogram.GAMMA ** (index - 1) < value <= histogram.GAMMA**index
        assert abs(histogram.bucket_value(index) - value) / value <= histogram.RELATIVE_ACCURACY + 1e-12
    assert histogram.percentile({}, 0.5) is None


# In-process counts.


def test_meter_counts_status_classes() -> None:
    meter = UsageMeter(clock=lambda: 120.0)
    for status in (200, 201, 204, 301, 404, 429, 500, 503):
        meter.record("key_a", "org_a", status, 0.010)
    meter.record("key_a", "org_a", 200, 0.020, started_at=185.0)

    batch = meter.drain()
    assert set(batch) == {UsageKey(2, "key_a", "org_a"), UsageKey(3, "key_a", "org_a")}
    counts = batch[UsageKey(2, "key_a", "org_a")]
    assert counts.requests == 8
    assert counts.status_2xx == 3
    assert counts.status_4xx == 2
    assert counts.status_5xx == 2
    assert counts.rate_limited == 1
    assert sum(counts.latency.values()) == 8
    assert meter.drain() == {}


def test_meter_restore_merges() -> None:
    meter = UsageMeter(clock=lambda: 60.0)
    meter.record("key_a", None, 200, 0.001)
    drained = meter.drain()
    meter.record("key_a", None, 404, 0.001)
    meter.restore(drained)

    counts = meter.drain()[UsageKey(1, "key_a", None)]
    assert counts.requests == 2
    assert counts.status_2xx == 1
    assert counts.status_4xx == 1


def test_fields_round_trip() -> None:
    meter = UsageMeter(clock=lambda: 600.0)
    meter.record("key_a", "org_a", 200, 0.004)
    meter.record("key_a", "org_a", 429, 0.0002)
    meter.record("key_admin", None, 500, 1.5)
    batch = meter.drain()

    assert fields_to_batch(batch_to_fields(batch)) == batch
    encoded = {field.encode(): str(value).encode() for field, value in batch_to_fields(batch).items()}
    assert fields_to_batch(encoded) == batch


async def test_failing_app_counted_as_5xx() -> None:
    async def crashing_app(scope: Any, receive: Any, send: Any) -> None:
        raise RuntimeError("handler bug")

    class AlwaysAdmit:
        async def admit(self, key: str, cost: int) -> Any:
            principal = Principal("key_a", "org_a", frozenset(), None, False, None)
            return Admission(principal, Decision(True, 5, 4, 60.0, 60), cost, time.time())

    meter = UsageMeter()
    middleware = ApiKeyMiddleware(crashing_app, AlwaysAdmit(), meter, prefixes=["/v2"])  # type: ignore[arg-type]
    scope = {"type": "http", "path": "/v2/x", "method": "GET", "headers": [(b"authorization", b"Bearer k")]}
    with pytest.raises(RuntimeError):
        await middleware(scope, None, None)  # type: ignore[arg-type]

    (counts,) = meter.drain().values()
    assert counts.requests == 1
    assert counts.status_5xx == 1


# Database writes and the Redis rollup.


def sample_batch(api_key_id: str, organization_id: str | None, minute: int = 29_000_000) -> dict[UsageKey, UsageCounts]:
    counts = UsageCounts(requests=3, status_2xx=2, status_4xx=1, rate_limited=1, latency={100: 2, 150: 1})
    return {UsageKey(minute, api_key_id, organization_id): counts}


async def stored_totals(services: Services, api_key_id: str) -> tuple[int, int, int, dict[int, int]]:
    async with services.db.sessions() as session:
        requests, status_2xx, rate_limited = (
            await session.execute(
                select(
                    func.coalesce(func.sum(UsageCount.requests), 0),
                    func.coalesce(func.sum(UsageCount.status_2xx), 0),
                    func.coalesce(func.sum(UsageCount.rate_limited), 0),
                ).where(UsageCount.api_key_id == api_key_id)
            )
        ).one()
        latency_rows = await session.execute(
            select(UsageLatency.bucket, func.sum(UsageLatency.count))
            .where(UsageLatency.api_key_id == api_key_id)
            .group_by(UsageLatency.bucket)
        )
        latency = {int(bucket): int(count) for bucket, count in latency_rows}
    return int(requests), int(status_2xx), int(rate_limited), latency


async def test_write_usage_adds_counts(services: Services, partner: Caller) -> None:
    batch = sample_batch(partner.key_id, partner.organization_id)
    assert await write_usage(services.db, batch) == 1
    assert await write_usage(services.db, batch) == 1

    assert await stored_totals(services, partner.key_id) == (6, 4, 2, {100: 4, 150: 2})


async def test_rollup_id_applied_once(services: Services, partner: Caller) -> None:
    batch = sample_batch(partner.key_id, partner.organization_id)
    assert await write_usage(services.db, batch, rollup_id="usage_test_batch") == 1
    assert await write_usage(services.db, batch, rollup_id="usage_test_batch") == 0

    assert (await stored_totals(services, partner.key_id))[0] == 3


async def test_counts_of_unknown_keys_dropped(services: Services, partner: Caller) -> None:
    batch = {**sample_batch(partner.key_id, partner.organization_id), **sample_batch("key_gone", None)}
    assert await write_usage(services.db, batch) == 1
    assert (await stored_totals(services, partner.key_id))[0] == 3


@pytest.fixture
async def redis_services(database_url: str, redis_url: str) -> AsyncIterator[Services]:
    services = build_services(make_settings(database_url, redis_url))
    yield services
    await services.redis.aclose()
    await services.db.dispose()


async def test_rollup_sums_processes(services: Services, redis_services: Services, partner: Caller) -> None:
    buffer = redis_services.usage.buffer
    assert buffer is not None
    processes = [UsageFlusher(UsageMeter(), redis_services.db, buffer) for _ in range(3)]
    started_at = time.time()
    for number, flusher in enumerate(processes):
        for _ in range(number + 1):
            flusher.meter.record(partner.key_id, partner.organization_id, 200, 0.003, started_at)
        flusher.meter.record(partner.key_id, partner.organization_id, 429, 0.0001, started_at)
        assert await flusher.flush() == 1

    assert await buffer.roll_up(redis_services.db) == 1
    requests, status_2xx, rate_limited, latency = await stored_totals(services, partner.key_id)
    assert (requests, status_2xx, rate_limited) == (9, 6, 3)
    assert sum(latency.values()) == 9
    assert await buffer.roll_up(redis_services.db) == 0
    assert not await redis_services.redis.exists(buffer.pending_key, buffer.batch_key, buffer.batch_id_key)


async def test_rollup_waits_for_lock(redis_services: Services, partner: Caller) -> None:
    buffer = redis_services.usage.buffer
    assert buffer is not None
    await buffer.add(sample_batch(partner.key_id, partner.organization_id))
    await redis_services.redis.set(buffer.lock_key, "another-process", ex=60)

    assert await buffer.roll_up(redis_services.db) is None
    assert await redis_services.redis.exists(buffer.pending_key)
    assert await redis_services.redis.get(buffer.lock_key) == b"another-process"


async def test_failed_rollup_retried_once(
    services: Services, redis_services: Services, partner: Caller, monkeypatch: pytest.MonkeyPatch
) -> None:
    buffer = redis_services.usage.buffer
    assert buffer is not None
    await buffer.add(sample_batch(partner.key_id, partner.organization_id))

    async def failing_write(*args: Any, **kwargs: Any) -> int:
        raise ConnectionError("database unreachable")

    monkeypatch.setattr(store, "write_usage", failing_write)
    with pytest.raises(ConnectionError):
        await buffer.roll_up(redis_services.db)
    monkeypatch.undo()

    # Counts that arrive meanwhile wait in a new pending hash for the next rollup.
    await buffer.add(sample_batch(partner.key_id, partner.organization_id))
    assert await buffer.roll_up(redis_services.db) == 1
    assert (await stored_totals(services, partner.key_id))[0] == 3
    assert await buffer.roll_up(redis_services.db) == 1
    assert (await stored_totals(services, partner.key_id))[0] == 6
    assert await buffer.roll_up(redis_services.db) == 0


async def test_rollup_after_crash_adds_batch_once(
    services: Services, redis_services: Services, partner: Caller
) -> None:
    """A rollup that committed but died before deleting its batch leaves it for the next one."""
    buffer = redis_services.usage.buffer
    assert buffer is not None
    await buffer.add(sample_batch(partner.key_id, partner.organization_id))
    claim = redis_services.redis.register_script(store._CLAIM_BATCH)
    batch_id = (await claim(keys=[buffer.pending_key, buffer.batch_key, buffer.batch_id_key], args=["usage_x"])).decode()
    fields = await redis_services.redis.hgetall(buffer.batch_key)
    await write_usage(redis_services.db, fields_to_batch(fields), rollup_id=batch_id)

    assert await buffer.roll_up(redis_services.db) == 1
    assert (await stored_totals(services, partner.key_id))[0] == 3
    assert not await redis_services.redis.exists(buffer.batch_key)


async def test_flush_writes_database_while_redis_down(
    services: Services, database_url: str, partner: Caller, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    down = build_services(make_settings(database_url, unused_redis_url()))
    try:
        flusher = down.usage
        for _ in range(3):
            flusher.meter.record(partner.key_id, partner.organization_id, 200, 0.002)
            assert await flusher.flush() == 1
    finally:
        await down.redis.aclose()
        await down.db.dispose()

    assert (await stored_totals(services, partner.key_id))[0] == 3
    switches = [record for record in caplog.records if "usage metering falling back" in record.getMessage()]
    assert len(switches) == 1


async def test_flush_keeps_counts_when_nothing_accepts() -> None:
    unreachable = Database("postgresql+asyncpg://postgres@127.0.0.1:1/connex")
    flusher = UsageFlusher(UsageMeter(), unreachable)
    try:
        for _ in range(2):
            flusher.meter.record("key_a", None, 200, 0.001, started_at=600.0)
            with pytest.raises(OSError):
                await flusher.flush()
    finally:
        await unreachable.dispose()

    (counts,) = flusher.meter.drain().values()
    assert counts.requests == 2


# The usage report, end to end.


async def test_usage_counts_requests_by_status(
    client: httpx.AsyncClient, services: Services, admin: Caller, make_key: KeyFactory
) -> None:
    caller = await make_key("projects:read", "usage:read")
    statuses = [
        (await client.get("/v2/projects", headers=caller.headers)).status_code,
        (await client.get("/v2/projects/proj_missing", headers=caller.headers)).status_code,
        (await client.get("/v2/events", headers=caller.headers)).status_code,
        (await client.get("/v2/projects", headers=caller.headers)).status_code,
        (await client.get("/v2/projects", headers=caller.headers)).status_code,
        (await client.get("/v2/projects", headers=caller.headers)).status_code,
        (await client.get("/v2/projects", headers={"Authorization": "Bearer cnx_bad"})).status_code,
    ]
    assert statuses == [200, 404, 403, 200, 429, 429, 401]
    await store_counts(services)

    start, end = today()
    body = await graphql(client, admin, USAGE, **{"from": start, "to": end, "granularity": "MINUTE", "key": caller.key_id})
    usage = body["data"]["usage"]
    totals = usage["totals"]
    assert totals["requests"] == 6
    assert totals["status2xx"] == 2
    assert totals["status4xx"] == 4
    assert totals["status5xx"] == 0
    assert totals["rateLimited"] == 2
    assert totals["errorRate"] == pytest.approx(4 / 6)
    assert 0 < totals["latency"]["p50Ms"] <= totals["latency"]["p95Ms"] <= totals["latency"]["p99Ms"]
    assert usage["apiKeyId"] == caller.key_id
    assert usage["organizationId"] == caller.organization_id
    assert usage["granularity"] == "MINUTE"
    minutes = (datetime.fromisoformat(usage["end"]) - datetime.fromisoformat(usage["start"])) // timedelta(minutes=1)
    assert len(usage["buckets"]) == minutes
    assert minutes in (61, 62)
    assert sum(bucket["requests"] for bucket in usage["buckets"]) == 6
    assert next(bucket["latency"] for bucket in usage["buckets"] if bucket["requests"] == 0) is None


async def test_graphql_requests_metered(
    client: httpx.AsyncClient, services: Services, admin: Caller, make_key: KeyFactory
) -> None:
    caller = await make_key("projects:read")
    query = {"query": "{ projects(first: 5) { nodes { id } } }"}
    assert (await client.post("/graphql", json=query, headers=caller.headers)).status_code == 200
    assert (await client.get("/graphql", params=query, headers=caller.headers)).status_code == 200
    assert (await client.post("/graphql", json={"query": "{ nope }"}, headers=caller.headers)).status_code == 400
    await store_counts(services)

    start, end = today()
    body = await graphql(client, admin, USAGE, **{"from": start, "to": end, "key": caller.key_id})
    totals = body["data"]["usage"]["totals"]
    assert totals["requests"] == 3
    assert totals["status2xx"] == 2
    assert totals["status4xx"] == 1


async def test_usage_of_organization(
    client: httpx.AsyncClient, services: Services, admin: Caller, make_key: KeyFactory
) -> None:
    first = await make_key("projects:read")
    second = await make_key("projects:read")
    elsewhere = await create_organization(services, "elsewhere")
    stranger = await make_key("projects:read", organization_id=elsewhere.id)
    for caller in (first, second, second, stranger):
        assert (await client.get("/v2/projects", headers=caller.headers)).status_code == 200
    await store_counts(services)

    start, end = today()
    body = await graphql(client, admin, USAGE, **{"from": start, "to": end, "org": first.organization_id})
    usage = body["data"]["usage"]
    assert usage["totals"]["requests"] == 3
    assert usage["granularity"] == "HOUR"
    hours = (datetime.fromisoformat(usage["end"]) - datetime.fromisoformat(usage["start"])) // timedelta(hours=1)
    assert len(usage["buckets"]) == hours
    assert hours in (2, 3)
    assert usage["apiKeyId"] is None


async def test_partner_reads_own_usage_over_rest(
    client: httpx.AsyncClient, services: Services, make_key: KeyFactory
) -> None:
    reader = await make_key("usage:read", "projects:read")
    for _ in range(2):
        assert (await client.get("/v2/projects", headers=reader.headers)).status_code == 200
    await store_counts(services)
    start, end = today()

    v2 = await client.get("/v2/usage", params={"from": start, "to": end, "granularity": "day"}, headers=reader.headers)
    assert v2.status_code == 200, v2.text
    body = v2.json()
    assert body["granularity"] == "day"
    assert body["organization_id"] == reader.organization_id
    assert body["totals"]["requests"] == 2
    assert body["totals"]["status_2xx"] == 2
    assert body["totals"]["error_rate"] == 0
    assert set(body["totals"]["latency"]) == {"p50_ms", "p95_ms", "p99_ms"}
    assert body["start"].endswith("T00:00:00Z")

    await store_counts(services)
    v1 = await client.get(
        "/v1/usage", params={"from": start, "to": end, "api_key_id": reader.key_id}, headers=reader.headers
    )
    assert v1.status_code == 200, v1.text
    assert isinstance(v1.json()["start"], int)
    assert v1.json()["totals"]["requests"] == 3


async def test_usage_needs_scope_and_organization(
    client: httpx.AsyncClient, services: Services, admin: Caller, make_key: KeyFactory
) -> None:
    reader = await make_key("usage:read")
    elsewhere = await create_organization(services, "elsewhere")
    stranger = await make_key("projects:read", organization_id=elsewhere.id)
    params = dict(zip(("from", "to"), today(), strict=True))

    without_scope = await client.get("/v2/usage", params=params, headers=stranger.headers)
    assert without_scope.status_code == 403
    other_org = await client.get("/v2/usage", params={**params, "organization_id": elsewhere.id}, headers=reader.headers)
    assert other_org.status_code == 403
    other_key = await client.get("/v2/usage", params={**params, "api_key_id": stranger.key_id}, headers=reader.headers)
    assert other_key.status_code == 403
    admin_key = await client.get("/v2/usage", params={**params, "api_key_id": admin.key_id}, headers=reader.headers)
    assert admin_key.status_code == 403
    missing_key = await client.get("/v2/usage", params={**params, "api_key_id": "key_missing"}, headers=reader.headers)
    assert missing_key.status_code == 404

    no_organization = await graphql(client, admin, USAGE, **{"from": params["from"], "to": params["to"]})
    assert no_organization["errors"][0]["extensions"]["code"] == "VALIDATION_FAILED"


@pytest.mark.parametrize(
    ("granularity", "span", "field_message"),
    [
        ("minute", timedelta(days=2), "2880 minute buckets, more than 1440"),
        ("hour", timedelta(days=61), "1464 hour buckets, more than 1440"),
        ("hour", timedelta(0), "must be later than from"),
    ],
)
async def test_usage_range_validated(
    client: httpx.AsyncClient, make_key: KeyFactory, granularity: str, span: timedelta, field_message: str
) -> None:
    reader = await make_key("usage:read")
    start = datetime(2026, 1, 1, tzinfo=UTC)
    params = {"from": iso(start), "to": iso(start + span), "granularity": granularity}
    response = await client.get("/v2/usage", params=params, headers=reader.headers)

    assert response.status_code == 422
    error = response.json()["errors"][0]
    assert error["field"] == "to"
    assert field_message in error["message"]


@contextlib.asynccontextmanager
async def running(settings: Settings) -> AsyncIterator[tuple[Services, httpx.AsyncClient]]:
    """Run an app with its lifespan, so its periodic jobs run as under ``connex serve``."""
    services = build_services(settings)
    app = create_app(settings, services)
    try:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://connex.test") as client:
                yield services, client
    finally:
        gc.unfreeze()


async def test_usage_appears_without_manual_flush(
    services: Services, database_url: str, backend_redis_url: str | None, admin: Caller, partner: Caller
) -> None:
    settings = make_settings(database_url, backend_redis_url, usage_flush_seconds=0.2, usage_rollup_seconds=0.3)
    async with running(settings) as (_, client):
        for _ in range(3):
            assert (await client.get("/v2/projects", headers=partner.headers)).status_code == 200
        start, end = today()
        deadline = time.monotonic() + 15
        requests = 0
        while time.monotonic() < deadline and requests < 3:
            await asyncio.sleep(0.2)
            body = await graphql(client, admin, USAGE, **{"from": start, "to": end, "key": partner.key_id})
            requests = body["data"]["usage"]["totals"]["requests"]

    assert requests == 3


async def test_periodic_job_logs_failure_streak_once(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="connex.app")
    outcomes = [ConnectionError("down")] * 3 + [None]

    async def job() -> None:
        outcome = outcomes.pop(0)
        if outcome is not None:
            raise outcome

    periodic = PeriodicJob("usage flush", 1.0, job)
    for _ in range(4):
        await periodic.run_once()

    messages = [(record.levelno, record.getMessage()) for record in caplog.records if record.name == "connex.app"]
    assert messages == [
        (logging.WARNING, "usage flush failed (1 in a row)"),
        (logging.INFO, "usage flush succeeded after 3 failures"),
    ]
