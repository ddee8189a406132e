"""The GraphQL endpoint: operations, permissions, limits and error masking."""

from __future__ import annotations

import logging

import httpx
import pytest

from connex import projects
from connex.app import create_app
from connex.context import Services
from tests.conftest import Caller, KeyFactory, graphql

CREATE_ORG = "mutation($slug: String!) { createOrganization(input: {slug: $slug, name: \"Initech\"}) { id slug name } }"
CREATE_PROJECT = "mutation($name: String!) { createProject(input: {name: $name}) { id name status createdAt } }"
LIST_PROJECTS = """
query($first: Int, $after: String) {
  projects(first: $first, after: $after) { nodes { id name } pageInfo { hasNextPage endCursor } }
}"""


async def test_admin_creates_organization(client: httpx.AsyncClient, admin: Caller) -> None:
    created = await graphql(client, admin, CREATE_ORG, slug="initech")
    assert created["data"]["createOrganization"]["slug"] == "initech"
    listed = await graphql(client, admin, "{ organizations { slug } }")
    assert "initech" in [org["slug"] for org in listed["data"]["organizations"]]
    duplicate = await graphql(client, admin, CREATE_ORG, slug="initech")
    assert duplicate["errors"][0]["extensions"]["code"] == "CONFLICT"
    invalid = await graphql(client, admin, CREATE_ORG, slug="Not A Slug")
    assert invalid["errors"][0]["extensions"]["errors"][0]["field"] == "input.slug"


async def test_partner_cannot_create_organization(client: httpx.AsyncClient, partner: Caller) -> None:
    response = await client.post(
        "/graphql", json={"query": CREATE_ORG, "variables": {"slug": "rogue"}}, headers=partner.headers
    )
    assert response.status_code == 200
    body = response.json()
    assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    own = await graphql(client, partner, "{ organizations { id } }")
    assert [org["id"] for org in own["data"]["organizations"]] == [partner.organization_id]


async def test_projects_connection_pages(client: httpx.AsyncClient, partner: Caller) -> None:
    for index in range(3):
        await graphql(client, partner, CREATE_PROJECT, name=f"g{index}")
    first = (await graphql(client, partner, LIST_PROJECTS, first=2))["data"]["projects"]
    assert [node["name"] for node in first["nodes"]] == ["g2", "g1"]
    assert first["pageInfo"]["hasNextPage"] is True
    second = (await graphql(client, partner, LIST_PROJECTS, first=2, after=first["pageInfo"]["endCursor"]))["data"]["projects"]
    assert [node["name"] for node in second["nodes"]] == ["g0"]
    assert second["pageInfo"]["hasNextPage"] is False
    too_many = await graphql(client, partner, LIST_PROJECTS, first=101)
    assert too_many["errors"][0]["extensions"]["code"] == "VALIDATION_FAILED"


async def test_update_distinguishes_absent_and_null(client: httpx.AsyncClient, partner: Caller) -> None:
    created = await client.post("/v2/projects", json={"name": "n", "description": "d"}, headers=partner.headers)
    project_id = created.json()["id"]
    update = "mutation($input: UpdateProjectInput!) { updateProject(input: $input) { name description } }"
    renamed = await graphql(client, partner, update, input={"id": project_id, "name": "m"})
    assert renamed["data"]["updateProject"] == {"name": "m", "description": "d"}
    cleared = await graphql(client, partner, update, input={"id": project_id, "description": None})
    assert cleared["data"]["updateProject"] == {"name": "m", "description": None}


@pytest.mark.parametrize(
    ("scopes", "rest_status", "graphql_code"),
    [(("projects:read",), 200, None), (("events:read",), 403, "FORBIDDEN")],
)
async def test_same_answer_on_both_apis(
    client: httpx.AsyncClient, make_key: KeyFactory, scopes: tuple[str, ...], rest_status: int, graphql_code: str | None
) -> None:
    caller = await make_key(*scopes)
    rest = await client.get("/v2/projects", headers=caller.headers)
    body = await graphql(client, caller, LIST_PROJECTS)
    assert rest.status_code == rest_status
    code = body["errors"][0]["extensions"]["code"] if "errors" in body else None
    assert code == graphql_code


async def test_get_runs_queries_not_mutations(client: httpx.AsyncClient, partner: Caller) -> None:
    query = await client.get("/graphql", params={"query": "{ organizations { id } }"}, headers=partner.headers)
    assert query.status_code == 200
    mutation = await client.get("/graphql", params={"query": 'mutation { createProject(input: {name: "x"}) { id } }'}, headers=partner.headers)
    assert mutation.status_code == 405
    assert (await client.get("/v2/projects", headers=partner.headers)).json()["data"] == []


async def test_depth_limit(services: Services, partner: Caller) -> None:
    settings = services.settings.model_copy(update={"graphql_max_depth": 1})
    app = create_app(settings, services)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://connex.test") as client:
        shallow = await graphql(client, partner, "{ organizations { id } }")
        assert "errors" not in shallow
        deep = await graphql(client, partner, "{ projects { nodes { id } } }")
    assert "exceeds maximum operation depth of 1" in deep["errors"][0]["message"]
    assert deep["data"] is None


async def test_alias_and_token_limits(client: httpx.AsyncClient, partner: Caller) -> None:
    aliases = "{ " + " ".join(f"a{index}: organizations {{ id }}" for index in range(31)) + " }"
    body = await graphql(client, partner, aliases)
    assert "aliases" in body["errors"][0]["message"].lower()
    tokens = "{ organizations { " + "id " * 2100 + "} }"
    body = await graphql(client, partner, tokens)
    assert "token" in body["errors"][0]["message"].lower()


async def test_unexpected_error_is_masked_and_logged(
    client: httpx.AsyncClient, partner: Caller, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    async def broken(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("database password is hunter2")

    monkeypatch.setattr(projects, "list_projects", broken)
    caplog.set_level(logging.DEBUG)
    body = await graphql(client, partner, LIST_PROJECTS)
    assert body["errors"][0]["message"] == "Internal server error"
    assert "hunter2" not in str(body)
    rest = await client.get("/v2/projects", headers=partner.headers)
    assert rest.status_code == 500
    assert "hunter2" not in rest.text
    assert rest.headers["content-type"] == "application/problem+json"
    errors = [record for record in caplog.records if record.levelno >= logging.ERROR]
    assert errors, "an unexpected error must be logged at ERROR"


async def test_expected_errors_are_not_logged_at_error(
    client: httpx.AsyncClient, make_key: KeyFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caller = await make_key("events:read")
    caplog.set_level(logging.DEBUG)
    await graphql(client, caller, LIST_PROJECTS)
    await graphql(client, caller, "{ nosuchfield }")
    assert [record for record in caplog.records if record.levelno >= logging.ERROR] == []


async def test_malformed_graphql_requests(client: httpx.AsyncClient, partner: Caller) -> None:
    not_json = await client.post("/graphql", content=b"{", headers={**partner.headers, "content-type": "application/json"})
    assert not_json.status_code == 400
    no_query = await client.post("/graphql", json={"variables": {}}, headers=partner.headers)
    assert no_query.status_code == 400
    wrong_type = await client.post("/graphql", content=b"{}", headers={**partner.headers, "content-type": "text/plain"})
    assert wrong_type.status_code == 415
    syntax = await graphql(client, partner, "{ organizations { id ")
    assert syntax["errors"][0]["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"


async def test_health_and_readiness(client: httpx.AsyncClient) -> None:
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    ready = await client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"]["database"] == "ok"
