"""Webhook endpoints over REST v1/v2 and GraphQL: validation, scopes, secrets and the SSRF guard."""

from __future__ import annotations

import logging
import random

import httpx
import pytest

from connex.webhooks.payload import render_payload
from connex.webhooks.schedule import parse_retry_after, retry_delay
from tests.conftest import Caller, KeyFactory, graphql
from tests.webhook_support import WEBHOOK_SCOPES, FakeDNS, create_endpoint

PUBLIC_URL = "https://93.184.215.14/hooks/connex"

CREATE = """
mutation($input: CreateWebhookEndpointInput!) {
  createWebhookEndpoint(input: $input) { id url apiVersion eventTypes enabled secret }
}"""


@pytest.fixture
async def partner(make_key: KeyFactory) -> Caller:
    return await make_key(*WEBHOOK_SCOPES)


async def test_create_shows_secret_once(client: httpx.AsyncClient, partner: Caller) -> None:
    response = await client.post(
        "/v2/webhook_endpoints",
        json={"url": PUBLIC_URL, "event_types": ["project.created"], "api_version": "v1", "description": "CRM"},
        headers=partner.headers,
    )

    assert response.status_code == 201, response.text
    body = response.json()
    assert response.headers["location"] == f"/v2/webhook_endpoints/{body['id']}"
    assert body["secret"].startswith("whsec_")
    assert len(body["secret"]) >= len("whsec_") + 32
    assert body["api_version"] == "v1"
    assert body["event_types"] == ["project.created"]
    assert body["enabled"] is True
    fetched = (await client.get(response.headers["location"], headers=partner.headers)).json()
    listed = (await client.get("/v2/webhook_endpoints", headers=partner.headers)).json()
    assert "secret" not in fetched
    assert body["secret"] not in str(fetched)
    assert body["secret"] not in str(listed)
    assert [endpoint["id"] for endpoint in listed["data"]] == [body["id"]]
    assert fetched["created_at"] == body["created_at"]


async def test_graphql_create_and_list(client: httpx.AsyncClient, partner: Caller) -> None:
    created = await graphql(
        client, partner, CREATE, input={"url": PUBLIC_URL, "eventTypes": ["*"], "apiVersion": "V2"}
    )
    endpoint = created["data"]["createWebhookEndpoint"]
    listed = await graphql(client, partner, "{ webhookEndpoints { nodes { id apiVersion } } }")

    assert endpoint["apiVersion"] == "V2"
    assert endpoint["secret"].startswith("whsec_")
    assert listed["data"]["webhookEndpoints"]["nodes"] == [{"id": endpoint["id"], "apiVersion": "V2"}]


async def test_v1_uses_unix_times(client: httpx.AsyncClient, partner: Caller) -> None:
    created = await create_endpoint(client, partner, PUBLIC_URL, version="v1")

    assert isinstance(created["created"], int)
    assert "created_at" not in created
    listed = (await client.get("/v1/webhook_endpoints", headers=partner.headers)).json()
    assert listed["object"] == "list"
    assert listed["data"][0]["id"] == created["id"]


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("https://127.0.0.1/hook", "loopback"),
        ("https://10.1.2.3/hook", "private"),
        ("https://169.254.169.254/latest/meta-data", "link-local"),
        ("https://100.64.0.1/hook", "carrier-grade NAT"),
        ("https://[::1]/hook", "loopback"),
        ("https://[::ffff:127.0.0.1]/hook", "loopback"),
        ("https://[64:ff9b::a00:1]/hook", "private"),
        ("https://224.0.0.1/hook", "multicast"),
        ("https://0.0.0.0/hook", "this network"),
        ("http://93.184.215.14/hook", "plain http"),
        ("https://user:pw@93.184.215.14/hook", "username or password"),
        ("ftp://93.184.215.14/hook", "scheme"),
    ],
)
async def test_create_rejects_unsafe_url(client: httpx.AsyncClient, partner: Caller, url: str, reason: str) -> None:
    response = await client.post(
        "/v2/webhook_endpoints", json={"url": url, "event_types": ["*"], "api_version": "v2"}, headers=partner.headers
    )

    assert response.status_code == 422, response.text
    [error] = response.json()["errors"]
    assert error["field"] == "url"
    assert reason in error["message"]


async def test_create_rejects_name_resolving_private(
    client: httpx.AsyncClient, partner: Caller, fake_dns: FakeDNS
) -> None:
    fake_dns.records["intranet.example.test"] = ["93.184.215.14", "192.168.1.10"]

    private = await client.post(
        "/v2/webhook_endpoints",
        json={"url": "https://intranet.example.test/hook", "event_types": ["*"], "api_version": "v2"},
        headers=partner.headers,
    )
    unknown = await client.post(
        "/v2/webhook_endpoints",
        json={"url": "https://nowhere.example.test/hook", "event_types": ["*"], "api_version": "v2"},
        headers=partner.headers,
    )

    assert private.status_code == 422
    assert "192.168.1.10" in private.json()["errors"][0]["message"]
    assert unknown.status_code == 422
    assert "does not resolve" in unknown.json()["errors"][0]["message"]


async def test_create_validates_fields(client: httpx.AsyncClient, partner: Caller) -> None:
    response = await client.post(
        "/v2/webhook_endpoints",
        json={"url": PUBLIC_URL, "event_types": ["project.deleted"], "api_version": "v3"},
        headers=partner.headers,
    )
    empty = await client.post(
        "/v2/webhook_endpoints", json={"url": PUBLIC_URL, "event_types": [], "api_version": "v2"}, headers=partner.headers
    )

    assert response.status_code == 422
    fields = {error["field"] for error in response.json()["errors"]}
    assert "api_version" in fields
    assert empty.status_code == 422
    assert empty.json()["errors"][0]["field"] == "event_types"


async def test_unknown_event_type_rejected(client: httpx.AsyncClient, partner: Caller) -> None:
    response = await client.post(
        "/v2/webhook_endpoints",
        json={"url": PUBLIC_URL, "event_types": ["project.deleted"], "api_version": "v2"},
        headers=partner.headers,
    )

    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "event_types"
    assert "project.deleted" in response.json()["errors"][0]["message"]


async def test_scopes_are_enforced(client: httpx.AsyncClient, make_key: KeyFactory, partner: Caller) -> None:
    endpoint = await create_endpoint(client, partner, PUBLIC_URL)
    reader = await make_key("webhooks:read")
    projects_only = await make_key("projects:write")

    listed = await client.get("/v2/webhook_endpoints", headers=reader.headers)
    write = await client.post(
        "/v2/webhook_endpoints", json={"url": PUBLIC_URL, "event_types": ["*"], "api_version": "v2"}, headers=reader.headers
    )
    rotate = await client.post(f"/v2/webhook_endpoints/{endpoint['id']}/rotate_secret", headers=reader.headers)
    read = await client.get("/v2/webhook_endpoints", headers=projects_only.headers)

    assert listed.status_code == 200
    assert write.status_code == 403
    assert rotate.status_code == 403
    assert read.status_code == 403


async def test_other_organization_cannot_see(
    client: httpx.AsyncClient, partner: Caller, make_key: KeyFactory, services: object
) -> None:
    from tests.conftest import create_organization

    endpoint = await create_endpoint(client, partner, PUBLIC_URL)
    other_org = await create_organization(services, "globex")  # type: ignore[arg-type]
    outsider = await make_key(*WEBHOOK_SCOPES, organization_id=other_org.id)

    read = await client.get(f"/v2/webhook_endpoints/{endpoint['id']}", headers=outsider.headers)
    deliveries = await client.get(f"/v2/webhook_endpoints/{endpoint['id']}/deliveries", headers=outsider.headers)
    listed = (await client.get("/v2/webhook_endpoints", headers=outsider.headers)).json()

    assert read.status_code == 403
    assert deliveries.status_code == 403
    assert listed["data"] == []


async def test_update_and_disable(client: httpx.AsyncClient, partner: Caller) -> None:
    endpoint = await create_endpoint(client, partner, PUBLIC_URL)
    path = f"/v2/webhook_endpoints/{endpoint['id']}"

    updated = await client.patch(
        path, json={"event_types": ["project.archived"], "description": "Billing", "enabled": False}, headers=partner.headers
    )
    unsafe = await client.patch(path, json={"url": "https://192.168.0.1/x"}, headers=partner.headers)
    null_url = await client.patch(path, json={"url": None}, headers=partner.headers)
    test_event = await client.post(f"{path}/test", headers=partner.headers)

    assert updated.status_code == 200, updated.text
    assert updated.json()["event_types"] == ["project.archived"]
    assert updated.json()["description"] == "Billing"
    assert updated.json()["enabled"] is False
    assert updated.json()["disabled_reason"] == "Disabled through the API."
    assert unsafe.status_code == 422
    assert null_url.status_code == 422
    assert test_event.status_code == 409


async def test_delete_removes_endpoint(client: httpx.AsyncClient, partner: Caller) -> None:
    endpoint = await create_endpoint(client, partner, PUBLIC_URL)
    await client.post("/v2/projects", json={"name": "with a delivery"}, headers=partner.headers)
    path = f"/v2/webhook_endpoints/{endpoint['id']}"

    deleted = await client.delete(path, headers=partner.headers)
    missing = await client.get(path, headers=partner.headers)

    assert deleted.status_code == 204
    assert missing.status_code == 404


async def test_rotation_returns_new_secret(client: httpx.AsyncClient, partner: Caller) -> None:
    endpoint = await create_endpoint(client, partner, PUBLIC_URL)
    path = f"/v2/webhook_endpoints/{endpoint['id']}/rotate_secret"

    rotated = await client.post(path, headers=partner.headers)
    immediate = await client.post(path, json={"overlap_seconds": 0}, headers=partner.headers)
    invalid = await client.post(path, json={"overlap_seconds": -1}, headers=partner.headers)

    assert rotated.status_code == 200
    assert rotated.json()["secret"] != endpoint["secret"]
    assert rotated.json()["previous_secret_expires_at"] is not None
    assert immediate.json()["previous_secret_expires_at"] is None
    assert invalid.status_code == 422


async def test_test_event_creates_one_delivery(client: httpx.AsyncClient, partner: Caller) -> None:
    first = await create_endpoint(client, partner, PUBLIC_URL)
    await create_endpoint(client, partner, PUBLIC_URL + "/other")

    response = await client.post(f"/v2/webhook_endpoints/{first['id']}/test", headers=partner.headers)
    events = (await client.get("/v2/events", params={"type": "webhook_endpoint.test"}, headers=partner.headers)).json()
    deliveries = (await client.get(f"/v2/webhook_endpoints/{first['id']}/deliveries", headers=partner.headers)).json()

    assert response.status_code == 202, response.text
    assert response.json()["event_type"] == "webhook_endpoint.test"
    assert response.json()["status"] == "pending"
    assert [event["id"] for event in events["data"]] == [response.json()["event_id"]]
    assert [delivery["id"] for delivery in deliveries["data"]] == [response.json()["id"]]


async def test_secret_stays_out_of_logs_and_repr(
    client: httpx.AsyncClient, partner: Caller, caplog: pytest.LogCaptureFixture
) -> None:
    from connex.logs import configure_logging
    from connex.webhooks.endpoints import EndpointWithSecret

    # aiosqlite logs SQL parameters at DEBUG; configure_logging raises it to INFO. The root
    # handlers are put back so that caplog keeps capturing every logger at DEBUG.
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    configure_logging("DEBUG")
    root.handlers[:] = handlers
    root.setLevel(level)
    caplog.set_level(logging.DEBUG)
    url = "https://93.184.215.14/hook?token=s3cr3t-token"
    endpoint = await create_endpoint(client, partner, url)
    await client.post(f"/v2/webhook_endpoints/{endpoint['id']}/rotate_secret", headers=partner.headers)
    await client.post("/v2/projects", json={"name": "logged"}, headers=partner.headers)

    assert "POST /v2/webhook_endpoints" in caplog.text or "request" in caplog.text
    assert endpoint["secret"] not in caplog.text
    assert "s3cr3t-token" not in caplog.text
    from connex.models import WebhookEndpoint

    row = WebhookEndpoint(id="we_1", organization_id="org_1", url=url, api_version="v2", secret=endpoint["secret"])
    assert endpoint["secret"] not in repr(row)
    assert "s3cr3t-token" not in repr(row)
    assert endpoint["secret"] not in repr(EndpointWithSecret(row, endpoint["secret"]))


def test_retry_delay_stays_within_jitter() -> None:
    schedule = [5, 300, 1800]
    rng = random.Random(1)

    delays = [[retry_delay(schedule, attempt, jitter=0.2, rng=rng) for _ in range(200)] for attempt in (1, 2, 3)]

    for base, samples in zip(schedule, delays, strict=True):
        assert min(samples) >= base * 0.8
        assert max(samples) <= base * 1.2
        assert max(samples) - min(samples) > base * 0.2
    assert retry_delay(schedule, 4, jitter=0.2) is None


def test_retry_after_parsing() -> None:
    from datetime import UTC, datetime

    now = datetime(2026, 12, 4, 12, 0, 0, tzinfo=UTC)

    assert parse_retry_after("120", now) == 120.0
    assert parse_retry_after("Fri, 04 Dec 2026 12:01:00 GMT", now) == 60.0
    assert parse_retry_after("Fri, 04 Dec 2026 11:00:00 GMT", now) == 0.0
    assert parse_retry_after("soon", now) is None
    assert parse_retry_after(None, now) is None


def test_payload_versions() -> None:
    from datetime import UTC, datetime

    import orjson

    created = datetime(2026, 12, 4, 12, 0, 0, tzinfo=UTC)
    data = {"object": {"name": "Zürich", "created_at": "2026-12-04T11:00:00Z", "updated_at": "2026-12-04T11:30:00Z"}}

    v2 = orjson.loads(render_payload("evt_1", "project.created", created, data, "v2"))
    v1 = orjson.loads(render_payload("evt_1", "project.created", created, data, "v1"))

    assert v2 == {"id": "evt_1", "type": "project.created", "created_at": "2026-12-04T12:00:00Z", "data": data}
    assert v1["created"] == int(created.timestamp())
    noon = int(created.timestamp())
    assert v1["data"]["object"] == {"name": "Zürich", "created": noon - 3600, "updated": noon - 1800}
    with pytest.raises(ValueError, match="unknown API version"):
        render_payload("evt_1", "project.created", created, data, "v3")


async def test_queue_messages_carry_ids_only(client: httpx.AsyncClient, partner: Caller, services: object) -> None:
    from dramatiq import Message

    endpoint = await create_endpoint(client, partner, "https://93.184.215.14/hook?token=s3cr3t-token")
    await client.post("/v2/projects", json={"name": "queued"}, headers=partner.headers)
    broker = services.webhooks.broker  # type: ignore[attr-defined]
    queued = list(broker.queues["webhooks"].queue)

    assert len(queued) == 1
    # The stub broker queues the encoded bytes, as the Redis broker stores them.
    message = Message.decode(queued[0])
    assert message.actor_name == "webhooks.deliver"
    assert len(message.args) == 1
    assert message.args[0].startswith("msg_")
    assert message.kwargs == {}
    assert endpoint["secret"].encode() not in queued[0]
    assert b"s3cr3t-token" not in queued[0]
