"""API key format, storage, revocation, rotation, expiry and last-use tracking."""

from __future__ import annotations

import logging
import subprocess
import sys
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import select

from connex.app import create_app
from connex.auth import flush_last_used
from connex.context import Services
from connex.db import utcnow
from connex.keys import KEY_LENGTH, PREFIX, SecretKey, generate_key, hash_key, is_well_formed
from connex.models import ApiKey
from tests.conftest import SECRET_KEY, Caller, KeyFactory, graphql, make_settings

CREATE_KEY = """
mutation($input: CreateApiKeyInput!) {
  createApiKey(input: $input) { secret apiKey { id name scopes status redactedKey organizationId } }
}"""
REVOKE = "mutation($id: ID!) { revokeApiKey(input: {id: $id}) { id status revokedAt } }"
ROTATE = """
mutation($id: ID!, $grace: Int) {
  rotateApiKey(input: {id: $id, gracePeriodSeconds: $grace}) {
    secret apiKey { id rotatedFromId } previousKey { id expiresAt status }
  }
}"""


def test_key_format_and_checksum() -> None:
    key = generate_key()
    assert key.startswith(PREFIX)
    assert len(key) == KEY_LENGTH
    assert is_well_formed(key)
    tampered = key[:10] + ("A" if key[10] != "A" else "B") + key[11:]
    assert not is_well_formed(tampered)
    assert not is_well_formed(key[:-1])
    assert not is_well_formed("ghp_" + key[4:])
    assert len({generate_key() for _ in range(1000)}) == 1000


def test_secret_key_repr_hides_value() -> None:
    key = SecretKey(generate_key())
    assert key[8:] not in repr(key)
    assert key[8:] not in repr([key])


def test_hash_is_keyed() -> None:
    key = generate_key()
    assert hash_key(b"a" * 32, key) != hash_key(b"b" * 32, key)
    assert key not in hash_key(b"a" * 32, key)


async def test_key_stored_only_as_hash(client: httpx.AsyncClient, admin: Caller, organization: object, services: Services) -> None:
    body = await graphql(
        client, admin, CREATE_KEY, input={"name": "ci", "organizationId": organization.id, "scopes": ["projects:read"]}  # type: ignore[attr-defined]
    )
    issued = body["data"]["createApiKey"]
    secret = issued["secret"]
    assert is_well_formed(secret)
    assert issued["apiKey"]["redactedKey"] == f"{PREFIX}…{secret[-4:]}"
    async with services.db.sessions() as session:
        row = await session.get(ApiKey, issued["apiKey"]["id"])
    assert row is not None
    assert row.key_hash == hash_key(SECRET_KEY.encode(), secret)
    assert secret not in repr(row.model_dump())

    listed = await graphql(client, admin, "query($o: ID) { apiKeys(organizationId: $o) { id redactedKey } }", o=organization.id)  # type: ignore[attr-defined]
    assert secret not in str(listed)
    response = await client.get("/v2/projects", headers={"Authorization": f"Bearer {secret}"})
    assert response.status_code == 200


@pytest.mark.parametrize(
    "header",
    [None, "Bearer", "Basic dXNlcjpwYXNz", "Bearer not-a-key", "Bearer " + generate_key()],
)
async def test_bad_credentials_are_401(client: httpx.AsyncClient, header: str | None) -> None:
    headers = {"Authorization": header} if header else {}
    for path in ("/v2/projects", "/v1/projects", "/graphql"):
        response = await client.get(path, headers=headers, params={"query": "{ organizations { id } }"} if path == "/graphql" else None)
        assert response.status_code == 401, (path, response.text)
        assert response.headers["content-type"] == "application/problem+json"
        assert response.headers["www-authenticate"].startswith("Bearer")


async def test_revocation_applies_on_next_request(client: httpx.AsyncClient, admin: Caller, partner: Caller) -> None:
    assert (await client.get("/v2/projects", headers=partner.headers)).status_code == 200
    revoked = await graphql(client, admin, REVOKE, id=partner.key_id)
    assert revoked["data"]["revokeApiKey"]["status"] == "REVOKED"
    response = await client.get("/v2/projects", headers=partner.headers)
    assert response.status_code == 401
    assert "revoked" in response.json()["detail"]


async def test_revocation_reaches_every_process(database_url: str, redis_url: str, make_key: KeyFactory, admin: Caller) -> None:
    """Two app instances share Redis, as two server processes do; revoking on one blocks the key on the other."""
    settings = make_settings(database_url, redis_url)
    partner = await make_key("projects:read")
    first_app, second_app = create_app(settings), create_app(settings)
    await first_app.state.services.redis.flushdb()
    async with (
        httpx.AsyncClient(transport=httpx.ASGITransport(app=first_app), base_url="http://one") as first,
        httpx.AsyncClient(transport=httpx.ASGITransport(app=second_app), base_url="http://two") as second,
    ):
        assert (await second.get("/v2/projects", headers=partner.headers)).status_code == 200
        revoked = await graphql(first, admin, REVOKE, id=partner.key_id)
        assert revoked["data"]["revokeApiKey"]["id"] == partner.key_id
        assert (await second.get("/v2/projects", headers=partner.headers)).status_code == 401
    for app in (first_app, second_app):
        await app.state.services.redis.aclose()
        await app.state.services.db.dispose()


async def test_rotation_keeps_old_key_for_grace(client: httpx.AsyncClient, admin: Caller, partner: Caller) -> None:
    rotated = (await graphql(client, admin, ROTATE, id=partner.key_id, grace=3600))["data"]["rotateApiKey"]
    new_headers = {"Authorization": f"Bearer {rotated['secret']}"}
    assert rotated["apiKey"]["rotatedFromId"] == partner.key_id
    assert rotated["previousKey"]["status"] == "ACTIVE"
    assert (await client.get("/v2/projects", headers=partner.headers)).status_code == 200
    assert (await client.get("/v2/projects", headers=new_headers)).status_code == 200


async def test_rotation_without_grace_ends_old_key(client: httpx.AsyncClient, admin: Caller, partner: Caller) -> None:
    rotated = (await graphql(client, admin, ROTATE, id=partner.key_id, grace=0))["data"]["rotateApiKey"]
    response = await client.get("/v2/projects", headers=partner.headers)
    assert response.status_code == 401
    assert "expired" in response.json()["detail"]
    new = await client.get("/v2/projects", headers={"Authorization": f"Bearer {rotated['secret']}"})
    assert new.status_code == 200
    assert rotated["previousKey"]["status"] == "EXPIRED"


async def test_rotation_rejects_bad_grace(client: httpx.AsyncClient, admin: Caller, partner: Caller) -> None:
    body = await graphql(client, admin, ROTATE, id=partner.key_id, grace=-1)
    assert body["errors"][0]["extensions"]["code"] == "VALIDATION_FAILED"
    assert body["errors"][0]["extensions"]["errors"][0]["field"] == "input.gracePeriodSeconds"


async def test_expired_key_is_401(client: httpx.AsyncClient, make_key: KeyFactory) -> None:
    expired = await make_key("projects:read", expires_at=utcnow() - timedelta(seconds=1))
    response = await client.get("/v2/projects", headers=expired.headers)
    assert response.status_code == 401
    assert "expired" in response.json()["detail"]


async def test_key_cannot_grant_more_than_creator(client: httpx.AsyncClient, make_key: KeyFactory, organization: object) -> None:
    manager = await make_key("keys:write", "projects:read")
    allowed = await graphql(client, manager, CREATE_KEY, input={"name": "ro", "scopes": ["projects:read"]})
    assert allowed["data"]["createApiKey"]["apiKey"]["organizationId"] == organization.id  # type: ignore[attr-defined]
    escalated = await graphql(client, manager, CREATE_KEY, input={"name": "rw", "scopes": ["projects:write"]})
    assert escalated["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    admin_scope = await graphql(client, manager, CREATE_KEY, input={"name": "root", "scopes": ["admin"]})
    assert admin_scope["errors"][0]["extensions"]["code"] in ("FORBIDDEN", "VALIDATION_FAILED")
    unknown = await graphql(client, manager, CREATE_KEY, input={"name": "x", "scopes": ["projects:delete"]})
    assert unknown["errors"][0]["extensions"]["code"] == "VALIDATION_FAILED"


async def test_key_management_needs_scope(client: httpx.AsyncClient, partner: Caller) -> None:
    body = await graphql(client, partner, "{ apiKeys { id } }")
    assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    assert body["data"] is None


async def test_last_used_is_buffered_then_flushed(client: httpx.AsyncClient, partner: Caller, services: Services) -> None:
    before = utcnow()
    assert (await client.get("/v2/projects", headers=partner.headers)).status_code == 200
    async with services.db.sessions() as session:
        row = await session.get(ApiKey, partner.key_id)
    assert row is not None and row.last_used_at is None
    assert await flush_last_used(services.db, services.key_cache) == 1
    async with services.db.sessions() as session:
        used_at = (await session.execute(select(ApiKey.last_used_at).where(ApiKey.id == partner.key_id))).scalar_one()
    assert used_at is not None and used_at >= before - timedelta(seconds=1)
    assert await flush_last_used(services.db, services.key_cache) == 0


async def test_no_key_in_logs(client: httpx.AsyncClient, partner: Caller, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    await client.get("/v2/projects", headers=partner.headers)
    await client.get("/v2/projects", headers={"Authorization": f"Bearer {partner.key[:-1]}x"})
    text = "\n".join(record.getMessage() + str(record.__dict__) for record in caplog.records)
    assert partner.key not in text
    assert partner.key[4:20] not in text


def test_cli_create_key_prints_only_key(tmp_path: object) -> None:
    env = {
        "CONNEX_DATABASE_URL": f"sqlite:///{tmp_path}/cli.db",
        "CONNEX_SECRET_KEY": SECRET_KEY,
        "PATH": "/usr/bin:/bin",
    }
    result = subprocess.run(
        [sys.executable, "-m", "connex.cli", "admin", "create-key", "--name", "ops", "--scope", "admin"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert is_well_formed(result.stdout.strip())
    assert result.stdout.count("\n") == 1

    refused = subprocess.run(
        [sys.executable, "-m", "connex.cli", "admin", "create-key", "--name", "x", "--org", "nope", "--scope", "projects:read"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=120,
    )
    assert refused.returncode == 2
    assert refused.stdout == ""
    assert "nope" in refused.stderr


async def test_rejected_key_is_not_marked_used(
    client: httpx.AsyncClient, admin: Caller, partner: Caller, services: Services
) -> None:
    assert (await client.get("/v2/projects", headers=partner.headers)).status_code == 200
    await flush_last_used(services.db, services.key_cache)
    async with services.db.sessions() as session:
        used_before = (await session.execute(select(ApiKey.last_used_at).where(ApiKey.id == partner.key_id))).scalar_one()
    await graphql(client, admin, REVOKE, id=partner.key_id)
    await flush_last_used(services.db, services.key_cache)
    assert (await client.get("/v2/projects", headers=partner.headers)).status_code == 401
    await flush_last_used(services.db, services.key_cache)
    async with services.db.sessions() as session:
        used_after = (await session.execute(select(ApiKey.last_used_at).where(ApiKey.id == partner.key_id))).scalar_one()
    assert used_after == used_before
