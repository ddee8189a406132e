"""The webhook delivery actor, the sweep that backs it up, and the event loop they run on.

Dramatiq's worker threads are synchronous, while delivery code is async. Every
coroutine of an actor therefore runs on one event loop through a LoopRunner: in
embedded mode the app's own loop, which shares the app's database engine, and in
``connex worker`` a loop on a thread of its own. Messages carry delivery ids only.
The database stores everything else, secrets included.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, TypeVar

import dramatiq
from dramatiq.broker import Broker
from dramatiq.brokers.redis import RedisBroker
from dramatiq.brokers.stub import StubBroker
from dramatiq.middleware import Middleware

from connex.db import Database
from connex.settings import Settings
from connex.webhooks.delivery import DeliveryRuntime, create_http_client, deliver, sweep

logger = logging.getLogger("connex.workers")

QUEUE_NAME = "webhooks"
DELIVER_ACTOR = "webhooks.deliver"
T = TypeVar("T")


class ActorQueue:
    """The DeliveryQueue that sends delivery ids to the deliver actor."""

    def __init__(self, actor: dramatiq.Actor[[str], None]) -> None:
        self.actor = actor

    def send(self, delivery_ids: Sequence[str]) -> None:
        for delivery_id in delivery_ids:
            self.actor.send(delivery_id)

    def send_later(self, delivery_id: str, delay_seconds: float) -> None:
        self.actor.send_with_options(args=(delivery_id,), delay=max(0, round(delay_seconds * 1000)))


RuntimeFactory = Callable[[], Awaitable[DeliveryRuntime]]


class LoopRunner:
    """Runner of coroutines for worker threads on one event loop, and owner of the delivery runtime.

    Given no loop, ``start`` runs a new loop on a daemon thread of its own.
    """

    def __init__(self, build_runtime: RuntimeFactory) -> None:
        self._build_runtime = build_runtime
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runtime: DeliveryRuntime | None = None

    @property
    def runtime(self) -> DeliveryRuntime:
        if self._runtime is None:
            raise RuntimeError("the webhook runner is not started; start the worker first")
        return self._runtime

    def start(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        """Attach to ``loop`` or start an own one, then build the runtime on it. Call it from a thread."""
        if loop is None:
            loop = asyncio.new_event_loop()
            self._thread = threading.Thread(target=loop.run_forever, name="webhook-event-loop", daemon=True)
            self._thread.start()
        self._loop = loop
        self._runtime = self.run(self._build_runtime())

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Run a coroutine on the loop and wait for its result. Calling it from the loop itself deadlocks."""
        if self._loop is None:
            coroutine.close()
            raise RuntimeError("the webhook runner is not started; start the worker first")
        future: Future[T] = asyncio.run_coroutine_threadsafe(coroutine, self._loop)
        return future.result()

    def stop(self) -> None:
        if self._runtime is not None:
            runtime, self._runtime = self._runtime, None
            self.run(runtime.http.aclose())
            if self._thread is not None:
                self.run(runtime.db.dispose())
        if self._thread is not None and self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=5)
            self._loop.close()
            self._thread = None
        self._loop = None


class DeliveryWorkerHooks(Middleware):
    """Start the runner and the periodic sweep with each Dramatiq worker, and stop them with it."""

    def __init__(self, runner: LoopRunner, settings: Settings, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self.runner = runner
        self.settings = settings
        self.loop = loop
        self._stop = threading.Event()
        self._sweeper: threading.Thread | None = None

    def before_worker_boot(self, broker: Broker, worker: dramatiq.Worker) -> None:
        # Dramatiq starts its worker threads between the before and after hooks, so the
        # runtime must exist before then or the first messages would find no runtime.
        self.runner.start(self.loop)

    def after_worker_boot(self, broker: Broker, worker: dramatiq.Worker) -> None:
        self._stop.clear()
        self._sweeper = threading.Thread(target=self._sweep_periodically, name="webhook-sweep", daemon=True)
        self._sweeper.start()
        logger.info("webhook worker started", extra={"sweep_interval_s": self.settings.webhook_sweep_interval_seconds})

    def before_worker_shutdown(self, broker: Broker, worker: dramatiq.Worker) -> None:
        self._stop.set()
        if self._sweeper is not None:
            self._sweeper.join(timeout=self.settings.webhook_timeout_seconds + 5)
            self._sweeper = None

    def after_worker_shutdown(self, broker: Broker, worker: dramatiq.Worker) -> None:
        self.runner.stop()
        logger.info("webhook worker stopped")

    def _sweep_periodically(self) -> None:
        # The first sweep runs at start, so a restarted worker picks up overdue deliveries at once.
        while True:
            try:
                self.runner.run(sweep(self.runner.runtime))
            except Exception:  # noqa: BLE001 - the next round retries; the deliveries stay in the database
                logger.exception("webhook sweep failed")
            if self._stop.wait(self.settings.webhook_sweep_interval_seconds):
                return


@dataclass(slots=True)
class WebhookWorkers:
    """A broker with the deliver actor declared on it, and the runner its messages use."""

    broker: Broker
    queue: ActorQueue
    runner: LoopRunner
    settings: Settings
    hooks: DeliveryWorkerHooks | None = None

    def install_hooks(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        """Make workers of this broker start the runner and the sweep on ``loop``, or on an own loop."""
        if self.hooks is None:
            self.hooks = DeliveryWorkerHooks(self.runner, self.settings, loop)
            self.broker.add_middleware(self.hooks)

    def worker(self, threads: int, loop: asyncio.AbstractEventLoop | None = None) -> dramatiq.Worker:
        """Return a Dramatiq worker for the webhook queue, for running inside this process."""
        self.install_hooks(loop)
        # A short poll timeout, as `connex worker` sets through dramatiq_worker_timeout.
        return dramatiq.Worker(self.broker, queues={QUEUE_NAME}, worker_threads=threads, worker_timeout=100)


def create_broker(settings: Settings) -> Broker:
    """Return the Redis broker when CONNEX_REDIS_URL is set, otherwise Dramatiq's in-memory stub."""
    # No Retries middleware, because the database schedules attempts. A message whose actor
    # raised is dropped, and the sweep sends its delivery again once it is overdue.
    if settings.redis_url is None:
        return StubBroker(middleware=[])
    return RedisBroker(url=settings.redis_url, middleware=[])


def setup(settings: Settings, db: Database | None = None) -> WebhookWorkers:
    """Build the broker, declare the deliver actor and return them.

    ``db`` is the database the actors use. None builds one on the runner's loop, as the
    worker command does.
    """
    broker = create_broker(settings)

    async def build_runtime() -> DeliveryRuntime:
        # No ping before each checkout: two transactions per attempt made the pings about a
        # tenth of a worker's time in bench/webhook_delivery.py. A transaction that fails on
        # a connection the server closed leaves its delivery to the sweep.
        database = db if db is not None else Database(settings.database_url, pre_ping=False)
        return DeliveryRuntime(settings, database, create_http_client(settings), queue)

    runner = LoopRunner(build_runtime)

    def deliver_webhook(delivery_id: str) -> None:
        runner.run(deliver(runner.runtime, delivery_id))

    actor = dramatiq.actor(deliver_webhook, broker=broker, actor_name=DELIVER_ACTOR, queue_name=QUEUE_NAME)
    queue = ActorQueue(actor)
    return WebhookWorkers(broker, queue, runner, settings)
