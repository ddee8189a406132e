"""Per-key rate limits on the API paths: headers, 429s, windows, revocation and Redis outages.

Every test that takes ``client`` runs four times: with the limiter in Redis and in
process, each on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import redis.asyncio
import redis.exceptions
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from sqlalchemy import event, update

from connex.admission import RateLimitPolicy, RedisAdmission
from connex.app import build_services, create_app
from connex.auth import Principal, RedisKeyCache
from connex.context import Services
from connex.models import ApiKey
from connex.settings import Settings
from tests.conftest import Caller, KeyFactory, graphql, make_settings

LIMIT = 5
RATE_LIMIT_HEADERS = ("ratelimit-policy", "ratelimit", "x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset")
RATELIMIT_FIELD = re.compile(r'^"default";r=(\d+);t=(\d+)$')
SET_LIMIT = """
mutation($id: ID!, $limit: Int) {
  setApiKeyRateLimit(input: {id: $id, rateLimitPerMinute: $limit}) { id rateLimitPerMinute }
}"""


@pytest.fixture(params=["redis", "memory"])
def backend_redis_url(request: pytest.FixtureRequest) -> str | None:
    return request.getfixturevalue("redis_url") if request.param == "redis" else None


@pytest.fixture
async def settings(database_url: str, backend_redis_url: str | None) -> Settings:
    return make_settings(database_url, backend_redis_url, rate_limit_per_minute=LIMIT)


@contextlib.asynccontextmanager
async def serve(settings: Settings) -> AsyncIterator[tuple[Services, httpx.AsyncClient]]:
    """Run another app on the same database and Redis, with its own settings."""
    services = build_services(settings)
    app = create_app(settings, services)
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://connex.test") as client:
            yield services, client
    finally:
        if services.redis is not None:
            await services.redis.aclose()
        await services.db.dispose()


def remaining_and_reset(response: httpx.Response) -> tuple[int, int]:
    found = RATELIMIT_FIELD.match(response.headers["ratelimit"])
    assert found, response.headers["ratelimit"]
    return int(found[1]), int(found[2])


async def get_projects(client: httpx.AsyncClient, caller: Caller) -> httpx.Response:
    return await client.get("/v2/projects", headers=caller.headers)


async def test_headers_count_down_to_429(client: httpx.AsyncClient, partner: Caller) -> None:
    for expected_remaining in range(LIMIT - 1, -1, -1):
        before = time.time()
        response = await get_projects(client, partner)
        assert response.status_code == 200
        assert response.headers["ratelimit-policy"] == f'"default";q={LIMIT};w=60'
        remaining, reset = remaining_and_reset(response)
        assert remaining == expected_remaining
        assert 1 <= reset <= 60
        assert response.headers["x-ratelimit-limit"] == str(LIMIT)
        assert response.headers["x-ratelimit-remaining"] == str(expected_remaining)
        reset_at = int(response.headers["x-ratelimit-reset"])
        assert before - 1 <= reset_at - reset <= time.time() + 1

    rejected = await get_projects(client, partner)
    assert rejected.status_code == 429
    assert rejected.headers["content-type"] == "application/problem+json"
    body = rejected.json()
    assert body["status"] == 429
    assert body["code"] == "RATE_LIMITED"
    assert f"rate limit of {LIMIT} per 60 s" in body["detail"]
    retry_after = int(rejected.headers["retry-after"])
    assert 1 <= retry_after <= 60
    assert rejected.headers["ratelimit-policy"] == f'"default";q={LIMIT};w=60'
    assert remaining_and_reset(rejected) == (0, retry_after)
    assert rejected.headers["x-ratelimit-remaining"] == "0"


async def test_every_authenticated_status_has_headers(client: httpx.AsyncClient, make_key: KeyFactory) -> None:
    caller = await make_key("events:read")
    forbidden = await client.get("/v2/projects", headers=caller.headers)
    not_found = await client.get("/v2/events/evt_missing", headers=caller.headers)
    invalid = await client.get("/v2/events", params={"limit": "many"}, headers=caller.headers)

    assert [forbidden.status_code, not_found.status_code, invalid.status_code] == [403, 404, 422]
    remaining = [remaining_and_reset(response)[0] for response in (forbidden, not_found, invalid)]
    assert remaining == [LIMIT - 1, LIMIT - 2, LIMIT - 3]


async def test_unauthenticated_requests_are_not_limited(client: httpx.AsyncClient, partner: Caller) -> None:
    for _ in range(LIMIT + 2):
        response = await client.get("/v2/projects", headers={"Authorization": "Bearer cnx_wrong"})
        assert response.status_code == 401
        for name in RATE_LIMIT_HEADERS:
            assert name not in response.headers

    assert remaining_and_reset(await get_projects(client, partner))[0] == LIMIT - 1


async def test_key_limit_overrides_default(client: httpx.AsyncClient, make_key: KeyFactory) -> None:
    caller = await make_key("projects:read", rate_limit_per_minute=2)
    statuses = [(await get_projects(client, caller)).status_code for _ in range(3)]

    assert statuses == [200, 200, 429]
    response = await get_projects(client, caller)
    assert response.headers["ratelimit-policy"] == '"default";q=2;w=60'


async def test_limits_are_per_key(client: httpx.AsyncClient, make_key: KeyFactory) -> None:
    first = await make_key("projects:read")
    second = await make_key("projects:read")
    for _ in range(LIMIT):
        assert (await get_projects(client, first)).status_code == 200

    assert (await get_projects(client, first)).status_code == 429
    assert remaining_and_reset(await get_projects(client, second))[0] == LIMIT - 1


async def test_graphql_requests_share_the_budget(client: httpx.AsyncClient, partner: Caller) -> None:
    assert remaining_and_reset(await get_projects(client, partner))[0] == LIMIT - 1
    response = await client.post("/graphql", json={"query": "{ organizations { id } }"}, headers=partner.headers)
    assert response.status_code == 200
    assert remaining_and_reset(response)[0] == LIMIT - 2
    assert remaining_and_reset(await client.get("/v1/projects", headers=partner.headers))[0] == LIMIT - 3


async def test_rejections_consume_no_budget(database_url: str, backend_redis_url: str | None, partner: Caller) -> None:
    settings = make_settings(database_url, backend_redis_url, rate_limit_per_minute=3, rate_limit_window_seconds=2)
    async with serve(settings) as (_, client):
        started = time.monotonic()
        assert [(await get_projects(client, partner)).status_code for _ in range(3)] == [200, 200, 200]
        # Rejected requests late in the window would still be in the next one if they counted.
        await asyncio.sleep(max(0.0, started + 1.5 - time.monotonic()))
        assert {(await get_projects(client, partner)).status_code for _ in range(10)} == {429}

        await asyncio.sleep(max(0.0, started + 2.2 - time.monotonic()))
        remaining = [remaining_and_reset(await get_projects(client, partner))[0] for _ in range(3)]
        assert remaining == [2, 1, 0]


async def test_window_slides_one_request_at_a_time(
    database_url: str, backend_redis_url: str | None, partner: Caller
) -> None:
    settings = make_settings(database_url, backend_redis_url, rate_limit_per_minute=2, rate_limit_window_seconds=2)
    async with serve(settings) as (_, client):
        first_sent = time.monotonic()
        assert (await get_projects(client, partner)).status_code == 200
        await asyncio.sleep(1.0)
        second_sent = time.monotonic()
        assert (await get_projects(client, partner)).status_code == 200
        assert (await get_projects(client, partner)).status_code == 429

        # The first request has left the window; the second is still in it.
        await asyncio.sleep(max(0.0, first_sent + 2.15 - time.monotonic()))
        assert (await get_projects(client, partner)).status_code == 200
        assert time.monotonic() < second_sent + 2.0
        assert (await get_projects(client, partner)).status_code == 429


async def test_retry_after_matches_returning_budget(
    database_url: str, backend_redis_url: str | None, partner: Caller
) -> None:
    settings = make_settings(database_url, backend_redis_url, rate_limit_per_minute=1, rate_limit_window_seconds=3)
    async with serve(settings) as (_, client):
        admitted_sent = time.monotonic()
        assert (await get_projects(client, partner)).status_code == 200
        rejected = await get_projects(client, partner)
        rejected_received = time.monotonic()
        assert rejected.status_code == 429
        retry_after = int(rejected.headers["retry-after"])
        assert retry_after == 3

        # The budget returns 3 s after the admission: a second before Retry-After ends
        # it is still used up, and once Retry-After has passed it is back.
        await asyncio.sleep(max(0.0, admitted_sent + retry_after - 1.3 - time.monotonic()))
        early = await get_projects(client, partner)
        assert early.status_code == 429
        assert 1 <= int(early.headers["retry-after"]) <= 2

        await asyncio.sleep(max(0.0, rejected_received + retry_after - time.monotonic()))
        assert (await get_projects(client, partner)).status_code == 200


async def test_rate_limit_change_applies_next_request(
    client: httpx.AsyncClient, admin: Caller, partner: Caller
) -> None:
    assert (await get_projects(client, partner)).headers["x-ratelimit-limit"] == str(LIMIT)

    changed = await graphql(client, admin, SET_LIMIT, id=partner.key_id, limit=2)
    assert changed["data"]["setApiKeyRateLimit"]["rateLimitPerMinute"] == 2
    response = await get_projects(client, partner)
    assert response.headers["ratelimit-policy"] == '"default";q=2;w=60'
    assert remaining_and_reset(response)[0] == 0
    assert (await get_projects(client, partner)).status_code == 429

    await graphql(client, admin, SET_LIMIT, id=partner.key_id, limit=None)
    assert (await get_projects(client, partner)).headers["x-ratelimit-limit"] == str(LIMIT)


async def test_partner_cannot_raise_key_limit(client: httpx.AsyncClient, make_key: KeyFactory) -> None:
    manager = await make_key("keys:write", "projects:read", rate_limit_per_minute=1000)
    other = await make_key("projects:read")

    raised = await graphql(client, manager, SET_LIMIT, id=other.key_id, limit=LIMIT + 1)
    assert raised["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    assert f"default of {LIMIT}" in raised["errors"][0]["message"]

    lowered = await graphql(client, manager, SET_LIMIT, id=other.key_id, limit=LIMIT - 1)
    assert lowered["data"]["setApiKeyRateLimit"]["rateLimitPerMinute"] == LIMIT - 1

    invalid = await graphql(client, manager, SET_LIMIT, id=other.key_id, limit=0)
    assert invalid["errors"][0]["extensions"]["errors"][0]["field"] == "input.rateLimitPerMinute"


class RedisCallCounter:
    """Counts the commands an app sends to Redis, by wrapping its client."""

    def __init__(self, client: redis.asyncio.Redis) -> None:
        self.commands: list[str] = []
        original = client.execute_command

        async def counting(*args: Any, **options: Any) -> Any:
            self.commands.append(str(args[0]))
            return await original(*args, **options)

        client.execute_command = counting  # type: ignore[method-assign]


class KeyQueryCounter:
    """Counts SQL statements that read the api_keys table."""

    def __init__(self, services: Services) -> None:
        self.statements: list[str] = []

        def before_execute(_connection: Any, _cursor: Any, statement: str, *_args: Any) -> None:
            if "api_keys" in statement:
                self.statements.append(statement)

        event.listen(services.db.engine.sync_engine, "before_cursor_execute", before_execute)


async def test_cached_key_costs_one_redis_call(
    client: httpx.AsyncClient, services: Services, make_key: KeyFactory
) -> None:
    caller = await make_key("projects:read", rate_limit_per_minute=100)
    assert (await get_projects(client, caller)).status_code == 200
    redis_calls = RedisCallCounter(services.redis) if services.redis is not None else None
    key_queries = KeyQueryCounter(services)

    for _ in range(10):
        assert (await get_projects(client, caller)).status_code == 200
        assert (await client.post("/graphql", json={"query": "{ organizations { id } }"}, headers=caller.headers)).status_code == 200

    assert key_queries.statements == []
    if redis_calls is not None:
        assert redis_calls.commands == ["EVALSHA"] * 20


async def test_revocation_during_reload_is_not_cached(
    client: httpx.AsyncClient, services: Services, admin: Caller, partner: Caller
) -> None:
    """A record read before a revocation committed must not be cached after it."""
    original_load = services.authenticator.load
    revoked = False

    async def load_then_revoke(key_hash: str) -> Principal:
        nonlocal revoked
        principal = await original_load(key_hash)
        if not revoked:
            revoked = True
            async with services.db.transaction() as session:
                await session.execute(
                    update(ApiKey).where(ApiKey.id == partner.key_id).values(revoked_at=datetime.now(UTC))
                )
            await services.authenticator.invalidate(key_hash)
        return principal

    services.authenticator.load = load_then_revoke  # type: ignore[method-assign]
    # This request raced the revocation and may pass; the next one must not.
    assert (await get_projects(client, partner)).status_code == 200
    response = await get_projects(client, partner)
    assert response.status_code == 401
    assert "revoked" in response.json()["detail"]


async def test_revoked_key_gets_401(client: httpx.AsyncClient, admin: Caller, partner: Caller) -> None:
    assert (await get_projects(client, partner)).status_code == 200
    await graphql(client, admin, "mutation($id: ID!) { revokeApiKey(input: {id: $id}) { id } }", id=partner.key_id)

    response = await get_projects(client, partner)
    assert response.status_code == 401
    for name in RATE_LIMIT_HEADERS:
        assert name not in response.headers


def unused_redis_url() -> str:
    """A Redis URL on a local port where nothing listens."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"redis://127.0.0.1:{port}/0"


async def test_unreachable_redis_falls_back_per_process(
    database_url: str, partner: Caller, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    settings = make_settings(database_url, unused_redis_url(), rate_limit_per_minute=3)
    async with serve(settings) as (services, client):
        statuses = [(await get_projects(client, partner)).status_code for _ in range(5)]
        assert statuses == [200, 200, 200, 429, 429]
        assert services.admission.degraded

        response = await get_projects(client, partner)
        assert response.headers["ratelimit-policy"] == '"default";q=3;w=60'
        assert int(response.headers["retry-after"]) >= 1

    switches = [record for record in caplog.records if "key admission falling back" in record.getMessage()]
    assert len(switches) == 1
    assert switches[0].levelno == logging.WARNING
    assert partner.key not in caplog.text


async def test_outage_cache_bounds_revocation_delay(
    database_url: str, admin: Caller, make_key: KeyFactory
) -> None:
    caller = await make_key("projects:read")
    settings = make_settings(database_url, unused_redis_url(), outage_key_cache_seconds=0.5)
    async with serve(settings) as (_, client):
        assert (await get_projects(client, caller)).status_code == 200
        async with serve(make_settings(database_url)) as (_, other_process):
            await graphql(other_process, admin, "mutation($id: ID!) { revokeApiKey(input: {id: $id}) { id } }", id=caller.key_id)

        # Another process revoked the key and could not reach this process's cache.
        assert (await get_projects(client, caller)).status_code == 200
        await asyncio.sleep(0.6)
        assert (await get_projects(client, caller)).status_code == 401


class FailingRedis(redis.asyncio.Redis):
    """Client whose EVALSHA always fails with a chosen error, counting the calls."""

    def __init__(self, error: Exception, url: str) -> None:
        options = redis.asyncio.connection.parse_url(url)
        super().__init__(**options, retry=Retry(NoBackoff(), 0), socket_timeout=5.0)
        self.error = error
        self.evalsha_calls = 0

    async def evalsha(self, *args: Any) -> Any:  # type: ignore[override]
        self.evalsha_calls += 1
        raise self.error


async def never_load(key_hash: str) -> Principal:
    raise AssertionError("the script never answered, so nothing is loaded")


@pytest.mark.parametrize(
    ("error", "expected_calls"),
    [
        (redis.exceptions.TimeoutError("Timeout reading from socket"), 1),
        (redis.exceptions.ConnectionError("Connection reset by peer"), 1),
        (redis.exceptions.NoScriptError("NOSCRIPT No matching script"), 2),
    ],
    ids=["timeout", "connection-error", "noscript"],
)
async def test_admission_retries_only_noscript(redis_url: str, error: Exception, expected_calls: int) -> None:
    client = FailingRedis(error, redis_url)
    admission = RedisAdmission(client, RedisKeyCache(client), RateLimitPolicy(5, 60), record_seconds=60)

    with pytest.raises(type(error)):
        await admission.admit("0" * 64, 1, never_load)
    assert client.evalsha_calls == expected_calls
    await client.aclose()


async def test_admission_rejects_retrying_client(redis_url: str) -> None:
    # redis-py 8.2 gives a client built with Redis(...) 10 retries by default.
    client = redis.asyncio.Redis(**redis.asyncio.connection.parse_url(redis_url))
    with pytest.raises(ValueError, match="without automatic retries"):
        RedisAdmission(client, RedisKeyCache(client), RateLimitPolicy(5, 60), record_seconds=60)
    await client.aclose()


CREATE_KEY = """
mutation($input: CreateApiKeyInput!) {
  createApiKey(input: $input) { secret apiKey { id rateLimitPerMinute } }
}"""


async def test_created_key_limit_applies(
    client: httpx.AsyncClient, admin: Caller, make_key: KeyFactory, organization: Any
) -> None:
    key_input = {"name": "slow", "organizationId": organization.id, "scopes": ["projects:read"]}
    created = await graphql(client, admin, CREATE_KEY, input={**key_input, "rateLimitPerMinute": 2})
    issued = created["data"]["createApiKey"]
    assert issued["apiKey"]["rateLimitPerMinute"] == 2
    headers = {"Authorization": f"Bearer {issued['secret']}"}
    statuses = [(await client.get("/v2/projects", headers=headers)).status_code for _ in range(3)]
    assert statuses == [200, 200, 429]

    manager = await make_key("keys:write", "projects:read")
    raised = await graphql(client, manager, CREATE_KEY, input={**key_input, "rateLimitPerMinute": LIMIT + 1})
    assert raised["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    lowered = await graphql(client, manager, CREATE_KEY, input={**key_input, "rateLimitPerMinute": LIMIT - 1})
    assert lowered["data"]["createApiKey"]["apiKey"]["rateLimitPerMinute"] == LIMIT - 1
