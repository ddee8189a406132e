"""The baseline for the core REST benchmark: one Starlette route, one Core query, orjson.

``GET /v2/projects?limit=N`` returns the same rows and the same JSON shape as the
ConneX v2 list, without authentication, ConneX's middleware, GraphQL binding or
ORM sessions. Run it with ``uvicorn --factory bench.bare_app:create_app`` and set:

- ``CONNEX_BENCH_DATABASE_URL``: a ``postgresql+asyncpg://`` URL;
- ``CONNEX_BENCH_ORGANIZATION_ID``: the organization whose projects are listed.
"""

from __future__ import annotations

import base64
import contextlib
import os
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import orjson
from sqlalchemy import Column, DateTime, MetaData, String, Table, select
from sqlalchemy.ext.asyncio import create_async_engine
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

DEFAULT_LIMIT = 20
MAX_LIMIT = 100
# The same pool size and overflow as connex.db.create_engine, so neither server waits on
# connections sooner. Unlike ConneX, the pool does no pre-ping on checkout.
POOL_SIZE = 10

projects = Table(
    "projects",
    MetaData(),
    Column("id", String(40), primary_key=True),
    Column("organization_id", String(40)),
    Column("name", String(200)),
    Column("description", String(2000)),
    Column("status", String(16)),
    Column("created_at", DateTime(timezone=True)),
    Column("updated_at", DateTime(timezone=True)),
)


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def encode_cursor(moment: datetime, row_id: str) -> str:
    """Encode a keyset cursor in the same format as ConneX v2."""
    raw = orjson.dumps([moment.isoformat(), row_id])
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def parse_limit(text: str | None) -> int | None:
    if text is None:
        return DEFAULT_LIMIT
    if not text.isdigit() or not 1 <= int(text) <= MAX_LIMIT:
        return None
    return int(text)


def create_app() -> Starlette:
    database_url = os.environ["CONNEX_BENCH_DATABASE_URL"]
    organization_id = os.environ["CONNEX_BENCH_ORGANIZATION_ID"]
    engine = create_async_engine(database_url, pool_size=POOL_SIZE, max_overflow=POOL_SIZE)

    async def list_projects(request: Request) -> Response:
        limit = parse_limit(request.query_params.get("limit"))
        if limit is None:
            message = {"detail": f"limit must be an integer from 1 to {MAX_LIMIT}"}
            return Response(orjson.dumps(message), status_code=422, media_type="application/json")

        query = (
            select(projects)
            .where(projects.c.organization_id == organization_id)
            .where(projects.c.status == "active")
            .order_by(projects.c.updated_at.desc(), projects.c.id.desc())
            .limit(limit + 1)
        )
        async with engine.connect() as connection:
            rows = (await connection.execute(query)).all()

        page = rows[:limit]
        data = [
            {
                "id": row.id,
                "organization_id": row.organization_id,
                "name": row.name,
                "description": row.description,
                "status": row.status,
                "created_at": rfc3339(row.created_at),
                "updated_at": rfc3339(row.updated_at),
            }
            for row in page
        ]
        next_cursor = None
        if len(rows) > limit:
            next_cursor = encode_cursor(page[-1].updated_at, page[-1].id)
        body = {"data": data, "next_cursor": next_cursor}
        return Response(orjson.dumps(body), media_type="application/json")

    async def healthz(_request: Request) -> Response:
        return Response(b'{"status":"ok"}', media_type="application/json")

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await engine.dispose()

    routes = [Route("/v2/projects", list_projects), Route("/healthz", healthz)]
    return Starlette(routes=routes, lifespan=lifespan)
