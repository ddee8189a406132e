"""Measure webhook delivery: one `connex worker` process against plain httpx, and API-to-arrival latency.

Run from the repository root with a PostgreSQL database and a Redis database that may be
wiped (the script drops the database's public schema and flushes the Redis database):

    PYTHONPATH=. .venv/bin/python bench/webhook_delivery.py \\
        --database-url postgresql://postgres@127.0.0.1:5432/bench_webhooks \\
        --redis-url redis://127.0.0.1:6379/4

All traffic stays on 127.0.0.1. In one run it measures:

1. plain httpx: POSTs of the same signed payloads from one process, 16 at a time, with
   keep-alive on and off (the worker's client has it off, see connex.webhooks.ssrf);
2. the worker: deliveries per second of one `connex worker --processes 1` process for a
   backlog queued before it starts, from the receiver's first arrival to its last;
3. latency: REST POST /v2/projects (in-process ASGI app) to the receiver's arrival, with
   the worker running, one write every 50 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from connex.apikeys import issue_key
from connex.app import build_services, create_app
from connex.events import record_event
from connex.ids import new_id
from connex.migrate import upgrade_async
from connex.models import Organization
from connex.scopes import parse_scopes
from connex.settings import Settings
from connex.webhooks.payload import render_payload
from connex.webhooks.signing import build_headers

REPOSITORY = Path(__file__).resolve().parent.parent
SECRET_KEY = "bench-secret-key-" + "0" * 32
WEBHOOK_SETTINGS = {
    "CONNEX_WEBHOOK_ALLOW_HTTP": "true",
    "CONNEX_WEBHOOK_SSRF_EXEMPT_NETWORKS": '["127.0.0.1/32"]',
}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", default="postgresql://postgres@127.0.0.1:5432/bench_webhooks")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/4")
    parser.add_argument("--deliveries", type=int, default=3000, help="backlog size (default: %(default)s)")
    parser.add_argument("--threads", type=int, default=16, help="worker threads (default: %(default)s)")
    parser.add_argument("--writes", type=int, default=200, help="API writes timed for latency (default: %(default)s)")
    return parser.parse_args()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_receiver(port: int) -> subprocess.Popen[bytes]:
    command = [
        sys.executable, "-m", "uvicorn", "bench.webhook_receiver:app",
        "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning", "--no-access-log",
    ]
    process = subprocess.Popen(command, cwd=REPOSITORY)
    for _ in range(100):
        try:
            httpx.get(f"http://127.0.0.1:{port}/arrivals", timeout=1)
            return process
        except httpx.TransportError:
            time.sleep(0.1)
    raise RuntimeError("the receiver did not start")


def arrivals(port: int) -> list[list[Any]]:
    return httpx.get(f"http://127.0.0.1:{port}/arrivals", timeout=30).json()


def start_worker(settings: Settings, threads: int) -> subprocess.Popen[bytes]:
    environment = {key: value for key, value in os.environ.items() if not key.startswith("CONNEX_")}
    environment.update(WEBHOOK_SETTINGS)
    environment.update(
        {
            "CONNEX_DATABASE_URL": settings.database_url,
            "CONNEX_REDIS_URL": settings.redis_url or "",
            "CONNEX_SECRET_KEY": SECRET_KEY,
            "CONNEX_LOG_LEVEL": "WARNING",
        }
    )
    command = [str(Path(sys.executable).parent / "connex"), "worker", "--processes", "1", "--threads", str(threads)]
    return subprocess.Popen(command, cwd=REPOSITORY, env=environment, start_new_session=True)


async def reset_database(url: str) -> None:
    engine = create_async_engine(url)
    async with engine.begin() as connection:
        await connection.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
        await connection.execute(text("CREATE SCHEMA public"))
    await engine.dispose()
    await upgrade_async(url)


async def measure_httpx(port: int, payloads: list[bytes], secret: str, keepalive: bool) -> float:
    """POST every payload, signed as the worker signs it, 16 at a time; return requests per second."""
    limits = httpx.Limits() if keepalive else httpx.Limits(max_keepalive_connections=0)
    url = f"http://127.0.0.1:{port}/hook"
    semaphore = asyncio.Semaphore(16)
    async with httpx.AsyncClient(limits=limits) as client:

        async def post(index: int, body: bytes) -> None:
            headers = {"content-type": "application/json", **build_headers([secret], f"msg_{index}", int(time.time()), body)}
            async with semaphore:
                response = await client.post(url, content=body, headers=headers)
                response.raise_for_status()

        started = time.perf_counter()
        await asyncio.gather(*(post(index, body) for index, body in enumerate(payloads)))
        elapsed = time.perf_counter() - started
    arrivals(port)
    return len(payloads) / elapsed


async def main() -> None:
    args = parse_args()
    settings = Settings(
        database_url=args.database_url, redis_url=args.redis_url, secret_key=SECRET_KEY,
        webhook_allow_http=True, webhook_ssrf_exempt_networks=["127.0.0.1/32"],
    )
    await reset_database(settings.database_url)
    redis.Redis.from_url(args.redis_url).flushdb()
    services = build_services(settings)
    port = free_port()
    receiver = start_receiver(port)
    worker = None
    try:
        organization = Organization(id=new_id("org"), slug="bench", name="Bench")
        async with services.db.transaction() as session:
            session.add(organization)
            await session.flush()
            _row, key = await issue_key(
                session, settings.secret_key_bytes(), name="bench", organization_id=organization.id,
                scopes=parse_scopes(["webhooks:write", "projects:write"]),
            )
        app = create_app(settings, services)
        headers = {"Authorization": f"Bearer {key}"}
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://bench") as api:
            created = await api.post(
                "/v2/webhook_endpoints",
                json={"url": f"http://127.0.0.1:{port}/hook", "event_types": ["*"], "api_version": "v2"},
                headers=headers,
            )
            created.raise_for_status()
            secret = created.json()["secret"]

            # The same payloads the worker will send: one project.created event each.
            now = datetime.now(UTC)
            data = {"object": {"id": "proj_bench", "name": "Zürich rollout", "status": "active"}}
            payloads = [render_payload(new_id("evt"), "project.created", now, data, "v2") for _ in range(args.deliveries)]
            httpx_keepalive = await measure_httpx(port, payloads, secret, keepalive=True)
            httpx_no_keepalive = await measure_httpx(port, payloads, secret, keepalive=False)

            # Queue the backlog through the outbox, then start the worker on it.
            for start in range(0, args.deliveries, 500):
                async with services.db.transaction() as session:
                    for _ in range(min(500, args.deliveries - start)):
                        await record_event(session, organization.id, "project.created", data)
            worker = start_worker(settings, args.threads)
            backlog: list[list[Any]] = []
            deadline = time.monotonic() + 600
            while len(backlog) < args.deliveries and time.monotonic() < deadline:
                await asyncio.sleep(1)
                backlog += arrivals(port)
            times = sorted(entry[0] for entry in backlog)
            worker_rate = (len(times) - 1) / (times[-1] - times[0])

            # API write to arrival, one write every 50 ms while the worker runs.
            written: dict[str, float] = {}
            for _ in range(args.writes):
                started = time.time()
                response = await api.post("/v2/projects", json={"name": "latency"}, headers=headers)
                response.raise_for_status()
                written[response.json()["id"]] = started
                await asyncio.sleep(0.05)
            await asyncio.sleep(3)
            arrived = {entry[2]: entry[0] for entry in arrivals(port) if entry[2] in written}
            latencies = sorted((arrived[project] - written[project]) * 1000 for project in arrived)
    finally:
        if worker is not None:
            # SIGTERM to the main process only; it passes the signal on to its worker process.
            worker.send_signal(signal.SIGTERM)
            worker.wait(timeout=60)
        receiver.send_signal(signal.SIGTERM)
        receiver.wait(timeout=30)
        services.webhooks.broker.close()
        await services.db.dispose()
        await services.redis.aclose()

    print(f"machine: {platform.node()} {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}")
    print(f"date: {datetime.now(UTC).isoformat(timespec='seconds')}")
    print(f"plain httpx, keep-alive on:   {httpx_keepalive:8.0f} requests/s")
    print(f"plain httpx, keep-alive off:  {httpx_no_keepalive:8.0f} requests/s")
    print(f"connex worker (1 process, {args.threads} threads): {worker_rate:8.0f} deliveries/s "
          f"({len(times)} of {args.deliveries} arrived)")
    print(f"API write to arrival: p50 {statistics.median(latencies):.1f} ms, "
          f"p90 {latencies[int(len(latencies) * 0.9)]:.1f} ms, max {latencies[-1]:.1f} ms "
          f"({len(latencies)} of {args.writes} arrived)")


if __name__ == "__main__":
    asyncio.run(main())
