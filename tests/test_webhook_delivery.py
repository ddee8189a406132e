"""Webhook attempts against real HTTP receivers on 127.0.0.1, on SQLite and PostgreSQL.

Attempts are driven by calling ``deliver`` directly with a clock the test controls, so
retry timing is checked on computed delays and never on the wall clock.
"""

from __future__ import annotations

import asyncio
import json
import random
import socket
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta

import httpx
import orjson
import pytest
from sqlalchemy import text, update
from standardwebhooks.webhooks import Webhook

from connex.context import Services
from connex.models import AttemptStatus, DeliveryStatus, WebhookDelivery, WebhookEndpoint
from connex.settings import Settings
from connex.webhooks import outbox
from connex.webhooks.delivery import (
    DeliveryRuntime,
    claim_attempt,
    create_http_client,
    deliver,
    sweep,
)
from tests.conftest import Caller, KeyFactory, graphql, make_settings
from tests.receiver import Receiver, Reply, running_receiver
from tests.webhook_support import (
    WEBHOOK_SCOPES,
    FakeClock,
    FakeDNS,
    RecordingQueue,
    attempts_of,
    create_endpoint,
    create_project,
    deliveries_of,
    load_delivery,
)

SCHEDULE = [1.0, 10.0, 100.0]


@pytest.fixture
async def settings(database_url: str) -> Settings:
    return make_settings(
        database_url,
        webhook_allow_http=True,
        webhook_ssrf_exempt_networks=["127.0.0.1/32"],
        webhook_retry_schedule=SCHEDULE,
        webhook_timeout_seconds=1.0,
        webhook_lease_margin_seconds=1.0,
        webhook_sweep_grace_seconds=5.0,
    )


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def runtime(services: Services, clock: FakeClock) -> AsyncIterator[DeliveryRuntime]:
    http = create_http_client(services.settings)
    yield DeliveryRuntime(services.settings, services.db, http, RecordingQueue(), clock=clock, rng=random.Random(7))
    await http.aclose()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with running_receiver() as receiver:
        yield receiver


@pytest.fixture
async def partner(make_key: KeyFactory) -> Caller:
    return await make_key(*WEBHOOK_SCOPES)


async def one_delivery(client: httpx.AsyncClient, partner: Caller, services: Services, endpoint_id: str) -> WebhookDelivery:
    await create_project(client, partner)
    [delivery] = await deliveries_of(services.db, endpoint_id)
    return delivery


async def exhaust(runtime: DeliveryRuntime, clock: FakeClock, delivery_id: str) -> int:
    """Run attempts, moving the clock to each due time, until the delivery is no longer pending."""
    attempts = 0
    while (await load_delivery(runtime.db, delivery_id)).status is DeliveryStatus.PENDING:
        delivery = await load_delivery(runtime.db, delivery_id)
        clock.now = max(clock.now, delivery.next_attempt_at)
        report = await deliver(runtime, delivery_id)
        assert report is not None
        attempts += 1
    return attempts


async def test_delivery_verifies_with_standardwebhooks(
    client: httpx.AsyncClient, partner: Caller, services: Services, runtime: DeliveryRuntime, receiver: Receiver
) -> None:
    endpoint = await create_endpoint(client, partner, receiver.url())
    delivery = await one_delivery(client, partner, services, endpoint["id"])

    report = await deliver(runtime, delivery.id)

    assert report is not None
    assert report.status is DeliveryStatus.SUCCEEDED
    [request] = receiver.requests
    assert request.webhook_id == delivery.id
    assert "東京".encode() in request.body
    payload = Webhook(endpoint["secret"]).verify(request.body, request.headers)
    assert payload["type"] == "project.created"
    assert payload["data"]["object"]["name"] == "Zürich 東京 ✓"
    assert payload["created_at"].endswith("Z")
    assert request.headers["content-type"] == "application/json"

    [attempt] = await attempts_of(services.db, delivery.id)
    assert attempt.status is AttemptStatus.SUCCEEDED
    assert attempt.status_code == 200
    assert attempt.response_body == "ok"
    assert attempt.request_headers["webhook-id"] == delivery.id
    assert attempt.request_headers["webhook-signature"] == "v1,<redacted>"
    assert endpoint["secret"] not in json.dumps(attempt.request_headers)
    stored = await load_delivery(services.db, delivery.id)
    assert stored.status is DeliveryStatus.SUCCEEDED
    assert stored.locked_until is None


async def test_v1_endpoint_gets_unix_times(
    client: httpx.AsyncClient, partner: Caller, services: Services, runtime: DeliveryRuntime, receiver: Receiver
) -> None:
    endpoint = await create_endpoint(client, partner, receiver.url(), version="v1", api_version="v1")
    delivery = await one_delivery(client, partner, services, endpoint["id"])

    await deliver(runtime, delivery.id)

    payload = Webhook(endpoint["secret"]).verify(receiver.requests[0].body, receiver.requests[0].headers)
    assert isinstance(payload["created"], int)
    assert "created_at" not in payload
    assert isinstance(payload["data"]["object"]["created"], int)
    assert "updated_at" not in payload["data"]["object"]


async def test_failure_schedules_jittered_retry(
    client: httpx.AsyncClient, partner: Caller, services: Services, runtime: DeliveryRuntime, clock: FakeClock
) -> None:
    with running_receiver(lambda _request: Reply(500, b"boom")) as receiver:
        endpoint = await create_endpoint(client, partner, receiver.url())
        delivery = await one_delivery(client, partner, services, endpoint["id"])

        first = await deliver(runtime, delivery.id)
        early = await deliver(runtime, delivery.id)
        clock.advance(first.next_delay)
        second = await deliver(runtime, delivery.id)

    assert first.status is DeliveryStatus.PENDING
    assert SCHEDULE[0] * 0.8 <= first.next_delay <= SCHEDULE[0] * 1.2
    assert early is None
    assert SCHEDULE[1] * 0.8 <= second.next_delay <= SCHEDULE[1] * 1.2
    assert runtime.queue.later == [(delivery.id, first.next_delay), (delivery.id, second.next_delay)]
    attempts = await attempts_of(services.db, delivery.id)
    assert [attempt.number for attempt in attempts] == [1, 2]
    assert attempts[0].status is AttemptStatus.FAILED
    assert attempts[0].status_code == 500
    assert attempts[0].response_body == "boom"
    stored = await load_delivery(services.db, delivery.id)
    assert stored.next_attempt_at - attempts[1].started_at == timedelta(seconds=second.next_delay)


async def test_last_failure_dead_letters(
    client: httpx.AsyncClient, partner: Caller, services: Services, runtime: DeliveryRuntime, clock: FakeClock
) -> None:
    with running_receiver(lambda _request: Reply(503)) as receiver:
        endpoint = await create_endpoint(client, partner, receiver.url())
        delivery = await one_delivery(client, partner, services, endpoint["id"])
        attempts = await exhaust(runtime, clock, delivery.id)
        clock.advance(1000)
        after = await deliver(runtime, delivery.id)

    assert attempts == len(SCHEDULE) + 1
    assert after is None
    assert receiver.ids() == [delivery.id] * attempts
    stored = await load_delivery(services.db, delivery.id)
    assert stored.status is DeliveryStatus.FAILED
    assert stored.next_attempt_at is None
    assert stored.completed_at is not None
    assert stored.attempt_count == attempts


@pytest.mark.parametrize(
    ("status", "retry_after", "expected"),
    [(429, "50", 50.0), (429, "100000", 100.0), (503, "0", None), (500, "50", None)],
    ids=["honoured", "capped-at-longest-delay", "shorter-than-schedule", "ignored-on-500"],
)
async def test_retry_after_bounds(
    client: httpx.AsyncClient,
    partner: Caller,
    services: Services,
    runtime: DeliveryRuntime,
    status: int,
    retry_after: str,
    expected: float | None,
) -> None:
    with running_receiver(lambda _request: Reply(status, headers={"Retry-After": retry_after})) as receiver:
        endpoint = await create_endpoint(client, partner, receiver.url())
        delivery = await one_delivery(client, partner, services, endpoint["id"])
        report = await deliver(runtime, delivery.id)

    if expected is None:
        assert SCHEDULE[0] * 0.8 <= report.next_delay <= SCHEDULE[0] * 1.2
    else:
        assert report.next_delay == expected


async def test_410_disables_endpoint(
    client: httpx.AsyncClient, partner: Caller, services: Services, runtime: DeliveryRuntime, clock: FakeClock
) -> None:
    replies = [Reply(410, b"gone"), Reply(200)]
    with running_receiver(lambda _request: replies.pop(0)) as receiver:
        endpoint = await create_endpoint(client, partner, receiver.url())
        delivery = await one_delivery(client, partner, services, endpoint["id"])
        await deliver(runtime, delivery.id)
        clock.advance(1000)
        held = await deliver(runtime, delivery.id)

        disabled = (await client.get(f"/v2/webhook_endpoints/{endpoint['id']}", headers=partner.headers)).json()
        await create_project(client, partner, "while disabled")
        enabled = await client.patch(
            f"/v2/webhook_endpoints/{endpoint['id']}", json={"enabled": True}, headers=partner.headers
        )
        resumed = await deliver(runtime, delivery.id)

    assert held is None
    assert disabled["enabled"] is False
    assert "410" in disabled["disabled_reason"]
    assert enabled.status_code == 200
    assert enabled.json()["disabled_reason"] is None
    assert resumed.status is DeliveryStatus.SUCCEEDED
    assert receiver.ids() == [delivery.id, delivery.id]
    # No delivery was created for the event that happened while the endpoint was disabled.
    assert [row.id for row in await deliveries_of(services.db, endpoint["id"])] == [delivery.id]


async def test_continuous_failure_disables_after_period(
    client: httpx.AsyncClient, partner: Caller, services: Services, runtime: DeliveryRuntime, clock: FakeClock
) -> None:
    day = 86400
    with running_receiver(lambda _request: Reply(500)) as receiver:
        endpoint = await create_endpoint(client, partner, receiver.url())
        first = await one_delivery(client, partner, services, endpoint["id"])
        await deliver(runtime, first.id)
        async with services.db.sessions() as session:
            failing_since = (await session.get(WebhookEndpoint, endpoint["id"])).failing_since

        clock.advance(4 * day)
        await deliver(runtime, first.id)
        async with services.db.sessions() as session:
            after_four_days = await session.get(WebhookEndpoint, endpoint["id"])

        clock.advance(day)
        await deliver(runtime, first.id)
        async with services.db.sessions() as session:
            after_five_days = await session.get(WebhookEndpoint, endpoint["id"])

    assert failing_since == clock.now - timedelta(days=5)
    assert after_four_days.enabled is True
    assert after_five_days.enabled is False
    assert "since" in after_five_days.disabled_reason
    assert (await load_delivery(services.db, first.id)).status is DeliveryStatus.PENDING


async def test_success_clears_failure_run(
    client: httpx.AsyncClient, partner: Caller, services: Services, runtime: DeliveryRuntime, clock: FakeClock
) -> None:
    replies = [Reply(500), Reply(200)]
    with running_receiver(lambda _request: replies.pop(0)) as receiver:
        endpoint = await create_endpoint(client, partner, receiver.url())
        delivery = await one_delivery(client, partner, services, endpoint["id"])
        await exhaust(runtime, clock, delivery.id)

    async with services.db.sessions() as session:
        stored = await session.get(WebhookEndpoint, endpoint["id"])
    assert stored.failing_since is None
    assert len(receiver.requests) == 2


async def test_rebinding_to_loopback_is_rejected(
    client: httpx.AsyncClient,
    partner: Caller,
    services: Services,
    runtime: DeliveryRuntime,
    receiver: Receiver,
    fake_dns: FakeDNS,
) -> None:
    # The name resolves to a public address when the endpoint is created, and to loopback later.
    fake_dns.records["hooks.rebind.test"] = ["93.184.215.14"]
    endpoint = await create_endpoint(client, partner, f"http://hooks.rebind.test:{receiver.port}/hook")
    delivery = await one_delivery(client, partner, services, endpoint["id"])
    fake_dns.records["hooks.rebind.test"] = ["127.0.0.1"]
    strict = services.settings.model_copy(update={"webhook_ssrf_exempt_networks": []})
    runtime.settings = strict

    report = await deliver(runtime, delivery.id)

    assert receiver.requests == []
    assert report.outcome.status_code is None
    assert "SSRF" in report.outcome.error
    assert "loopback" in report.outcome.error
    [attempt] = await attempts_of(services.db, delivery.id)
    assert attempt.status is AttemptStatus.FAILED
    assert "loopback" in attempt.error
    assert fake_dns.lookups.count("hooks.rebind.test") == 2


async def test_attempt_connects_to_checked_address(
    client: httpx.AsyncClient,
    partner: Caller,
    services: Services,
    runtime: DeliveryRuntime,
    receiver: Receiver,
    fake_dns: FakeDNS,
) -> None:
    fake_dns.records["hooks.pinned.test"] = ["127.0.0.1"]
    endpoint = await create_endpoint(client, partner, f"http://hooks.pinned.test:{receiver.port}/hook?token=abc")
    delivery = await one_delivery(client, partner, services, endpoint["id"])

    report = await deliver(runtime, delivery.id)

    assert report.status is DeliveryStatus.SUCCEEDED
    [request] = receiver.requests
    assert request.headers["host"] == f"hooks.pinned.test:{receiver.port}"
    assert request.path == "/hook?token=abc"


async def test_redirect_fails_attempt(
    client: httpx.AsyncClient, partner: Caller, services: Services, runtime: DeliveryRuntime
) -> None:
    with running_receiver(lambda _request: Reply(302, headers={"Location": "http://127.0.0.1:1/"})) as receiver:
        endpoint = await create_endpoint(client, partner, receiver.url())
        delivery = await one_delivery(client, partner, services, endpoint["id"])
        report = await deliver(runtime, delivery.id)

    assert report.status is DeliveryStatus.PENDING
    assert report.outcome.status_code == 302
    assert len(receiver.requests) == 1


async def test_slow_receiver_times_out(
    client: httpx.AsyncClient, partner: Caller, services: Services, runtime: DeliveryRuntime
) -> None:
    with running_receiver(lambda _request: Reply(200, delay=2.0)) as receiver:
        endpoint = await create_endpoint(client, partner, receiver.url())
        delivery = await one_delivery(client, partner, services, endpoint["id"])
        report = await deliver(runtime, delivery.id)

    assert report.status is DeliveryStatus.PENDING
    assert report.outcome.error == "timed out after 1 s"
    [attempt] = await attempts_of(services.db, delivery.id)
    assert attempt.error == "timed out after 1 s"
    assert attempt.status_code is None


async def test_connection_refused_fails_attempt(
    client: httpx.AsyncClient, partner: Caller, services: Services, runtime: DeliveryRuntime
) -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    endpoint = await create_endpoint(client, partner, f"http://127.0.0.1:{port}/hook")
    delivery = await one_delivery(client, partner, services, endpoint["id"])

    report = await deliver(runtime, delivery.id)

    assert report.outcome.status_code is None
    assert report.outcome.error.startswith("ConnectError")


async def test_response_body_keeps_4_kib(
    client: httpx.AsyncClient, partner: Caller, services: Services, runtime: DeliveryRuntime
) -> None:
    with running_receiver(lambda _request: Reply(500, b"x" * 10_000)) as receiver:
        endpoint = await create_endpoint(client, partner, receiver.url())
        delivery = await one_delivery(client, partner, services, endpoint["id"])
        await deliver(runtime, delivery.id)

    [attempt] = await attempts_of(services.db, delivery.id)
    assert attempt.response_body == "x" * 4096


async def test_rotation_signs_with_both_secrets(
    client: httpx.AsyncClient,
    partner: Caller,
    services: Services,
    runtime: DeliveryRuntime,
    receiver: Receiver,
    clock: FakeClock,
) -> None:
    endpoint = await create_endpoint(client, partner, receiver.url())
    rotated = await client.post(f"/v2/webhook_endpoints/{endpoint['id']}/rotate_secret", headers=partner.headers)
    assert rotated.status_code == 200, rotated.text
    new_secret = rotated.json()["secret"]
    first = await one_delivery(client, partner, services, endpoint["id"])
    await deliver(runtime, first.id)

    clock.advance(86400 + 1)
    await create_project(client, partner, "after overlap")
    second = (await deliveries_of(services.db, endpoint["id"]))[-1]
    await deliver(runtime, second.id)

    during, after = receiver.requests
    assert new_secret != endpoint["secret"]
    assert len(during.headers["webhook-signature"].split()) == 2
    Webhook(endpoint["secret"]).verify(during.body, during.headers)
    Webhook(new_secret).verify(during.body, during.headers)
    assert len(after.headers["webhook-signature"].split()) == 1
    Webhook(new_secret).verify(after.body, after.headers)
    with pytest.raises(Exception, match="No matching signature"):
        Webhook(endpoint["secret"]).verify(after.body, after.headers)


async def test_replay_keeps_webhook_id(
    client: httpx.AsyncClient, partner: Caller, services: Services, runtime: DeliveryRuntime, clock: FakeClock
) -> None:
    healthy = False
    with running_receiver(lambda _request: Reply(200 if healthy else 500)) as receiver:
        endpoint = await create_endpoint(client, partner, receiver.url())
        delivery = await one_delivery(client, partner, services, endpoint["id"])
        failed_attempts = await exhaust(runtime, clock, delivery.id)
        path = f"/v2/webhook_endpoints/{endpoint['id']}/deliveries/{delivery.id}/retry"

        healthy = True
        retried = await client.post(path, headers=partner.headers)
        report = await deliver(runtime, delivery.id)
        again = await client.post(path, headers=partner.headers)

    assert retried.status_code == 202, retried.text
    assert retried.json()["status"] == "pending"
    assert report.status is DeliveryStatus.SUCCEEDED
    assert report.number == failed_attempts + 1
    assert set(receiver.ids()) == {delivery.id}
    assert again.status_code == 409
    attempts = await attempts_of(services.db, delivery.id)
    assert [attempt.number for attempt in attempts] == list(range(1, failed_attempts + 2))


async def test_recover_replays_failures_since(
    client: httpx.AsyncClient, partner: Caller, services: Services, runtime: DeliveryRuntime, clock: FakeClock
) -> None:
    healthy = False
    with running_receiver(lambda _request: Reply(200 if healthy else 500)) as receiver:
        endpoint = await create_endpoint(client, partner, receiver.url())
        older = await one_delivery(client, partner, services, endpoint["id"])
        await asyncio.sleep(0.01)
        await create_project(client, partner, "newer")
        newer = (await deliveries_of(services.db, endpoint["id"]))[-1]
        for delivery in (older, newer):
            await exhaust(runtime, clock, delivery.id)
        receiver.requests.clear()

        healthy = True
        since = newer.created_at.isoformat()
        recovered = await graphql(
            client,
            partner,
            "mutation($input: RecoverWebhookDeliveriesInput!) { recoverWebhookDeliveries(input: $input) "
            "{ deliveryCount deliveryIds } }",
            input={"endpointId": endpoint["id"], "since": since},
        )
        report = await deliver(runtime, newer.id)

    assert recovered["data"]["recoverWebhookDeliveries"] == {"deliveryCount": 1, "deliveryIds": [newer.id]}
    assert report.status is DeliveryStatus.SUCCEEDED
    assert receiver.ids() == [newer.id]
    assert (await load_delivery(services.db, older.id)).status is DeliveryStatus.FAILED


async def test_recover_over_rest(
    client: httpx.AsyncClient, partner: Caller, services: Services, runtime: DeliveryRuntime, clock: FakeClock
) -> None:
    with running_receiver(lambda _request: Reply(500)) as receiver:
        endpoint = await create_endpoint(client, partner, receiver.url())
        delivery = await one_delivery(client, partner, services, endpoint["id"])
        await exhaust(runtime, clock, delivery.id)

    path = f"/v2/webhook_endpoints/{endpoint['id']}/recover"
    recovered = await client.post(path, json={"since": "2020-01-01T00:00:00Z"}, headers=partner.headers)
    missing = await client.post(path, json={}, headers=partner.headers)

    assert recovered.status_code == 202, recovered.text
    assert recovered.json()["delivery_ids"] == [delivery.id]
    assert recovered.json()["endpoint_id"] == endpoint["id"]
    assert (await load_delivery(services.db, delivery.id)).status is DeliveryStatus.PENDING
    assert missing.status_code == 422
    assert missing.json()["errors"][0] == {"field": "since", "location": "body", "message": "required field is missing"}


async def test_rollback_queues_nothing(services: Services, partner: Caller, client: httpx.AsyncClient) -> None:
    await create_endpoint(client, partner, "https://93.184.215.14/hook")
    queue = RecordingQueue()
    services.db.after_commit.clear()
    outbox.install(services.db, queue)
    from connex.events import record_event

    with pytest.raises(RuntimeError):
        async with services.db.transaction() as session:
            await record_event(session, partner.organization_id, "project.updated", {"object": {}})
            raise RuntimeError("roll back")
    async with services.db.sessions() as session:
        rolled_back = (await session.execute(text("SELECT count(*) FROM webhook_deliveries"))).scalar_one()

    async with services.db.transaction() as session:
        await record_event(session, partner.organization_id, "project.updated", {"object": {}})
    async with services.db.sessions() as session:
        committed = (await session.execute(text("SELECT id FROM webhook_deliveries"))).scalars().all()

    assert rolled_back == 0
    assert queue.sent == list(committed)
    assert len(committed) == 1


async def test_event_types_filter_deliveries(
    client: httpx.AsyncClient, partner: Caller, services: Services
) -> None:
    archived_only = await create_endpoint(client, partner, "https://93.184.215.14/a", event_types=["project.archived"])
    everything = await create_endpoint(client, partner, "https://93.184.215.14/b")
    project = await create_project(client, partner)
    await client.delete(f"/v2/projects/{project['id']}", headers=partner.headers)

    assert [row.event_type for row in await deliveries_of(services.db, archived_only["id"])] == ["project.archived"]
    assert [row.event_type for row in await deliveries_of(services.db, everything["id"])] == [
        "project.created",
        "project.archived",
    ]


async def test_lease_blocks_second_claim(
    client: httpx.AsyncClient, partner: Caller, services: Services, runtime: DeliveryRuntime, clock: FakeClock
) -> None:
    endpoint = await create_endpoint(client, partner, "https://93.184.215.14/hook")
    delivery = await one_delivery(client, partner, services, endpoint["id"])

    claims = await asyncio.gather(claim_attempt(runtime, delivery.id), claim_attempt(runtime, delivery.id))
    held = [claim for claim in claims if claim is not None]
    clock.advance(runtime.lease.total_seconds() - 0.5)
    during_lease = await claim_attempt(runtime, delivery.id)
    clock.advance(1)
    after_lease = await claim_attempt(runtime, delivery.id)

    assert len(held) == 1
    assert during_lease is None
    assert after_lease is not None
    assert after_lease.number == 2
    first, second = await attempts_of(services.db, delivery.id)
    assert first.status is AttemptStatus.INTERRUPTED
    assert "stopped" in first.error
    assert second.status is AttemptStatus.IN_PROGRESS


async def test_interrupted_last_attempt_dead_letters(
    client: httpx.AsyncClient, partner: Caller, services: Services, runtime: DeliveryRuntime, clock: FakeClock
) -> None:
    endpoint = await create_endpoint(client, partner, "https://93.184.215.14/hook")
    delivery = await one_delivery(client, partner, services, endpoint["id"])
    for _ in range(len(SCHEDULE) + 1):
        assert await claim_attempt(runtime, delivery.id) is not None
        clock.advance(runtime.lease.total_seconds() + 1)

    assert await claim_attempt(runtime, delivery.id) is None
    stored = await load_delivery(services.db, delivery.id)
    assert stored.status is DeliveryStatus.FAILED
    statuses = [attempt.status for attempt in await attempts_of(services.db, delivery.id)]
    assert statuses == [AttemptStatus.INTERRUPTED] * (len(SCHEDULE) + 1)


async def test_sweep_requeues_overdue(
    client: httpx.AsyncClient, partner: Caller, services: Services, runtime: DeliveryRuntime, clock: FakeClock
) -> None:
    endpoint = await create_endpoint(client, partner, "https://93.184.215.14/hook")
    delivery = await one_delivery(client, partner, services, endpoint["id"])
    clock.now = delivery.created_at

    fresh = await sweep(runtime)
    clock.advance(services.settings.webhook_sweep_grace_seconds + 1)
    overdue = await sweep(runtime)
    repeated = await sweep(runtime)
    clock.advance(services.settings.webhook_sweep_grace_seconds + 1)
    async with services.db.transaction() as session:
        await session.execute(
            update(WebhookEndpoint).where(WebhookEndpoint.id == endpoint["id"]).values(enabled=False)
        )
    disabled = await sweep(runtime)

    assert fresh == []
    assert overdue == [delivery.id]
    assert repeated == []
    assert disabled == []
    assert runtime.queue.sent == [delivery.id]


async def test_deliveries_and_attempts_filter(
    client: httpx.AsyncClient, partner: Caller, services: Services, runtime: DeliveryRuntime, receiver: Receiver
) -> None:
    endpoint = await create_endpoint(client, partner, receiver.url())
    project = await create_project(client, partner)
    await client.delete(f"/v2/projects/{project['id']}", headers=partner.headers)
    created, archived = await deliveries_of(services.db, endpoint["id"])
    await deliver(runtime, archived.id)
    base = f"/v2/webhook_endpoints/{endpoint['id']}"

    succeeded = (await client.get(f"{base}/deliveries", params={"status": "succeeded"}, headers=partner.headers)).json()
    by_type = (
        await client.get(f"{base}/deliveries", params={"event_type": "project.created"}, headers=partner.headers)
    ).json()
    later = (
        await client.get(
            f"{base}/deliveries", params={"created_after": "2999-01-01T00:00:00Z"}, headers=partner.headers
        )
    ).json()
    attempts = (await client.get(f"{base}/deliveries/{archived.id}/attempts", headers=partner.headers)).json()
    all_attempts = (await client.get(f"{base}/attempts", params={"status": "succeeded"}, headers=partner.headers)).json()
    one = (await client.get(f"{base}/deliveries/{archived.id}", headers=partner.headers)).json()
    v1 = (await client.get(f"/v1/webhook_endpoints/{endpoint['id']}/deliveries", headers=partner.headers)).json()
    query = (
        "query($id: ID!) { webhookDeliveries(endpointId: $id, status: PENDING) { nodes { id status } } "
        "webhookAttempts(endpointId: $id) { nodes { deliveryId statusCode requestHeaders } } }"
    )
    graph = (await graphql(client, partner, query, id=endpoint["id"]))["data"]

    assert [row["id"] for row in succeeded["data"]] == [archived.id]
    assert [row["id"] for row in by_type["data"]] == [created.id]
    assert later["data"] == []
    assert [row["number"] for row in attempts["data"]] == [1]
    assert attempts["data"][0]["status_code"] == 200
    assert attempts["data"][0]["request_headers"]["webhook-id"] == archived.id
    assert [row["delivery_id"] for row in all_attempts["data"]] == [archived.id]
    assert one["status"] == "succeeded"
    assert one["attempt_count"] == 1
    assert v1["object"] == "list"
    assert isinstance(v1["data"][0]["created"], int)
    assert graph["webhookDeliveries"]["nodes"] == [{"id": created.id, "status": "PENDING"}]
    assert graph["webhookAttempts"]["nodes"][0]["statusCode"] == 200


async def test_request_body_is_exact_signed_bytes(
    client: httpx.AsyncClient, partner: Caller, services: Services, runtime: DeliveryRuntime, receiver: Receiver
) -> None:
    endpoint = await create_endpoint(client, partner, receiver.url())
    delivery = await one_delivery(client, partner, services, endpoint["id"])
    await deliver(runtime, delivery.id)

    body = receiver.requests[0].body
    assert orjson.loads(body)["id"] == delivery.event_id
    assert body == orjson.dumps(orjson.loads(body))
