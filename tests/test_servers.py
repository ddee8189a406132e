"""Several ``connex serve`` processes sharing PostgreSQL and Redis, as in production.

These tests start real servers on free local ports: the rate limit must stay exact
across processes, usage must reach the ``usage`` query within 15 s, and a Redis
restart during traffic must cost no request. The restart test runs its own
redis-server, so it never touches the shared one.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio
from sqlalchemy import select, text

from connex.apikeys import issue_key
from connex.app import build_services
from connex.context import Services
from connex.keys import hash_key
from connex.models import ApiKey
from connex.scopes import parse_scopes
from tests.conftest import SECRET_KEY, TABLES, create_organization, make_settings

REPOSITORY = Path(__file__).resolve().parent.parent
SERVER_START_SECONDS = 60
USAGE_DEADLINE_SECONDS = 15
BURST = 200
BURST_LIMIT = 37
USAGE = """
query($from: DateTime!, $to: DateTime!, $key: ID!) {
  usage(from: $from, to: $to, granularity: MINUTE, apiKeyId: $key) {
    totals { requests status2xx status4xx status5xx rateLimited }
  }
}"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    port: int
    log_path: Path

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def start_server(environment: dict[str, str], log_dir: Path, name: str) -> Server:
    port = free_port()
    log_path = log_dir / f"{name}.log"
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "connex.cli", "serve", "--port", str(port)],
            cwd=REPOSITORY,
            env=environment,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    return Server(process, port, log_path)


def stop_server(server: Server) -> None:
    if server.process.poll() is None:
        server.process.terminate()
        try:
            server.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.process.kill()
            server.process.wait(timeout=5)


async def wait_until_ready(servers: list[Server]) -> None:
    deadline = time.monotonic() + SERVER_START_SECONDS
    async with httpx.AsyncClient(timeout=2.0) as client:
        for server in servers:
            while True:
                if server.process.poll() is not None:
                    pytest.fail(f"server on port {server.port} exited:\n{server.log()}")
                with contextlib.suppress(httpx.TransportError):
                    if (await client.get(server.base_url + "/healthz")).status_code == 200:
                        break
                if time.monotonic() > deadline:
                    pytest.fail(f"server on port {server.port} did not start:\n{server.log()}")
                await asyncio.sleep(0.1)


def server_environment(database_url: str, redis_url: str, **settings: str) -> dict[str, str]:
    environment = {key: value for key, value in os.environ.items() if not key.startswith("CONNEX_")}
    environment.update(
        {
            "CONNEX_DATABASE_URL": database_url,
            "CONNEX_REDIS_URL": redis_url,
            "CONNEX_SECRET_KEY": SECRET_KEY,
            "CONNEX_LOG_LEVEL": "INFO",
            "CONNEX_USAGE_FLUSH_SECONDS": "0.5",
            "CONNEX_USAGE_ROLLUP_SECONDS": "1",
        }
    )
    environment.update({f"CONNEX_{name.upper()}": value for name, value in settings.items()})
    return environment


@contextlib.asynccontextmanager
async def running_servers(count: int, environment: dict[str, str], log_dir: Path) -> AsyncIterator[list[Server]]:
    servers = [start_server(environment, log_dir, f"server-{index}") for index in range(count)]
    try:
        await wait_until_ready(servers)
        yield servers
    finally:
        for server in servers:
            stop_server(server)


@pytest.fixture
async def shared_services(postgresql_url: str, redis_url: str) -> AsyncIterator[Services]:
    """Services on the test PostgreSQL and Redis, emptied, for seeding keys."""
    services = build_services(make_settings(postgresql_url, redis_url))
    async with services.db.engine.begin() as connection:
        await connection.execute(text(f"TRUNCATE {', '.join(TABLES)} CASCADE"))
    await services.redis.flushdb()
    yield services
    await services.redis.aclose()
    await services.db.dispose()


async def new_key(services: Services, organization_id: str | None, *scopes: str, limit: int | None = None) -> str:
    async with services.db.transaction() as session:
        _, key = await issue_key(
            session,
            services.settings.secret_key_bytes(),
            name="server test",
            organization_id=organization_id,
            scopes=parse_scopes(scopes),
            rate_limit_per_minute=limit,
        )
    return str(key)


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def usage_totals(client: httpx.AsyncClient, server: Server, admin_key: str, key_id: str) -> dict[str, int]:
    now = time.time()
    variables = {
        "from": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now - 3600)),
        "to": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now + 120)),
        "key": key_id,
    }
    response = await client.post(
        server.base_url + "/graphql", json={"query": USAGE, "variables": variables}, headers=bearer(admin_key)
    )
    assert response.status_code == 200, response.text
    return response.json()["data"]["usage"]["totals"]


async def wait_for_usage(
    client: httpx.AsyncClient, server: Server, admin_key: str, key_id: str, requests: int
) -> tuple[dict[str, int], float]:
    """Poll the usage query until it counts ``requests``; return the totals and the wait."""
    started = time.monotonic()
    totals: dict[str, int] = {}
    while time.monotonic() - started < USAGE_DEADLINE_SECONDS + 5:
        totals = await usage_totals(client, server, admin_key, key_id)
        if totals["requests"] >= requests:
            break
        await asyncio.sleep(0.25)
    return totals, time.monotonic() - started


async def key_id_of(services: Services, key: str) -> str:
    async with services.db.sessions() as session:
        statement = select(ApiKey.id).where(ApiKey.key_hash == hash_key(SECRET_KEY.encode(), key))
        return (await session.execute(statement)).scalar_one()


async def test_processes_admit_exactly_limit(
    shared_services: Services, postgresql_url: str, redis_url: str, tmp_path: Path
) -> None:
    organization = await create_organization(shared_services, "burst")
    limited = await new_key(shared_services, organization.id, "projects:read", limit=BURST_LIMIT)
    admin = await new_key(shared_services, None, "admin")

    async with running_servers(3, server_environment(postgresql_url, redis_url), tmp_path) as servers:
        limits = httpx.Limits(max_connections=BURST + 10, max_keepalive_connections=BURST + 10)
        async with httpx.AsyncClient(timeout=30.0, limits=limits) as client:
            requests = [
                client.get(servers[index % len(servers)].base_url + "/v2/projects", headers=bearer(limited))
                for index in range(BURST)
            ]
            responses = await asyncio.gather(*requests)

            statuses = Counter(response.status_code for response in responses)
            assert statuses == {200: BURST_LIMIT, 429: BURST - BURST_LIMIT}
            admitted_remaining = sorted(
                int(response.headers["x-ratelimit-remaining"]) for response in responses if response.status_code == 200
            )
            assert admitted_remaining == list(range(BURST_LIMIT))
            for response in responses:
                assert response.headers["ratelimit-policy"] == f'"default";q={BURST_LIMIT};w=60'

            key_id = await key_id_of(shared_services, limited)
            totals, waited = await wait_for_usage(client, servers[0], admin, key_id, BURST)

    assert waited < USAGE_DEADLINE_SECONDS
    assert totals["requests"] == BURST
    assert totals["status2xx"] == BURST_LIMIT
    assert totals["status4xx"] == BURST - BURST_LIMIT
    assert totals["rateLimited"] == BURST - BURST_LIMIT
    assert totals["status5xx"] == 0


async def test_usage_matches_requests_by_status(
    shared_services: Services, postgresql_url: str, redis_url: str, tmp_path: Path
) -> None:
    organization = await create_organization(shared_services, "classes")
    caller = await new_key(shared_services, organization.id, "projects:read", limit=1000)
    admin = await new_key(shared_services, None, "admin")
    paths = ["/v2/projects"] * 7 + ["/v1/projects/proj_missing"] * 4 + ["/v2/events"] * 3

    environment = server_environment(postgresql_url, redis_url)
    async with running_servers(2, environment, tmp_path) as servers, httpx.AsyncClient(timeout=30.0) as client:
        responses = [
            await client.get(servers[index % 2].base_url + path, headers=bearer(caller))
            for index, path in enumerate(paths)
        ]
        sent = Counter(response.status_code for response in responses)
        assert sent == {200: 7, 404: 4, 403: 3}

        key_id = await key_id_of(shared_services, caller)
        totals, waited = await wait_for_usage(client, servers[1], admin, key_id, len(paths))

    assert waited < USAGE_DEADLINE_SECONDS
    assert totals == {"requests": 14, "status2xx": 7, "status4xx": 7, "status5xx": 0, "rateLimited": 0}


@dataclass
class RedisServer:
    port: int
    directory: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.skip("redis-server is not installed")
        command = [
            binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
            "--dir", str(self.directory),
        ]
        log = (self.directory / "redis.log").open("ab")
        self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with socket.socket() as probe, contextlib.suppress(OSError):
                probe.connect(("127.0.0.1", self.port))
                return
            time.sleep(0.05)
        pytest.fail("redis-server did not start")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)
        self.process = None


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(free_port(), tmp_path)
    server.start()
    yield server
    server.stop()


class Traffic:
    """Requests sent without pause by a few concurrent workers until stopped."""

    def __init__(self, client: httpx.AsyncClient, servers: list[Server], key: str) -> None:
        self._client = client
        self._servers = servers
        self._key = key
        self.statuses: Counter[Any] = Counter()
        self._stopping = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    def start(self, workers: int = 4) -> None:
        self._tasks = [asyncio.create_task(self._work(number)) for number in range(workers)]

    async def stop(self) -> None:
        self._stopping.set()
        await asyncio.gather(*self._tasks)

    async def _work(self, number: int) -> None:
        sent = 0
        while not self._stopping.is_set():
            server = self._servers[(number + sent) % len(self._servers)]
            sent += 1
            try:
                response = await self._client.get(server.base_url + "/v2/projects", headers=bearer(self._key))
                self.statuses[response.status_code] += 1
            except httpx.TransportError as error:
                self.statuses[type(error).__name__] += 1
            await asyncio.sleep(0.01)


async def wait_for(condition: Any, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await condition():
            return True
        await asyncio.sleep(0.1)
    return False


async def test_redis_restart_during_traffic(
    shared_services: Services, postgresql_url: str, own_redis: RedisServer, tmp_path: Path
) -> None:
    organization = await create_organization(shared_services, "restart")
    key = await new_key(shared_services, organization.id, "projects:read", limit=100_000)
    log_key = f"connex:rl:{{{hash_key(SECRET_KEY.encode(), key)}}}"
    environment = server_environment(
        postgresql_url, own_redis.url, redis_probe_seconds="0.5", redis_socket_timeout="0.5"
    )

    async with running_servers(2, environment, tmp_path) as servers:
        observer = redis.asyncio.Redis.from_url(own_redis.url)
        async with httpx.AsyncClient(timeout=10.0) as client:
            traffic = Traffic(client, servers, key)
            traffic.start()
            try:
                assert await wait_for(lambda: observer.exists(log_key), timeout=5)

                own_redis.stop()
                served_before_outage = sum(traffic.statuses.values())
                await asyncio.sleep(2.0)
                assert sum(traffic.statuses.values()) > served_before_outage + 20

                # A restarted Redis has no data and no scripts: the next EVALSHA gets NOSCRIPT.
                own_redis.start()
                await observer.aclose()
                observer = redis.asyncio.Redis.from_url(own_redis.url)
                assert await wait_for(lambda: observer.exists(log_key), timeout=10)
                await asyncio.sleep(1.0)
            finally:
                await traffic.stop()

            command_stats = await observer.info("commandstats")
            # Redis 7.0 reports SCRIPT LOAD as "cmdstat_script|load".
            script_loads = sum(
                stats["calls"] for name, stats in command_stats.items() if name.startswith("cmdstat_script")
            )
            evalsha_calls = command_stats["cmdstat_evalsha"]["calls"]
            zcard = await observer.zcard(log_key)
        await observer.aclose()

    assert set(traffic.statuses) == {200}, traffic.statuses
    assert script_loads >= 1
    assert evalsha_calls >= zcard > 0
    for server in servers:
        log = server.log()
        assert log.count("key admission falling back") == 1, log
        assert log.count("key admission using Redis again") == 1, log
        assert key not in log
