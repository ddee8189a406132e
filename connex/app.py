"""The ASGI application factory: assembles the core, the schema and the REST versions."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import orjson
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from sqlalchemy import text
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from connex.admission import KeyAdmission, LocalAdmission, RateLimitPolicy, RedisAdmission
from connex.auth import Authenticator, MemoryKeyCache, RedisKeyCache, flush_last_used
from connex.context import Services
from connex.db import Database
from connex.errors import ConnexError, MethodNotAllowed, NotFound, ServiceUnavailable
from connex.middleware import ApiKeyMiddleware, BodyLimitMiddleware, RequestIdMiddleware
from connex.problems import problem_response
from connex.ratelimit import MemoryRateLimiter, RedisOutage
from connex.settings import Settings, get_settings
from connex.usage.flusher import UsageFlusher
from connex.usage.meter import UsageMeter
from connex.usage.store import RedisUsageBuffer

logger = logging.getLogger("connex.app")

# Worker threads of the embedded webhook worker: the most attempts in flight at once.
EMBEDDED_WORKER_THREADS = 8


def build_services(settings: Settings) -> Services:
    from connex.webhooks import outbox
    from workers import webhooks

    db = Database(settings.database_url)
    # With Redis the deliveries go to `connex worker` processes; embedded, to a worker in this process.
    webhook_workers = webhooks.setup(settings, db)
    outbox.install(db, webhook_workers.queue)
    secret_key = settings.secret_key_bytes()
    policy = RateLimitPolicy(settings.rate_limit_per_minute, settings.rate_limit_window_seconds)
    meter = UsageMeter()
    if settings.redis_url is None:
        memory_cache = MemoryKeyCache()
        authenticator = Authenticator(db, [memory_cache], secret_key)
        local = LocalAdmission(memory_cache, MemoryRateLimiter(), policy, settings.key_cache_seconds)
        return Services(
            settings=settings,
            db=db,
            key_cache=memory_cache,
            authenticator=authenticator,
            admission=KeyAdmission(authenticator, local),
            usage=UsageFlusher(meter, db),
            webhooks=webhook_workers,
        )

    # Admission counts a request in the same script that authenticates it, so a retried
    # command could count it twice: the client must never retry on its own.
    redis = Redis.from_url(
        settings.redis_url,
        retry=Retry(NoBackoff(), 0),
        socket_timeout=settings.redis_socket_timeout,
        socket_connect_timeout=settings.redis_socket_timeout,
    )
    redis_cache = RedisKeyCache(redis)
    outage_cache = MemoryKeyCache()
    authenticator = Authenticator(db, [redis_cache, outage_cache], secret_key)
    outage_admission = LocalAdmission(outage_cache, MemoryRateLimiter(), policy, settings.outage_key_cache_seconds)
    admission = KeyAdmission(
        authenticator,
        outage_admission,
        RedisAdmission(redis, redis_cache, policy, settings.key_cache_seconds),
        RedisOutage(
            logging.getLogger("connex.admission"),
            settings.redis_probe_seconds,
            subject="key admission",
            fallback="database key lookups and in-process limits",
        ),
    )
    usage = UsageFlusher(
        meter,
        db,
        RedisUsageBuffer(redis),
        RedisOutage(
            logging.getLogger("connex.usage"),
            settings.redis_probe_seconds,
            subject="usage metering",
            fallback="database writes",
        ),
    )
    return Services(
        settings=settings,
        db=db,
        key_cache=redis_cache,
        authenticator=authenticator,
        admission=admission,
        usage=usage,
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
    """Return Starlette's own 404 and 405 (paths outside the API versions) as problem details."""
    problem: ConnexError
    if isinstance(error, HTTPException) and error.status_code == 405:
        allowed = (error.headers or {}).get("Allow", "")
        problem = MethodNotAllowed([method.strip() for method in allowed.split(",") if method.strip()])
    else:
        problem = NotFound(f"No page at {request.url.path!r}; the API is under /v2 and its documentation under /docs")
    return problem_response(problem, instance=request.url.path)


class PeriodicJob:
    """A background job run every ``interval`` seconds until cancelled.

    A failure is logged with its traceback when a streak of failures starts, then at
    most once a minute, and the first success after a streak is logged once.
    """

    REPEAT_LOG_SECONDS = 60.0

    def __init__(self, name: str, interval: float, job: Callable[[], Awaitable[object]]) -> None:
        self.name = name
        self.interval = interval
        self.job = job
        self._failures = 0
        self._next_log = 0.0

    async def run_forever(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            await self.run_once()

    async def run_once(self) -> None:
        try:
            await self.job()
        except Exception:  # the next round retries, and the job keeps its data until it succeeds
            self._failures += 1
            if self._should_log_failure():
                logger.warning("%s failed (%d in a row)", self.name, self._failures, exc_info=True)
            return
        if self._failures:
            logger.info("%s succeeded after %d failures", self.name, self._failures)
            self._failures = 0

    def _should_log_failure(self) -> bool:
        now = time.monotonic()
        if self._failures > 1 and now < self._next_log:
            return False
        self._next_log = now + self.REPEAT_LOG_SECONDS
        return True


def background_jobs(services: Services) -> list[PeriodicJob]:
    """Return the jobs that ``connex serve`` runs in every process."""
    settings = services.settings

    async def flush_key_use() -> None:
        for cache in services.authenticator.caches:
            if isinstance(cache, RedisKeyCache):
                await cache.retry_invalidations()
            await flush_last_used(services.db, cache)

    jobs = [
        PeriodicJob("last_used_at flush", settings.last_used_flush_seconds, flush_key_use),
        PeriodicJob("usage flush", settings.usage_flush_seconds, services.usage.flush),
    ]
    if services.redis is not None:
        jobs.append(PeriodicJob("usage rollup", settings.usage_rollup_seconds, services.usage.roll_up))
    return jobs


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
        # Objects alive after start-up live as long as the process. Freezing them keeps
        # full collections, which take about 25 ms with them, out of request latency.
        gc.collect()
        gc.freeze()
        jobs = background_jobs(services)
        tasks = [asyncio.create_task(job.run_forever(), name=job.name) for job in jobs]
        worker = await start_embedded_worker(services) if settings.embedded else None
        try:
            yield
        finally:
            if worker is not None:
                stop_timeout_ms = round((settings.webhook_timeout_seconds + 5) * 1000)
                await asyncio.to_thread(worker.stop, stop_timeout_ms)
            services.webhooks.broker.close()
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            # One last round, so the counts of the final requests are not lost.
            for job in jobs:
                await job.run_once()
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

    app.add_middleware(
        ApiKeyMiddleware,
        admission=services.admission,
        meter=services.usage.meter,
        prefixes=["/v1", "/v2", "/graphql"],
        priced_paths=["/graphql"],
    )
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    for wrapper, options in version_wrappers:
        app.add_middleware(wrapper, **options)
    app.add_middleware(RequestIdMiddleware)
    return app
