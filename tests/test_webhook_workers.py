"""Webhook delivery through real workers: the embedded one and `connex worker` processes.

The crash tests run `connex worker` subprocesses on the Redis broker and PostgreSQL,
kill them with SIGKILL mid-delivery, flush Redis while deliveries are pending, and
restart them between retries. Short timeouts, leases and sweep intervals keep each
test to a few seconds.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import redis
from sqlalchemy import select
from standardwebhooks.webhooks import Webhook

from connex.app import build_services, create_app
from connex.context import Services
from connex.models import AttemptStatus, DeliveryStatus, WebhookAttempt, WebhookDelivery
from tests.conftest import SECRET_KEY, Caller, _clear_tables, make_settings, wait_for
from tests.receiver import Received, Reply, running_receiver
from tests.webhook_support import (
    WEBHOOK_SCOPES,
    attempts_of,
    create_endpoint,
    create_project,
    deliveries_of,
)

REPOSITORY = Path(__file__).resolve().parent.parent
CONNEX = Path(sys.executable).parent / "connex"

# Attempt timeout 3 s + lease margin 1 s: a killed worker's delivery is free again after 4 s.
WORKER_SETTINGS = {
    "webhook_allow_http": True,
    "webhook_ssrf_exempt_networks": ["127.0.0.1/32"],
    "webhook_retry_schedule": [1.0, 1.0, 1.0, 1.0, 1.0],
    "webhook_timeout_seconds": 3.0,
    "webhook_lease_margin_seconds": 1.0,
    "webhook_sweep_interval_seconds": 0.5,
    "webhook_sweep_grace_seconds": 1.0,
}


def worker_environment(database_url: str, redis_url: str) -> dict[str, str]:
    environment = {key: value for key, value in os.environ.items() if not key.startswith("CONNEX_")}
    environment.update(
        {
            "CONNEX_DATABASE_URL": database_url,
            "CONNEX_REDIS_URL": redis_url,
            "CONNEX_SECRET_KEY": SECRET_KEY,
            "CONNEX_LOG_LEVEL": "INFO",
        }
    )
    for name, value in WORKER_SETTINGS.items():
        text = orjson.dumps(value).decode() if isinstance(value, list | bool) else str(value)
        environment[f"CONNEX_{name.upper()}"] = text
    return environment


class WorkerProcesses:
    """Starts `connex worker` commands, each in a process group of its own, and ends them."""

    def __init__(self, environment: dict[str, str], log_dir: Path) -> None:
        self.environment = environment
        self.log_dir = log_dir
        self.processes: list[subprocess.Popen[bytes]] = []

    def start(self, threads: int = 4) -> subprocess.Popen[bytes]:
        log = open(self.log_dir / f"worker-{len(self.processes)}.log", "wb")  # noqa: SIM115 - closed with the process
        process = subprocess.Popen(
            [str(CONNEX), "worker", "--processes", "1", "--threads", str(threads)],
            cwd=REPOSITORY,
            env=self.environment,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.processes.append(process)
        return process

    def kill(self, process: subprocess.Popen[bytes]) -> None:
        """SIGKILL the whole group: the Dramatiq main process and its worker processes at once."""
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)

    def stop(self, process: subprocess.Popen[bytes]) -> None:
        """Stop gracefully: SIGTERM to the main process only, which passes it on to its workers.

        A second SIGTERM makes a Dramatiq worker process exit at once, so the group is not signalled.
        """
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)

    def stop_all(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                self.kill(process)

    def logs(self) -> str:
        return "\n".join(path.read_text(errors="replace") for path in sorted(self.log_dir.glob("worker-*.log")))


@pytest.fixture
async def redis_services(postgresql_url: str, redis_url: str) -> AsyncIterator[Services]:
    services = build_services(make_settings(postgresql_url, redis_url, **WORKER_SETTINGS))
    await _clear_tables(services)
    await services.redis.flushdb()
    yield services
    services.webhooks.broker.close()
    await services.db.dispose()
    await services.redis.aclose()


@pytest.fixture
async def redis_client(redis_services: Services) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(redis_services.settings, redis_services)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://connex.test") as client:
        yield client


@pytest.fixture
async def webhook_partner(redis_services: Services) -> Caller:
    from connex.apikeys import issue_key
    from connex.scopes import parse_scopes
    from tests.conftest import create_organization

    organization = await create_organization(redis_services, "acme")
    async with redis_services.db.transaction() as session:
        row, secret = await issue_key(
            session,
            redis_services.settings.secret_key_bytes(),
            name="crash test",
            organization_id=organization.id,
            scopes=parse_scopes(WEBHOOK_SCOPES),
        )
    return Caller(secret, row.id, organization.id)


@pytest.fixture
def workers(postgresql_url: str, redis_url: str, tmp_path: Path) -> Iterator[WorkerProcesses]:
    processes = WorkerProcesses(worker_environment(postgresql_url, redis_url), tmp_path)
    yield processes
    processes.stop_all()


async def delivery_rows(services: Services) -> list[WebhookDelivery]:
    async with services.db.sessions() as session:
        return list((await session.execute(select(WebhookDelivery))).scalars())


async def all_succeeded(services: Services, count: int) -> bool:
    rows = await delivery_rows(services)
    return len(rows) == count and all(row.status is DeliveryStatus.SUCCEEDED for row in rows)


async def attempt_rows(services: Services) -> list[WebhookAttempt]:
    async with services.db.sessions() as session:
        return list((await session.execute(select(WebhookAttempt))).scalars())


class FirstRequestSlow:
    """Reply to the first request of each webhook-id after ``delay`` seconds, and to later ones at once."""

    def __init__(self, delay: float, first_status: int = 200) -> None:
        self.delay = delay
        self.first_status = first_status
        self.seen: Counter[str] = Counter()
        self.lock = threading.Lock()

    def __call__(self, request: Received) -> Reply:
        with self.lock:
            self.seen[request.webhook_id] += 1
            first = self.seen[request.webhook_id] == 1
        if first:
            return Reply(self.first_status, delay=self.delay)
        return Reply(200)


def check_log_matches_receiver(attempts: list[WebhookAttempt], received: list[str]) -> None:
    """Every request the receiver got has an attempt row; a row without a request was interrupted."""
    rows_per_delivery = Counter(attempt.delivery_id for attempt in attempts)
    requests_per_delivery = Counter(received)
    for delivery_id, requests in requests_per_delivery.items():
        assert rows_per_delivery[delivery_id] >= requests, delivery_id
    for attempt in attempts:
        assert attempt.status is not AttemptStatus.IN_PROGRESS


@pytest.mark.usefixtures("redis_url")
async def test_sigkill_mid_delivery_redelivers(
    redis_services: Services, redis_client: httpx.AsyncClient, webhook_partner: Caller, workers: WorkerProcesses
) -> None:
    responder = FirstRequestSlow(delay=2.5)
    with running_receiver(responder) as receiver:
        first = workers.start()
        endpoint = await create_endpoint(redis_client, webhook_partner, receiver.url())
        for index in range(5):
            await create_project(redis_client, webhook_partner, f"crash {index}")
        assert await wait_for(lambda: _received_any(receiver), timeout=30), workers.logs()

        workers.kill(first)
        in_flight_when_killed = set(receiver.ids())
        workers.start()
        done = await wait_for(lambda: all_succeeded(redis_services, 5), timeout=40)

    assert done, workers.logs()
    rows = await delivery_rows(redis_services)
    assert {row.id for row in rows} == set(receiver.ids())
    assert receiver.overlaps == []
    attempts = await attempt_rows(redis_services)
    check_log_matches_receiver(attempts, receiver.ids())
    interrupted = {attempt.delivery_id for attempt in attempts if attempt.status is AttemptStatus.INTERRUPTED}
    assert in_flight_when_killed <= interrupted
    for request in receiver.requests:
        Webhook(endpoint["secret"]).verify(request.body, request.headers)


async def _received_any(receiver: Any) -> bool:
    return bool(receiver.requests)


async def test_flushed_redis_is_swept(
    redis_services: Services, redis_client: httpx.AsyncClient, webhook_partner: Caller, workers: WorkerProcesses
) -> None:
    with running_receiver() as receiver:
        await create_endpoint(redis_client, webhook_partner, receiver.url())
        for index in range(5):
            await create_project(redis_client, webhook_partner, f"flushed {index}")
        queued = redis.Redis.from_url(redis_services.settings.redis_url).llen("dramatiq:webhooks")
        await redis_services.redis.flushdb()
        workers.start()
        done = await wait_for(lambda: all_succeeded(redis_services, 5), timeout=40)

    assert queued == 5
    assert done, workers.logs()
    rows = await delivery_rows(redis_services)
    assert {row.id for row in rows} == set(receiver.ids())
    assert receiver.overlaps == []
    check_log_matches_receiver(await attempt_rows(redis_services), receiver.ids())


async def test_restart_between_retries(
    redis_services: Services, redis_client: httpx.AsyncClient, webhook_partner: Caller, workers: WorkerProcesses
) -> None:
    responder = FirstRequestSlow(delay=0, first_status=500)
    with running_receiver(responder) as receiver:
        first = workers.start()
        endpoint = await create_endpoint(redis_client, webhook_partner, receiver.url())
        for index in range(3):
            await create_project(redis_client, webhook_partner, f"retried {index}")
        assert await wait_for(lambda: _count_at_least(receiver, 3), timeout=30), workers.logs()

        workers.stop(first)
        workers.start()
        done = await wait_for(lambda: all_succeeded(redis_services, 3), timeout=40)

    assert done, workers.logs()
    assert receiver.overlaps == []
    for delivery in await deliveries_of(redis_services.db, endpoint["id"]):
        attempts = await attempts_of(redis_services.db, delivery.id)
        assert [attempt.status for attempt in attempts] == [AttemptStatus.FAILED, AttemptStatus.SUCCEEDED]
        assert [attempt.status_code for attempt in attempts] == [500, 200]
        arrivals = [request.arrived for request in receiver.requests if request.webhook_id == delivery.id]
        # The retry came no earlier than the schedule's first delay allows (1 s - 20 % jitter).
        assert arrivals[1] - arrivals[0] >= 0.8


async def _count_at_least(receiver: Any, count: int) -> bool:
    return len(receiver.requests) >= count


@pytest.fixture
async def embedded_settings(sqlite_url: str) -> Any:
    return make_settings(sqlite_url, **WORKER_SETTINGS)


async def test_embedded_worker_delivers_and_retries(embedded_settings: Any) -> None:
    services = build_services(embedded_settings)
    await _clear_tables(services)
    app = create_app(embedded_settings, services)
    responder = FirstRequestSlow(delay=0, first_status=500)
    with running_receiver(responder) as receiver:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://connex.test") as client:
                partner = await _embedded_partner(services)
                endpoint = await create_endpoint(client, partner, receiver.url())
                project = await create_project(client, partner)
                done = await wait_for(lambda: all_succeeded(services, 1), timeout=20)
    await services.db.dispose()

    assert done
    first, second = receiver.requests
    assert first.webhook_id == second.webhook_id
    assert second.arrived - first.arrived >= 0.8
    payload = Webhook(endpoint["secret"]).verify(second.body, second.headers)
    assert payload["data"]["object"]["id"] == project["id"]


async def _embedded_partner(services: Services) -> Caller:
    from connex.apikeys import issue_key
    from connex.scopes import parse_scopes
    from tests.conftest import create_organization

    organization = await create_organization(services, "embedded")
    async with services.db.transaction() as session:
        row, secret = await issue_key(
            session,
            services.settings.secret_key_bytes(),
            name="embedded",
            organization_id=organization.id,
            scopes=parse_scopes(WEBHOOK_SCOPES),
        )
    return Caller(secret, row.id, organization.id)


def test_worker_command_needs_redis() -> None:
    environment = worker_environment("sqlite:///./var/unused.db", "")
    environment.pop("CONNEX_REDIS_URL")
    result = subprocess.run(
        [str(CONNEX), "worker"], cwd=REPOSITORY, env=environment, capture_output=True, text=True, timeout=60
    )

    assert result.returncode == 2
    assert "CONNEX_REDIS_URL" in result.stderr
