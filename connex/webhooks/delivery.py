"""Attempting webhook deliveries: claim, sign, send through the SSRF guard, record, schedule.

The database stores the state of every delivery. Queue messages carry only delivery
ids and may arrive twice, late or never. One attempt runs in three steps:

1. ``claim_attempt`` takes a lease on a due delivery with a single conditional UPDATE,
   so no other worker sends it until the lease ends, and inserts the attempt row as
   ``in_progress`` in the same commit. A worker killed while sending therefore leaves
   that row behind, and the next claim marks it ``interrupted``.
2. ``send_attempt`` sends the signed body to an address that passed the SSRF check,
   within the attempt timeout. The lease lasts longer than that timeout.
3. ``record_outcome`` stores the result, moves the delivery to its next state, updates
   the endpoint's health and, after the commit, queues the next attempt itself.

``sweep`` re-queues due deliveries whose queue message is overdue, which covers
messages lost with Redis, workers killed before queueing, and endpoints re-enabled.
"""

from __future__ import annotations

import asyncio
import logging
import random
import secrets
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import and_, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from connex import __version__
from connex.db import Database, rfc3339, utcnow
from connex.ids import new_id
from connex.models import (
    AttemptStatus,
    DeliveryStatus,
    Event,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
)
from connex.settings import Settings
from connex.webhooks.outbox import DeliveryQueue
from connex.webhooks.payload import render_payload
from connex.webhooks.schedule import max_attempts, parse_retry_after, retry_delay
from connex.webhooks.signing import HEADER_SIGNATURE, build_headers
from connex.webhooks.ssrf import UnsafeURL, check_url, create_client, resolve_and_check, send_pinned

logger = logging.getLogger("connex.webhooks")

MAX_RESPONSE_BYTES = 4096
USER_AGENT = f"ConneX-Webhooks/{__version__}"
# Statuses whose Retry-After header can lengthen the wait before the next attempt.
RETRY_AFTER_STATUSES = (429, 503)
INTERRUPTED_ERROR = "the worker stopped before it recorded the outcome"

_endpoints = WebhookEndpoint.__table__
_deliveries = WebhookDelivery.__table__
_attempts = WebhookAttempt.__table__
_events = Event.__table__


@dataclass(slots=True)
class DeliveryRuntime:
    """Dependencies of an attempt: settings, database, HTTP client, queue, and a clock tests can replace."""

    settings: Settings
    db: Database
    http: httpx.AsyncClient
    queue: DeliveryQueue
    clock: Callable[[], datetime] = utcnow
    rng: random.Random = field(default_factory=random.Random)

    @property
    def lease(self) -> timedelta:
        settings = self.settings
        return timedelta(seconds=settings.webhook_timeout_seconds + settings.webhook_lease_margin_seconds)

    @property
    def exempt_networks(self) -> Sequence[object]:
        return self.settings.webhook_ssrf_exempt_networks


def create_http_client(settings: Settings) -> httpx.AsyncClient:
    """Return the client for pinned webhook requests. It follows no redirects."""
    return create_client(timeout=settings.webhook_timeout_seconds)


@dataclass(slots=True)
class Claim:
    """A leased delivery with the exact request of its attempt."""

    delivery_id: str
    endpoint_id: str
    attempt_id: str
    number: int
    round_attempts: int
    lock_token: str = field(repr=False)
    url: str = field(repr=False)
    body: bytes = field(repr=False)
    headers: dict[str, str] = field(repr=False)


@dataclass(slots=True)
class Outcome:
    """The result of sending one attempt."""

    duration_ms: int
    status_code: int | None = None
    error: str | None = None
    response_body: str | None = None
    retry_after: float | None = None

    @property
    def succeeded(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300 and self.error is None


@dataclass(slots=True)
class AttemptReport:
    """Summary of one call of ``deliver``, for logs and tests."""

    delivery_id: str
    number: int
    outcome: Outcome
    status: DeliveryStatus
    next_delay: float | None
    lease_lost: bool = False


async def deliver(runtime: DeliveryRuntime, delivery_id: str) -> AttemptReport | None:
    """Make one attempt of a delivery if it is due and no other worker has leased it.

    Returns None when there was nothing to send: the delivery is done, not yet due,
    leased by another worker, or its endpoint is disabled.
    """
    claim = await claim_attempt(runtime, delivery_id)
    if claim is None:
        return None
    outcome = await send_attempt(runtime, claim)
    return await record_outcome(runtime, claim, outcome)


async def claim_attempt(runtime: DeliveryRuntime, delivery_id: str) -> Claim | None:
    """Lease a due delivery and insert its attempt row as in progress, in one commit."""
    now = runtime.clock()
    token = secrets.token_hex(16)
    lease_end = now + runtime.lease
    limit = max_attempts(runtime.settings.webhook_retry_schedule)
    async with runtime.db.transaction() as session:
        claimed = await _take_free_lease(session, delivery_id, now, lease_end, token, limit)
        if claimed is None:
            claimed = await _take_expired_lease(session, delivery_id, now, lease_end, token, limit)
        if claimed is None:
            return None
        return await _prepare_attempt(session, delivery_id, claimed, token, now)


def _due(delivery_id: str, now: datetime) -> list[Any]:
    """Conditions for a delivery that may be attempted now: pending, due, endpoint enabled."""
    enabled = select(_endpoints.c.id).where(_endpoints.c.enabled.is_(True))
    return [
        _deliveries.c.id == delivery_id,
        _deliveries.c.status == DeliveryStatus.PENDING,
        _deliveries.c.next_attempt_at <= now,
        _deliveries.c.endpoint_id.in_(enabled),
    ]


_CLAIMED_COLUMNS = (
    _deliveries.c.endpoint_id,
    _deliveries.c.event_id,
    _deliveries.c.api_version,
    _deliveries.c.attempt_count,
    _deliveries.c.round_attempts,
)


async def _take_free_lease(
    session: AsyncSession, delivery_id: str, now: datetime, lease_end: datetime, token: str, limit: int
) -> Any | None:
    """Lease a due delivery that no worker has leased, count the attempt, and return its row or None.

    This is the usual path: one conditional UPDATE, so of two workers racing for the
    same delivery exactly one gets a row back.
    """
    statement = (
        update(_deliveries)
        .where(
            *_due(delivery_id, now),
            _deliveries.c.locked_until.is_(None),
            _deliveries.c.round_attempts < limit,
        )
        .values(
            locked_until=lease_end,
            lock_token=token,
            attempt_count=_deliveries.c.attempt_count + 1,
            round_attempts=_deliveries.c.round_attempts + 1,
            last_attempt_at=now,
        )
        .returning(*_CLAIMED_COLUMNS)
    )
    return (await session.execute(statement)).first()


async def _take_expired_lease(
    session: AsyncSession, delivery_id: str, now: datetime, lease_end: datetime, token: str, limit: int
) -> Any | None:
    """Take over a delivery whose lease ended without an outcome: its worker stopped mid-attempt.

    The attempt it left in progress is marked interrupted and counts toward the schedule,
    so a delivery that keeps killing its worker still ends in the failed state.
    """
    statement = (
        update(_deliveries)
        .where(*_due(delivery_id, now), _deliveries.c.locked_until <= now)
        .values(locked_until=lease_end, lock_token=token)
        .returning(*_CLAIMED_COLUMNS)
    )
    expired = (await session.execute(statement)).first()
    if expired is None:
        return None
    await _close_interrupted_attempts(session, delivery_id)
    if expired.round_attempts >= limit:
        await _finish(session, delivery_id, token, DeliveryStatus.FAILED, now)
        logger.info(
            "webhook delivery failed: its last attempt was interrupted",
            extra={"delivery_id": delivery_id, "endpoint_id": expired.endpoint_id},
        )
        return None
    statement = (
        update(_deliveries)
        .where(_deliveries.c.id == delivery_id)
        .values(
            attempt_count=_deliveries.c.attempt_count + 1,
            round_attempts=_deliveries.c.round_attempts + 1,
            last_attempt_at=now,
        )
        .returning(*_CLAIMED_COLUMNS)
    )
    return (await session.execute(statement)).first()


async def _close_interrupted_attempts(session: AsyncSession, delivery_id: str) -> None:
    statement = (
        update(_attempts)
        .where(_attempts.c.delivery_id == delivery_id, _attempts.c.status == AttemptStatus.IN_PROGRESS)
        .values(status=AttemptStatus.INTERRUPTED, error=INTERRUPTED_ERROR)
    )
    result = await session.execute(statement)
    if result.rowcount:
        logger.warning(
            "webhook attempt interrupted; its worker stopped while sending",
            extra={"delivery_id": delivery_id, "attempts": result.rowcount},
        )


async def _prepare_attempt(
    session: AsyncSession, delivery_id: str, claimed: Any, token: str, now: datetime
) -> Claim:
    """Build the signed request and insert its attempt row as in progress.

    ``claimed`` contains the delivery's counts with this attempt already included.
    """
    joined = _deliveries.join(_endpoints, _endpoints.c.id == _deliveries.c.endpoint_id).join(
        _events, _events.c.id == _deliveries.c.event_id
    )
    query = (
        select(
            _endpoints.c.url,
            _endpoints.c.secret,
            _endpoints.c.previous_secret,
            _endpoints.c.previous_secret_expires_at,
            _events.c.id,
            _events.c.type,
            _events.c.created_at,
            _events.c.data,
        )
        .select_from(joined)
        .where(_deliveries.c.id == delivery_id)
    )
    row = (await session.execute(query)).one()
    body = render_payload(row.id, row.type, row.created_at, row.data, claimed.api_version)
    # The timestamp comes from the real clock, because receivers compare it with theirs.
    headers = {
        "content-type": "application/json",
        "user-agent": USER_AGENT,
        **build_headers(signing_secrets(row, now), delivery_id, int(time.time()), body),
    }
    attempt_id = new_id("att")
    await session.execute(
        _attempts.insert().values(
            id=attempt_id,
            delivery_id=delivery_id,
            endpoint_id=claimed.endpoint_id,
            number=claimed.attempt_count,
            status=AttemptStatus.IN_PROGRESS,
            started_at=now,
            request_headers=redact_headers(headers),
        )
    )
    return Claim(
        delivery_id,
        claimed.endpoint_id,
        attempt_id,
        claimed.attempt_count,
        claimed.round_attempts,
        token,
        row.url,
        body,
        headers,
    )


def signing_secrets(endpoint: Any, now: datetime) -> list[str]:
    """Return the current secret, then the previous one while its overlap lasts."""
    secrets_ = [endpoint.secret]
    previous = endpoint.previous_secret
    expires = endpoint.previous_secret_expires_at
    if previous and expires is not None and expires > now:
        secrets_.append(previous)
    return secrets_


def redact_headers(headers: dict[str, str]) -> dict[str, str]:
    """Return the headers for the attempt log, each signature replaced by ``v1,<redacted>``."""
    logged = dict(headers)
    signatures = headers[HEADER_SIGNATURE].split()
    logged[HEADER_SIGNATURE] = " ".join(f"{entry.partition(',')[0]},<redacted>" for entry in signatures)
    return logged


async def send_attempt(runtime: DeliveryRuntime, claim: Claim) -> Outcome:
    """POST the claim's body to its endpoint and return the outcome.

    Network errors, DNS failures, timeouts and SSRF rejections become the outcome's error
    instead of an exception.
    """
    settings = runtime.settings
    started = time.perf_counter()
    host = "?"
    try:
        async with asyncio.timeout(settings.webhook_timeout_seconds):
            target = check_url(
                claim.url, allow_http=settings.webhook_allow_http, exempt_networks=runtime.exempt_networks
            )
            host = target.host
            # Resolved again on every attempt: a name that was public at creation may not be now.
            addresses = await resolve_and_check(target.host, target.port, exempt_networks=runtime.exempt_networks)
            response = await send_pinned(
                runtime.http, "POST", target, addresses, headers=claim.headers, content=claim.body
            )
            try:
                outcome = await _read_response(response, started, runtime.clock())
            finally:
                await response.aclose()
    except UnsafeURL as error:
        outcome = Outcome(_elapsed_ms(started), error=f"rejected by the SSRF guard: {error}")
    except (TimeoutError, httpx.TimeoutException):
        outcome = Outcome(_elapsed_ms(started), error=f"timed out after {settings.webhook_timeout_seconds:g} s")
    except socket.gaierror as error:
        outcome = Outcome(_elapsed_ms(started), error=f"DNS lookup of {host!r} failed: {error.strerror}")
    except httpx.HTTPError as error:
        outcome = Outcome(_elapsed_ms(started), error=_describe(error, claim.url))
    except OSError as error:
        outcome = Outcome(_elapsed_ms(started), error=f"connection failed: {error.strerror or type(error).__name__}")
    _log_outcome(claim, host, outcome)
    return outcome


async def _read_response(response: httpx.Response, started: float, now: datetime) -> Outcome:
    """Read at most MAX_RESPONSE_BYTES of the body. A failure while reading keeps the status code."""
    chunks: list[bytes] = []
    size = 0
    error = None
    try:
        async for chunk in response.aiter_raw():
            chunks.append(chunk)
            size += len(chunk)
            if size >= MAX_RESPONSE_BYTES:
                break
    except httpx.HTTPError as read_error:
        error = f"reading the response body failed: {type(read_error).__name__}"
    retry_after = None
    if response.status_code in RETRY_AFTER_STATUSES:
        retry_after = parse_retry_after(response.headers.get("retry-after"), now)
    body = b"".join(chunks)[:MAX_RESPONSE_BYTES].decode("utf-8", errors="replace")
    return Outcome(_elapsed_ms(started), response.status_code, error, body, retry_after)


def _elapsed_ms(started: float) -> int:
    return round((time.perf_counter() - started) * 1000)


def _describe(error: httpx.HTTPError, url: str) -> str:
    # httpx messages rarely quote the URL. The path and query may contain a token, though,
    # so the URL and its path (the pinned request names the address instead of the host)
    # are cut out before the text reaches the attempt log.
    text = str(error) or type(error).__name__
    text = text.replace(url, "<url>")
    raw_path = httpx.URL(url).raw_path.decode("ascii")
    if raw_path != "/":
        text = text.replace(raw_path, "<path>")
    return f"{type(error).__name__}: {text}"[:1000]


def _log_outcome(claim: Claim, host: str, outcome: Outcome) -> None:
    # A failing endpoint is the partner's problem, so it is logged at INFO. The URL is
    # not logged, only its host, because webhook URLs may carry credentials.
    extra = {
        "delivery_id": claim.delivery_id,
        "endpoint_id": claim.endpoint_id,
        "attempt": claim.number,
        "host": host,
        "status_code": outcome.status_code,
        "duration_ms": outcome.duration_ms,
    }
    if outcome.succeeded:
        logger.debug("webhook attempt succeeded", extra=extra)
    else:
        logger.info("webhook attempt failed", extra={**extra, "error": outcome.error})


async def record_outcome(runtime: DeliveryRuntime, claim: Claim, outcome: Outcome) -> AttemptReport:
    """Store the attempt's result and the delivery's next state, then queue the next attempt."""
    now = runtime.clock()
    status, next_delay = _next_state(runtime, claim, outcome)
    async with runtime.db.transaction() as session:
        await session.execute(
            update(_attempts)
            .where(_attempts.c.id == claim.attempt_id)
            .values(
                status=AttemptStatus.SUCCEEDED if outcome.succeeded else AttemptStatus.FAILED,
                duration_ms=outcome.duration_ms,
                status_code=outcome.status_code,
                error=outcome.error,
                response_body=outcome.response_body,
            )
        )
        next_attempt_at = None if next_delay is None else now + timedelta(seconds=next_delay)
        lease_held = await _finish(
            session, claim.delivery_id, claim.lock_token, status, now, next_attempt_at, outcome.status_code
        )
        await _update_health(runtime, session, claim.endpoint_id, outcome, now)

    if not lease_held:
        # Another worker took the delivery over after this lease ended, so its state is theirs.
        logger.warning(
            "webhook lease expired before the attempt was recorded",
            extra={"delivery_id": claim.delivery_id, "attempt": claim.number},
        )
    elif next_delay is not None:
        await _queue_next(runtime, claim.delivery_id, next_delay)
    if status is DeliveryStatus.FAILED and lease_held:
        logger.info(
            "webhook delivery failed after its last attempt",
            extra={"delivery_id": claim.delivery_id, "endpoint_id": claim.endpoint_id, "attempts": claim.number},
        )
    return AttemptReport(claim.delivery_id, claim.number, outcome, status, next_delay, lease_lost=not lease_held)


async def _queue_next(runtime: DeliveryRuntime, delivery_id: str, delay: float) -> None:
    try:
        # The Redis broker's client blocks, so it runs outside the event loop.
        await asyncio.to_thread(runtime.queue.send_later, delivery_id, delay)
    except Exception as error:  # noqa: BLE001 - the state is committed; the sweep queues it when overdue
        logger.warning(
            "queueing the next webhook attempt failed; the sweep will send it",
            extra={"delivery_id": delivery_id, "error": repr(error)},
        )


def _next_state(runtime: DeliveryRuntime, claim: Claim, outcome: Outcome) -> tuple[DeliveryStatus, float | None]:
    if outcome.succeeded:
        return DeliveryStatus.SUCCEEDED, None
    settings = runtime.settings
    delay = retry_delay(
        settings.webhook_retry_schedule,
        claim.round_attempts,
        jitter=settings.webhook_retry_jitter,
        retry_after=outcome.retry_after,
        rng=runtime.rng,
    )
    if delay is None:
        return DeliveryStatus.FAILED, None
    return DeliveryStatus.PENDING, delay


async def _finish(
    session: AsyncSession,
    delivery_id: str,
    token: str,
    status: DeliveryStatus,
    now: datetime,
    next_attempt_at: datetime | None = None,
    status_code: int | None = None,
) -> bool:
    """Set the delivery's state and release the lease. Return False if the lease was lost."""
    values: dict[str, Any] = {
        "status": status,
        "next_attempt_at": next_attempt_at,
        "message_due_at": next_attempt_at,
        "locked_until": None,
        "lock_token": None,
        "completed_at": None if status is DeliveryStatus.PENDING else now,
    }
    if status_code is not None:
        values["last_status_code"] = status_code
    statement = (
        update(_deliveries)
        .where(_deliveries.c.id == delivery_id, _deliveries.c.lock_token == token)
        .values(**values)
    )
    result = await session.execute(statement)
    return result.rowcount == 1


async def _update_health(
    runtime: DeliveryRuntime, session: AsyncSession, endpoint_id: str, outcome: Outcome, now: datetime
) -> None:
    """Track the endpoint's run of failures, and disable it on 410 or after the configured period."""
    if outcome.succeeded:
        await session.execute(
            update(_endpoints)
            .where(_endpoints.c.id == endpoint_id, _endpoints.c.failing_since.is_not(None))
            .values(failing_since=None)
        )
        return
    if outcome.status_code == 410:
        await disable_endpoint(session, endpoint_id, "The endpoint answered 410 Gone.", now)
        return

    await session.execute(
        update(_endpoints)
        .where(_endpoints.c.id == endpoint_id, _endpoints.c.failing_since.is_(None))
        .values(failing_since=now)
    )
    failing_since = (
        await session.execute(select(_endpoints.c.failing_since).where(_endpoints.c.id == endpoint_id))
    ).scalar_one()
    limit = timedelta(seconds=runtime.settings.webhook_disable_after_seconds)
    if failing_since is not None and now - failing_since >= limit:
        reason = f"Every attempt has failed since {rfc3339(failing_since)}."
        await disable_endpoint(session, endpoint_id, reason, now)


async def disable_endpoint(session: AsyncSession, endpoint_id: str, reason: str, now: datetime) -> None:
    result = await session.execute(
        update(_endpoints)
        .where(_endpoints.c.id == endpoint_id, _endpoints.c.enabled.is_(True))
        .values(enabled=False, disabled_reason=reason, disabled_at=now, updated_at=now)
    )
    if result.rowcount:
        logger.info("webhook endpoint disabled", extra={"endpoint_id": endpoint_id, "reason": reason})


async def sweep(runtime: DeliveryRuntime, *, limit: int = 1000) -> list[str]:
    """Queue due deliveries whose queue message is overdue by the grace period, and return their ids.

    Several workers may sweep at once: marking the rows and reading their ids is one
    UPDATE, and on PostgreSQL rows that another sweep has locked are skipped.
    """
    now = runtime.clock()
    overdue = now - timedelta(seconds=runtime.settings.webhook_sweep_grace_seconds)
    enabled = select(_endpoints.c.id).where(_endpoints.c.enabled.is_(True))
    due = and_(
        _deliveries.c.status == DeliveryStatus.PENDING,
        _deliveries.c.next_attempt_at <= now,
        or_(_deliveries.c.locked_until.is_(None), _deliveries.c.locked_until <= now),
        or_(_deliveries.c.message_due_at.is_(None), _deliveries.c.message_due_at <= overdue),
        _deliveries.c.endpoint_id.in_(enabled),
    )
    candidates = select(_deliveries.c.id).where(due).order_by(_deliveries.c.next_attempt_at).limit(limit)
    if not runtime.settings.is_sqlite:
        candidates = candidates.with_for_update(skip_locked=True)
    statement = (
        update(_deliveries)
        .where(_deliveries.c.id.in_(candidates.scalar_subquery()), due)
        .values(message_due_at=now)
        .returning(_deliveries.c.id)
    )
    async with runtime.db.transaction() as session:
        delivery_ids = list((await session.execute(statement)).scalars())
    if delivery_ids:
        logger.info("webhook sweep queued overdue deliveries", extra={"delivery_count": len(delivery_ids)})
        await asyncio.to_thread(runtime.queue.send, delivery_ids)
    return delivery_ids
