"""The ASGI application factory: assembles the core, the schema and the REST versions."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import AsyncIterator
from typing import Any

import orjson
from redis.asyncio import Redis
from sqlalchemy import text
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.exceptions import HTTPException
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from connex.auth import Authenticator, KeyCache, MemoryKeyCache, RedisKeyCache, flush_last_used
from connex.context import Services
from connex.db import Database
from connex.errors import ConnexError, MethodNotAllowed, NotFound, ServiceUnavailable
from connex.middleware import AuthenticationMiddleware, BodyLimitMiddleware, RequestIdMiddleware
from connex.problems import problem_response
from connex.settings import Settings, get_settings

logger = logging.getLogger("connex.app")

# Worker threads of the embedded webhook worker: the most attempts in flight at once.
EMBEDDED_WORKER_THREADS = 8


def build_services(settings: Settings) -> Services:
    from connex.webhooks import outbox
    from workers import webhooks

    db = Database(settings.database_url)
    redis = Redis.from_url(settings.redis_url) if settings.redis_url else None
    key_cache: KeyCache = RedisKeyCache(redis) if redis is not None else MemoryKeyCache()
    authenticator = Authenticator(db, key_cache, settings.secret_key_bytes(), settings.key_cache_seconds)
    # With Redis the deliveries go to `connex worker` processes; embedded, to a worker in this process.
    webhook_workers = webhooks.setup(settings, db)
    outbox.install(db, webhook_workers.queue)
    return Services(
        settings=settings,
        db=db,
        key_cache=key_cache,
        authenticator=authenticator,
        redis=redis,
        webhooks=webhook_workers,
    )


async def start_embedded_worker(services: Services) -> Any:
    """Start the in-process Dramatiq worker that delivers webhooks on this event loop."""
    worker = services.webhooks.worker(EMBEDDED_WORKER_THREADS, asyncio.get_running_loop())
    # Starting calls the runner, which waits on this loop, so it runs on another thread.
    await asyncio.to_thread(worker.start)
    return worker


def json_response(content: Any, status_code: int = 200) -> Response:
    return Response(orjson.dumps(content), status_code=status_code, media_type="application/json")


async def healthz(_request: Request) -> Response:
    return json_response({"status": "ok"})


async def readyz(request: Request) -> Response:
    services: Services = request.app.state.services
    checks: dict[str, str] = {}
    try:
        async with services.db.engine.connect() as connection:
            await connection.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except Exception as error:  # noqa: BLE001 - any failure means not ready
        checks["database"] = f"unavailable: {type(error).__name__}"
    if services.redis is not None:
        try:
            await services.redis.ping()
            checks["redis"] = "ok"
        except Exception as error:  # noqa: BLE001
            checks["redis"] = f"unavailable: {type(error).__name__}"
    if all(value == "ok" for value in checks.values()):
        return json_response({"status": "ready", "checks": checks})
    problem = ServiceUnavailable("A dependency is unavailable: " + ", ".join(f"{k} {v}" for k, v in checks.items()))
    return problem_response(problem, instance="/readyz")


async def http_error(request: Request, error: Exception) -> Response:
    """Answer Starlette's own 404 and 405 (paths outside the API versions) as problem details."""
    problem: ConnexError
    if isinstance(error, HTTPException) and error.status_code == 405:
        allowed = (error.headers or {}).get("Allow", "")
        problem = MethodNotAllowed([method.strip() for method in allowed.split(",") if method.strip()])
    else:
        problem = NotFound(f"No page at {request.url.path!r}; the API is under /v2 and its documentation under /docs")
    return problem_response(problem, instance=request.url.path)


async def _flush_periodically(services: Services) -> None:
    while True:
        await asyncio.sleep(services.settings.last_used_flush_seconds)
        try:
            await flush_last_used(services.db, services.key_cache)
        except Exception:
            logger.warning("last_used_at flush failed", exc_info=True)


def create_app(settings: Settings | None = None, services: Services | None = None) -> Starlette:
    from rest_compat import docs_routes, mount_versions, openapi_routes
    from schema import build_schema
    from schema.http import graphql_endpoint

    settings = settings or get_settings()
    services = services or build_services(settings)
    schema = build_schema(settings)
    services.extras["schema"] = schema

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        # Objects alive after start-up live as long as the process; moving them out of the
        # collector's generations keeps full collections (about 25 ms here) out of request latency.
        gc.collect()
        gc.freeze()
        flusher = asyncio.create_task(_flush_periodically(services))
        worker = await start_embedded_worker(services) if settings.embedded else None
        try:
            yield
        finally:
            if worker is not None:
                stop_timeout_ms = round((settings.webhook_timeout_seconds + 5) * 1000)
                await asyncio.to_thread(worker.stop, stop_timeout_ms)
            services.webhooks.broker.close()
            flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await flusher
            await flush_last_used(services.db, services.key_cache)
            if services.redis is not None:
                await services.redis.aclose()
            await services.db.dispose()

    version_mounts, version_wrappers = mount_versions(schema, services)
    routes = [
        Route("/", lambda _request: RedirectResponse("/docs"), methods=["GET"]),
        Route("/healthz", healthz),
        Route("/readyz", readyz),
        Route("/graphql", graphql_endpoint, methods=["GET", "POST"]),
        *openapi_routes(schema, services),
        *docs_routes(schema, services),
        *version_mounts,
    ]
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={404: http_error, 405: http_error},
    )
    app.state.services = services

    app.add_middleware(AuthenticationMiddleware, authenticator=services.authenticator, prefixes=["/v1", "/v2", "/graphql"])
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    for wrapper, options in version_wrappers:
        app.add_middleware(wrapper, **options)
    app.add_middleware(RequestIdMiddleware)
    return app
