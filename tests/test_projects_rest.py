"""Projects and events over REST v1 and v2, on SQLite and PostgreSQL."""

from __future__ import annotations

import email.utils
from datetime import UTC, datetime

import httpx
import pytest

from tests.conftest import Caller, KeyFactory


async def create_project(client: httpx.AsyncClient, caller: Caller, name: str, version: str = "v2", **fields: object) -> dict:
    response = await client.post(f"/{version}/projects", json={"name": name, **fields}, headers=caller.headers)
    assert response.status_code == 201, response.text
    return response.json()


async def test_create_returns_201_with_location(client: httpx.AsyncClient, partner: Caller) -> None:
    response = await client.post(
        "/v2/projects", json={"name": "Zürich rollout", "description": "Phase 1"}, headers=partner.headers
    )
    assert response.status_code == 201
    body = response.json()
    assert response.headers["location"] == f"/v2/projects/{body['id']}"
    assert body["name"] == "Zürich rollout"
    assert body["description"] == "Phase 1"
    assert body["status"] == "active"
    assert body["organization_id"] == partner.organization_id
    assert body["created_at"].endswith("Z")

    fetched = await client.get(response.headers["location"], headers=partner.headers)
    assert fetched.status_code == 200
    assert fetched.json() == body


async def test_v2_list_pages_with_cursor(client: httpx.AsyncClient, partner: Caller) -> None:
    created = [await create_project(client, partner, f"p{index}") for index in range(5)]
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        params = {"limit": "2", **({"cursor": cursor} if cursor else {})}
        response = await client.get("/v2/projects", params=params, headers=partner.headers)
        assert response.status_code == 200, response.text
        body = response.json()
        assert set(body) == {"data", "next_cursor"}
        seen += [project["id"] for project in body["data"]]
        pages += 1
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert pages == 3
    assert seen == [project["id"] for project in reversed(created)]


async def test_v1_list_pages_with_offset(client: httpx.AsyncClient, partner: Caller) -> None:
    created = [await create_project(client, partner, f"p{index}", version="v1") for index in range(3)]
    first = (await client.get("/v1/projects", params={"limit": 2}, headers=partner.headers)).json()
    second = (await client.get("/v1/projects", params={"limit": 2, "offset": 2}, headers=partner.headers)).json()
    assert first["object"] == "list"
    assert first["has_more"] is True
    assert second["has_more"] is False
    ids = [project["id"] for project in first["data"] + second["data"]]
    assert ids == [project["id"] for project in reversed(created)]


async def test_v1_uses_unix_timestamps(client: httpx.AsyncClient, partner: Caller) -> None:
    v2 = await create_project(client, partner, "timestamps")
    v1 = (await client.get(f"/v1/projects/{v2['id']}", headers=partner.headers)).json()
    assert "created_at" not in v1
    assert isinstance(v1["created"], int)
    assert v1["created"] == int(datetime.fromisoformat(v2["created_at"]).timestamp())
    assert v1["updated"] == int(datetime.fromisoformat(v2["updated_at"]).timestamp())


async def test_v1_carries_deprecation_headers(client: httpx.AsyncClient, partner: Caller) -> None:
    for response in (
        await client.get("/v1/projects", headers=partner.headers),
        await client.get("/v1/projects"),  # a 401 is a v1 response too
        await client.get("/v1/nowhere", headers=partner.headers),
    ):
        deprecation = response.headers["deprecation"]
        assert deprecation.startswith("@")
        deprecated_at = datetime.fromtimestamp(int(deprecation[1:]), UTC)
        sunset_at = email.utils.parsedate_to_datetime(response.headers["sunset"])
        assert sunset_at >= deprecated_at
        assert 'rel="successor-version"' in response.headers["link"]
        assert 'rel="deprecation"' in response.headers["link"]
    v2 = await client.get("/v2/projects", headers=partner.headers)
    assert "deprecation" not in v2.headers
    assert "sunset" not in v2.headers


async def test_patch_absent_field_stays_null_clears(client: httpx.AsyncClient, partner: Caller) -> None:
    project = await create_project(client, partner, "keep", description="text")
    renamed = await client.patch(f"/v2/projects/{project['id']}", json={"name": "renamed"}, headers=partner.headers)
    assert renamed.status_code == 200
    assert renamed.json()["name"] == "renamed"
    assert renamed.json()["description"] == "text"

    cleared = await client.patch(f"/v2/projects/{project['id']}", json={"description": None}, headers=partner.headers)
    assert cleared.json()["description"] is None
    assert cleared.json()["name"] == "renamed"
    assert cleared.json()["updated_at"] >= renamed.json()["updated_at"]


async def test_patch_null_name_is_422(client: httpx.AsyncClient, partner: Caller) -> None:
    project = await create_project(client, partner, "named")
    response = await client.patch(f"/v2/projects/{project['id']}", json={"name": None}, headers=partner.headers)
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    assert [error["field"] for error in response.json()["errors"]] == ["name"]


async def test_delete_archives(client: httpx.AsyncClient, partner: Caller) -> None:
    project = await create_project(client, partner, "old")
    response = await client.delete(f"/v2/projects/{project['id']}", headers=partner.headers)
    assert response.status_code == 204
    assert response.content == b""
    active = (await client.get("/v2/projects", headers=partner.headers)).json()["data"]
    archived = (await client.get("/v2/projects", params={"status": "archived"}, headers=partner.headers)).json()["data"]
    assert active == []
    assert [item["id"] for item in archived] == [project["id"]]
    again = await client.delete(f"/v2/projects/{project['id']}", headers=partner.headers)
    assert again.status_code == 204


async def test_changes_write_events(client: httpx.AsyncClient, partner: Caller) -> None:
    project = await create_project(client, partner, "evented")
    await client.patch(f"/v2/projects/{project['id']}", json={"name": "evented 2"}, headers=partner.headers)
    await client.delete(f"/v2/projects/{project['id']}", headers=partner.headers)
    events = (await client.get("/v2/events", headers=partner.headers)).json()["data"]
    assert [event["type"] for event in events] == ["project.archived", "project.updated", "project.created"]
    assert all(event["data"]["object"]["id"] == project["id"] for event in events)
    assert events[1]["data"]["object"]["name"] == "evented 2"
    one = await client.get(f"/v2/events/{events[0]['id']}", headers=partner.headers)
    assert one.json() == events[0]
    filtered = (await client.get("/v2/events", params={"type": "project.created"}, headers=partner.headers)).json()
    assert [event["type"] for event in filtered["data"]] == ["project.created"]
    v1 = (await client.get("/v1/events", headers=partner.headers)).json()
    assert isinstance(v1["data"][0]["created"], int)
    v1_object = v1["data"][0]["data"]["object"]
    assert "created_at" not in v1_object
    assert isinstance(v1_object["created"], int)
    assert isinstance(v1_object["updated"], int)


async def test_partner_cannot_reach_other_org(
    client: httpx.AsyncClient, partner: Caller, make_key: KeyFactory, services: object
) -> None:
    from tests.conftest import create_organization

    other_org = await create_organization(services, "globex")  # type: ignore[arg-type]
    other = await make_key("projects:write", organization_id=other_org.id)
    project = await create_project(client, other, "secret plans")
    response = await client.get(f"/v2/projects/{project['id']}", headers=partner.headers)
    assert response.status_code == 403
    listing = await client.get("/v2/projects", params={"organization_id": other_org.id}, headers=partner.headers)
    assert listing.status_code == 403
    mine = (await client.get("/v2/projects", headers=partner.headers)).json()["data"]
    assert mine == []


async def test_missing_scope_is_403(client: httpx.AsyncClient, make_key: KeyFactory) -> None:
    reader = await make_key("projects:read")
    response = await client.post("/v2/projects", json={"name": "x"}, headers=reader.headers)
    assert response.status_code == 403
    assert "projects:write" in response.json()["detail"]
    no_events = await client.get("/v2/events", headers=reader.headers)
    assert no_events.status_code == 403


async def test_admin_needs_organization_id(client: httpx.AsyncClient, admin: Caller, partner: Caller) -> None:
    missing = await client.get("/v2/projects", headers=admin.headers)
    assert missing.status_code == 422
    await create_project(client, partner, "visible to admin")
    listed = await client.get("/v2/projects", params={"organization_id": partner.organization_id}, headers=admin.headers)
    assert listed.status_code == 200
    assert [item["name"] for item in listed.json()["data"]] == ["visible to admin"]


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status", "field"),
    [
        ("GET", "/v2/projects", {"params": {"limit": "2147483648"}}, 422, "limit"),
        ("GET", "/v2/projects", {"params": {"limit": "ten"}}, 422, "limit"),
        ("GET", "/v2/projects", {"params": {"limit": "0"}}, 422, "limit"),
        ("GET", "/v2/projects", {"params": {"limit": "101"}}, 422, "limit"),
        ("GET", "/v2/projects", {"params": {"status": "deleted"}}, 422, "status"),
        ("GET", "/v2/projects", {"params": {"colour": "red"}}, 422, "colour"),
        ("GET", "/v2/projects", {"params": {"cursor": "not-a-cursor"}}, 422, "cursor"),
        ("GET", "/v2/projects", {"params": [("limit", "1"), ("limit", "2")]}, 422, "limit"),
        ("POST", "/v2/projects", {"json": {"name": "x", "colour": "red"}}, 422, "colour"),
        ("POST", "/v2/projects", {"json": {"description": "no name"}}, 422, "name"),
        ("POST", "/v2/projects", {"json": {"name": 12}}, 422, "name"),
        ("POST", "/v2/projects", {"json": {"name": ""}}, 422, "name"),
        ("POST", "/v2/projects", {"json": {"name": "x" * 201}}, 422, "name"),
        ("POST", "/v2/projects", {"json": ["name"]}, 422, "body"),
    ],
)
async def test_invalid_input_names_field(
    client: httpx.AsyncClient, partner: Caller, method: str, path: str, kwargs: dict, status: int, field: str
) -> None:
    response = await client.request(method, path, headers=partner.headers, **kwargs)
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["status"] == status
    assert field in [error["field"] for error in problem["errors"]], problem


async def test_datetime_without_zone_is_422(client: httpx.AsyncClient, admin: Caller, organization: object) -> None:
    query = "mutation($input: CreateApiKeyInput!) { createApiKey(input: $input) { secret } }"
    variables = {"input": {"name": "x", "organizationId": organization.id, "scopes": ["projects:read"], "expiresAt": "2030-01-01T00:00:00"}}  # type: ignore[attr-defined]
    response = await client.post("/graphql", json={"query": query, "variables": variables}, headers=admin.headers)
    body = response.json()
    assert body["data"] is None
    assert "time zone" in body["errors"][0]["message"]


async def test_protocol_errors(client: httpx.AsyncClient, partner: Caller) -> None:
    project = await create_project(client, partner, "p")
    wrong_method = await client.put(f"/v2/projects/{project['id']}", headers=partner.headers)
    assert wrong_method.status_code == 405
    assert wrong_method.headers["allow"] == "DELETE, GET, HEAD, PATCH"

    unknown = await client.get("/v2/widgets", headers=partner.headers)
    assert unknown.status_code == 404
    assert unknown.headers["content-type"] == "application/problem+json"

    missing = await client.get("/v2/projects/proj_doesnotexist", headers=partner.headers)
    assert missing.status_code == 404

    bad_json = await client.post(
        "/v2/projects", content=b'{"name": ', headers={**partner.headers, "content-type": "application/json"}
    )
    assert bad_json.status_code == 400

    form = await client.post("/v2/projects", content=b"name=x", headers={**partner.headers, "content-type": "text/plain"})
    assert form.status_code == 415

    huge = await client.post(
        "/v2/projects", content=b'{"name": "' + b"x" * 2_000_000 + b'"}', headers={**partner.headers, "content-type": "application/json"}
    )
    assert huge.status_code == 413
    listed = (await client.get("/v2/projects", headers=partner.headers)).json()["data"]
    assert len(listed) == 1


async def test_request_id_is_returned(client: httpx.AsyncClient, partner: Caller) -> None:
    response = await client.get("/v2/projects", headers={**partner.headers, "X-Request-Id": "trace-12345678"})
    assert response.headers["x-request-id"] == "trace-12345678"
    generated = await client.get("/v2/projects", headers=partner.headers)
    assert len(generated.headers["x-request-id"]) == 24
    problem = await client.get("/v2/projects/proj_missing", headers=partner.headers)
    assert problem.json()["request_id"] == problem.headers["x-request-id"]


async def test_patch_without_change_records_nothing(client: httpx.AsyncClient, partner: Caller) -> None:
    project = await create_project(client, partner, "steady", description="same")
    unchanged = await client.patch(
        f"/v2/projects/{project['id']}", json={"name": "steady", "description": "same"}, headers=partner.headers
    )
    assert unchanged.status_code == 200
    assert unchanged.json()["updated_at"] == project["updated_at"]
    empty = await client.patch(f"/v2/projects/{project['id']}", json={}, headers=partner.headers)
    assert empty.json() == project
    events = (await client.get("/v2/events", headers=partner.headers)).json()["data"]
    assert [event["type"] for event in events] == ["project.created"]


async def test_null_body_is_422(client: httpx.AsyncClient, partner: Caller) -> None:
    project = await create_project(client, partner, "p")
    for method, path in (("POST", "/v2/projects"), ("PATCH", f"/v2/projects/{project['id']}")):
        response = await client.request(
            method, path, content=b"null", headers={**partner.headers, "content-type": "application/json"}
        )
        assert response.status_code == 422, response.text
        assert response.json()["errors"][0] == {"field": "body", "location": "body", "message": "must be a JSON object"}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"name": 123}, "must be a string"),
        ({"description": "no name"}, "required field is missing"),
    ],
)
async def test_body_errors_read_as_json_terms(client: httpx.AsyncClient, partner: Caller, body: dict, message: str) -> None:
    response = await client.post("/v2/projects", json=body, headers=partner.headers)
    errors = response.json()["errors"]
    assert errors == [{"field": "name", "location": "body", "message": message}]


async def test_query_errors_read_as_json_terms(client: httpx.AsyncClient, partner: Caller) -> None:
    response = await client.get("/v2/projects", params={"limit": "abc"}, headers=partner.headers)
    assert response.json()["errors"] == [{"field": "limit", "location": "query", "message": "must be an integer"}]


async def test_trailing_slash_and_head(client: httpx.AsyncClient, partner: Caller) -> None:
    await create_project(client, partner, "slash")
    with_slash = await client.get("/v2/projects/", headers=partner.headers)
    assert with_slash.status_code == 200
    assert len(with_slash.json()["data"]) == 1
    head = await client.head("/v2/projects", headers=partner.headers)
    assert head.status_code == 200


async def test_paths_outside_api_are_problems(client: httpx.AsyncClient) -> None:
    for path in ("/v3/projects", "/projects"):
        response = await client.get(path)
        assert response.status_code == 404
        assert response.headers["content-type"] == "application/problem+json"
    root = await client.get("/")
    assert root.status_code in (302, 307)
    assert root.headers["location"] == "/docs"
