"""The developer portal pages."""

from __future__ import annotations

import httpx
import pytest


@pytest.mark.parametrize("path", ["/docs", "/docs/authentication", "/docs/errors", "/docs/changelog", "/docs/v1", "/docs/v2"])
async def test_page_renders(client: httpx.AsyncClient, path: str) -> None:
    response = await client.get(path)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "<script src=\"http" not in response.text
    assert "$" not in response.text.replace("$CONNEX_KEY", "")


async def test_reference_lists_every_operation(client: httpx.AsyncClient) -> None:
    document = (await client.get("/openapi/v2.json")).json()
    page = (await client.get("/docs/v2")).text
    for operations in document["paths"].values():
        for operation in operations.values():
            assert f'id="{operation["operationId"]}"' in page


async def test_changelog_names_sunset(client: httpx.AsyncClient, settings: object) -> None:
    page = (await client.get("/docs/changelog")).text
    assert settings.v1_sunset_on.isoformat() in page  # type: ignore[attr-defined]
    assert "next_cursor" in page


async def test_unknown_page_is_404(client: httpx.AsyncClient) -> None:
    response = await client.get("/docs/nothing-here")
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"


async def test_static_script_served(client: httpx.AsyncClient) -> None:
    response = await client.get("/docs/static/explorer.js")
    assert response.status_code == 200
    assert "Authorization" in response.text


async def test_examples_and_markdown_rendered(client: httpx.AsyncClient) -> None:
    index = (await client.get("/docs")).text
    assert "proj_" in index
    errors = (await client.get("/docs/errors")).text
    assert "VALIDATION_FAILED" in errors
    reference = (await client.get("/docs/v2")).text
    assert "<h2>" in reference
    assert "## " not in reference


@pytest.mark.parametrize(("path", "text"), [("/docs/webhooks", "webhook-signature"), ("/docs/rate-limits", "RateLimit-Policy")])
async def test_readme_guides_served(client: httpx.AsyncClient, path: str, text: str) -> None:
    response = await client.get(path)
    assert response.status_code == 200
    assert text in response.text
    assert "<table>" in response.text
    assert "```" not in response.text
