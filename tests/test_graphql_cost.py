"""GraphQL query cost: the node count, the maximum, and the charge against the key's budget."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest
import strawberry

from connex import projects
from connex.settings import Settings
from schema.cost import CostAnalyzer
from tests.conftest import Caller, KeyFactory, make_settings

LIMIT = 20
MAX_COST = 4
RATELIMIT_FIELD = re.compile(r'^"default";r=(\d+);t=(\d+)$')

# Three aliased pages of 100 projects each: 300 nodes, so cost 3.
COST_3 = """
{
  a: projects(first: 100) { nodes { id } }
  b: projects(first: 100) { nodes { id } }
  c: projects(first: 100) { nodes { id } }
}"""
# Five pages of 100: cost 5, over the maximum of 4.
COST_5 = "{ " + " ".join(f"p{index}: projects(first: 100) {{ nodes {{ id }} }}" for index in range(5)) + " }"


@pytest.fixture(params=["redis", "memory"])
def backend_redis_url(request: pytest.FixtureRequest) -> str | None:
    return request.getfixturevalue("redis_url") if request.param == "redis" else None


@pytest.fixture
async def settings(database_url: str, backend_redis_url: str | None) -> Settings:
    return make_settings(database_url, backend_redis_url, rate_limit_per_minute=LIMIT, graphql_max_cost=MAX_COST)


def remaining(response: httpx.Response) -> int:
    found = RATELIMIT_FIELD.match(response.headers["ratelimit"])
    assert found, response.headers["ratelimit"]
    return int(found[1])


async def post(client: httpx.AsyncClient, caller: Caller, query: str, **variables: Any) -> httpx.Response:
    return await client.post("/graphql", json={"query": query, "variables": variables}, headers=caller.headers)


# Cost analysis against inline schemas.


@strawberry.type
class PageInfo:
    has_next_page: bool


@strawberry.type
class Label:
    name: str


@strawberry.type
class LabelConnection:
    nodes: list[Label]
    page_info: PageInfo


@strawberry.type
class Issue:
    title: str

    @strawberry.field
    def labels(self, first: int | None = None) -> LabelConnection:
        raise NotImplementedError


@strawberry.type
class IssueConnection:
    nodes: list[Issue]
    page_info: PageInfo


@strawberry.type
class Repository:
    name: str

    @strawberry.field
    def issues(self, first: int | None = None) -> IssueConnection:
        raise NotImplementedError


@strawberry.type
class RepositoryConnection:
    nodes: list[Repository]
    page_info: PageInfo


@strawberry.type
class Viewer:
    @strawberry.field
    def repositories(self, first: int = 30) -> RepositoryConnection:
        raise NotImplementedError


@strawberry.type
class NestedQuery:
    @strawberry.field
    def viewer(self) -> Viewer:
        raise NotImplementedError


@pytest.fixture(scope="module")
def analyzer() -> CostAnalyzer:
    return CostAnalyzer(strawberry.Schema(query=NestedQuery)._schema, max_tokens=2000)


@pytest.mark.parametrize(
    ("query", "variables", "nodes", "cost"),
    [
        # The example of GitHub's node limit documentation: 50 + 50 x 10 = 550 nodes.
        ("{ viewer { repositories(first: 50) { nodes { name issues(first: 10) { nodes { title } } } } } }", {}, 550, 6),
        ("{ viewer { repositories(first: 100) { nodes { name } } } }", {}, 100, 1),
        ("{ viewer { repositories { nodes { name } } } }", {}, 30, 1),
        (
            "query($n: Int) { viewer { repositories(first: $n) { nodes { issues { nodes { title } } } } } }",
            {"n": 10},
            10 + 10 * 20,
            3,
        ),
        (
            "query($n: Int = 40) { viewer { repositories(first: $n) { nodes { name } } } }",
            {},
            40,
            1,
        ),
        (
            (
                "{ viewer { repositories(first: 100) { nodes { issues(first: 100) { nodes { labels(first: 100) "
                "{ nodes { name } } } } } } } }"
            ),
            {},
            100 + 100 * 100 + 100 * 100 * 100,
            10101,
        ),
        ("{ viewer { repositories(first: 5000) { nodes { name } } } }", {}, 100, 1),
        ("{ viewer { ...Repos } } fragment Repos on Viewer { repositories(first: 70) { nodes { name } } }", {}, 70, 1),
        ("{ viewer { ... on Viewer { a: repositories(first: 70) { nodes { name } } b: repositories(first: 70) { nodes { name } } } } }", {}, 140, 2),
        ("{ viewer { missing(first: 100) { nodes { name } } } }", {}, 0, 1),
        ("{ viewer {", {}, 0, 1),
    ],
    ids=[
        "github-example",
        "one-page",
        "argument-default",
        "variable",
        "variable-default",
        "three-levels",
        "clamped-page",
        "fragment",
        "inline-fragment-aliases",
        "unknown-field",
        "syntax-error",
    ],
)
def test_cost_of_document(
    analyzer: CostAnalyzer, query: str, variables: dict[str, Any], nodes: int, cost: int
) -> None:
    measured = analyzer.measure(query, variables)
    assert measured.nodes == nodes
    assert measured.cost == cost


def test_cost_of_named_operation(analyzer: CostAnalyzer) -> None:
    document = """
    query Small { viewer { repositories(first: 10) { nodes { name } } } }
    query Large { viewer { repositories(first: 100) { nodes { issues(first: 100) { nodes { title } } } } } }
    """
    assert analyzer.measure(document, operation_name="Small").nodes == 10
    assert analyzer.measure(document, operation_name="Large").cost == 101
    assert analyzer.measure(document).cost == 1


def test_cyclic_fragments_terminate(analyzer: CostAnalyzer) -> None:
    query = "{ viewer { ...A } } fragment A on Viewer { ...B } fragment B on Viewer { ...A }"
    assert analyzer.measure(query).cost == 1


# The endpoint.


async def test_query_cost_charged_to_budget(client: httpx.AsyncClient, partner: Caller) -> None:
    cheap = await post(client, partner, "{ projects(first: 10) { nodes { id } } }")
    assert cheap.status_code == 200
    assert remaining(cheap) == LIMIT - 1
    assert cheap.json()["extensions"]["cost"]["requestedQueryCost"] == 1

    costly = await post(client, partner, COST_3)
    assert costly.status_code == 200
    assert remaining(costly) == LIMIT - 4
    cost = costly.json()["extensions"]["cost"]
    assert cost["requestedQueryCost"] == 3
    assert cost["nodeCount"] == 300
    assert cost["maximumQueryCost"] == MAX_COST
    assert cost["limit"] == LIMIT
    assert cost["remaining"] == LIMIT - 4
    assert cost["resetAt"].endswith("Z")


async def test_variables_set_the_page_size(client: httpx.AsyncClient, partner: Caller) -> None:
    query = "query($n: Int) { a: projects(first: $n) { nodes { id } } b: events(first: $n) { nodes { id } } }"
    response = await post(client, partner, query, n=100)
    assert response.json()["extensions"]["cost"]["requestedQueryCost"] == 2
    assert remaining(response) == LIMIT - 2


async def test_over_maximum_rejected_before_execution(
    client: httpx.AsyncClient, partner: Caller, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = []
    original = projects.list_projects

    async def recording_list_projects(*args: Any, **kwargs: Any) -> Any:
        calls.append(kwargs)
        return await original(*args, **kwargs)

    monkeypatch.setattr(projects, "list_projects", recording_list_projects)
    response = await post(client, partner, COST_5)

    assert response.status_code == 400
    body = response.json()
    assert body["data"] is None
    error = body["errors"][0]
    assert error["extensions"]["code"] == "COST_LIMIT_EXCEEDED"
    assert "costs 5" in error["message"]
    assert f"maximum query cost is {MAX_COST}" in error["message"]
    assert body["extensions"]["cost"]["requestedQueryCost"] == 5
    assert calls == []
    assert remaining(response) == LIMIT


async def test_cost_over_key_limit_rejected(client: httpx.AsyncClient, make_key: KeyFactory) -> None:
    caller = await make_key("projects:read", rate_limit_per_minute=2)
    response = await post(client, caller, COST_3)

    assert response.status_code == 400
    error = response.json()["errors"][0]
    assert error["extensions"]["code"] == "COST_LIMIT_EXCEEDED"
    assert "costs 3" in error["message"]
    assert "limit is 2 per 60 s" in error["message"]
    assert "maximum is 2" in error["message"]
    assert remaining(response) == 2


async def test_cost_above_remaining_gets_429(client: httpx.AsyncClient, make_key: KeyFactory) -> None:
    caller = await make_key("projects:read", rate_limit_per_minute=4)
    assert remaining(await post(client, caller, COST_3)) == 1

    rejected = await post(client, caller, COST_3)
    assert rejected.status_code == 429
    assert rejected.headers["content-type"] == "application/problem+json"
    assert int(rejected.headers["retry-after"]) >= 1
    assert "this query costs 3 and 1 remain" in rejected.json()["detail"]

    # The rejection consumed nothing, so a query of cost 1 still fits.
    fitting = await post(client, caller, "{ organizations { id } }")
    assert fitting.status_code == 200
    assert remaining(fitting) == 0


async def test_unreadable_request_costs_one(client: httpx.AsyncClient, partner: Caller) -> None:
    response = await client.post(
        "/graphql", content=b"{not json", headers={**partner.headers, "Content-Type": "application/json"}
    )
    assert response.status_code == 400
    assert remaining(response) == LIMIT - 1

    invalid = await post(client, partner, "{ projects(first: 100) { nodes { nope } } }")
    assert invalid.status_code == 400
    assert invalid.json()["errors"][0]["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"
    assert remaining(invalid) == LIMIT - 2


async def test_bad_key_with_bad_body_gets_401(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/graphql", content=b"{not json", headers={"Authorization": "Bearer cnx_x", "Content-Type": "application/json"}
    )
    assert response.status_code == 401
    assert "ratelimit" not in response.headers


async def test_get_queries_are_charged(client: httpx.AsyncClient, partner: Caller) -> None:
    response = await client.get("/graphql", params={"query": COST_3}, headers=partner.headers)
    assert response.status_code == 200
    assert remaining(response) == LIMIT - 3
