"""Shared fixtures: real PostgreSQL and Redis, the app over ASGI, and keys by scope.

Tests that take the ``services`` fixture run once on SQLite and once on
PostgreSQL. With CI=true an unreachable PostgreSQL or Redis fails the run; on a
developer machine the tests that need it are skipped.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio as redis_asyncio
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from connex.apikeys import issue_key
from connex.app import build_services, create_app
from connex.context import Services
from connex.ids import new_id
from connex.migrate import upgrade_async
from connex.models import Organization
from connex.scopes import Scope, parse_scopes
from connex.settings import Settings

IN_CI = os.environ.get("CI") == "true"
POSTGRES_URL = os.environ.get("CONNEX_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("CONNEX_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
SECRET_KEY = "test-secret-key-" + "0" * 32
TABLES = (
    "usage_latency",
    "usage_counts",
    "usage_rollups",
    "webhook_attempts",
    "webhook_deliveries",
    "webhook_endpoints",
    "events",
    "projects",
    "api_keys",
    "organizations",
)


def unavailable(what: str, error: BaseException) -> None:
    message = f"{what} is not reachable: {type(error).__name__}: {error}"
    if IN_CI:
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def asyncpg_url(url: str) -> str:
    return Settings(database_url=url, secret_key=SECRET_KEY).database_url


@pytest.fixture(scope="session")
async def postgresql_url() -> str:
    url = asyncpg_url(POSTGRES_URL)
    engine = create_async_engine(url)
    try:
        async with engine.begin() as connection:
            # Start from an empty schema so the migrations themselves are tested.
            await connection.execute(text("DROP SCHEMA public CASCADE"))
            await connection.execute(text("CREATE SCHEMA public"))
    except (OSError, Exception) as error:  # noqa: BLE001 - asyncpg raises several unrelated types
        unavailable("PostgreSQL", error)
    finally:
        await engine.dispose()
    await upgrade_async(url)
    return url


@pytest.fixture(scope="session")
async def sqlite_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = Path(tmp_path_factory.mktemp("db")) / "connex.db"
    url = f"sqlite+aiosqlite:///{path}"
    await upgrade_async(url)
    return url


@pytest.fixture(scope="session")
async def redis_url() -> str:
    client = redis_asyncio.Redis.from_url(REDIS_URL)
    try:
        await client.ping()
    except Exception as error:  # noqa: BLE001
        unavailable("Redis", error)
    finally:
        await client.aclose()
    return REDIS_URL


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest) -> str:
    return request.getfixturevalue(f"{request.param}_url")


async def _clear_tables(services: Services) -> None:
    async with services.db.engine.begin() as connection:
        if services.settings.is_sqlite:
            for table in TABLES:
                await connection.execute(text(f"DELETE FROM {table}"))
        else:
            await connection.execute(text(f"TRUNCATE {', '.join(TABLES)} CASCADE"))


def make_settings(database_url: str, redis_url: str | None = None, **overrides: Any) -> Settings:
    return Settings(database_url=database_url, redis_url=redis_url, secret_key=SECRET_KEY, **overrides)


@pytest.fixture
async def settings(database_url: str) -> Settings:
    return make_settings(database_url)


@pytest.fixture
async def services(settings: Settings) -> AsyncIterator[Services]:
    services = build_services(settings)
    await _clear_tables(services)
    if services.redis is not None:
        await services.redis.flushdb()
    yield services
    await services.db.dispose()
    if services.redis is not None:
        await services.redis.aclose()


@pytest.fixture
async def app(services: Services) -> Any:
    return create_app(services.settings, services)


@pytest.fixture
async def client(app: Any) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://connex.test") as client:
        yield client


@pytest.fixture
def fake_dns(monkeypatch: pytest.MonkeyPatch) -> Any:
    """Make the webhook SSRF guard resolve only the names a test sets (tests/webhook_support.py)."""
    from connex.webhooks import ssrf
    from tests.webhook_support import FakeDNS

    dns = FakeDNS()
    monkeypatch.setattr(ssrf, "_resolve", dns.resolve)
    return dns


@dataclass
class Caller:
    """An API key and the headers that send it."""

    key: str
    key_id: str
    organization_id: str | None

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}

    def __repr__(self) -> str:
        return f"Caller(key_id={self.key_id!r})"


KeyFactory = Callable[..., Awaitable[Caller]]


@pytest.fixture
async def organization(services: Services) -> Organization:
    return await create_organization(services, "acme")


async def create_organization(services: Services, slug: str) -> Organization:
    organization = Organization(id=new_id("org"), slug=slug, name=slug.title())
    async with services.db.transaction() as session:
        session.add(organization)
    return organization


@pytest.fixture
async def make_key(services: Services, organization: Organization) -> KeyFactory:
    """Issue a key with the given scopes, in the default organization unless ``organization_id`` is given."""

    async def make(*scopes: str, organization_id: str | None | object = ..., **options: Any) -> Caller:
        org_id = organization.id if organization_id is ... else organization_id
        if Scope.ADMIN.value in scopes and organization_id is ...:
            org_id = None
        async with services.db.transaction() as session:
            row, secret = await issue_key(
                session,
                services.settings.secret_key_bytes(),
                name="test key",
                organization_id=org_id,  # type: ignore[arg-type]
                scopes=parse_scopes(scopes),
                **options,
            )
        return Caller(secret, row.id, org_id)  # type: ignore[arg-type]

    return make


@pytest.fixture
async def admin(make_key: KeyFactory) -> Caller:
    return await make_key("admin")


@pytest.fixture
async def partner(make_key: KeyFactory) -> Caller:
    return await make_key("projects:write", "events:read")


async def graphql(client: httpx.AsyncClient, caller: Caller, query: str, **variables: Any) -> dict[str, Any]:
    response = await client.post("/graphql", json={"query": query, "variables": variables}, headers=caller.headers)
    assert response.status_code in (200, 400), response.text
    return response.json()


def wait_for(predicate: Callable[[], Awaitable[bool]], timeout: float = 10.0) -> Awaitable[bool]:
    async def poll() -> bool:
        deadline = asyncio.get_running_loop().time() + timeout
        while asyncio.get_running_loop().time() < deadline:
            if await predicate():
                return True
            await asyncio.sleep(0.05)
        return False

    return poll()
