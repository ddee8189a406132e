"""The developer portal in a real browser: Chromium, driven by Playwright."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator

import pytest

from tests.live import RunningServer, run_server

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# Debian's Chromium is used as it is: the browser downloads of `playwright install` need the internet.
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

if CHROMIUM is None:
    if os.environ.get("CI") == "true":
        raise RuntimeError("Chromium is not installed; scripts/ensure-browser installs it")
    pytest.skip("Chromium is not installed", allow_module_level=True)

sync_api = pytest.importorskip("playwright.sync_api")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    with run_server(tmp_path_factory.mktemp("browser"), ["projects:write"]) as running:
        yield running


@pytest.fixture(scope="module")
def page(server: RunningServer) -> Iterator[object]:
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        page = browser.new_page()
        yield page
        browser.close()


def send_from_reference(page: object, server: RunningServer, operation_id: str, body: dict | None = None) -> str:
    page.goto(f"{server.base_url}/docs/v2")  # type: ignore[attr-defined]
    page.fill("#api-key", server.api_key)  # type: ignore[attr-defined]
    page.dispatch_event("#api-key", "change")  # type: ignore[attr-defined]
    section = page.locator(f"#{operation_id}")  # type: ignore[attr-defined]
    section.locator("summary").click()
    if body is not None:
        section.locator("textarea").fill(json.dumps(body))
    section.locator("button[type=submit]").click()
    output = section.locator(".response")
    output.filter(has_text="x-request-id").wait_for(timeout=10_000)
    return output.inner_text()


def test_try_it_creates_and_lists(page: object, server: RunningServer) -> None:
    created = send_from_reference(page, server, "createProject", {"name": "From the portal", "description": "é ✓"})
    assert created.startswith("201")
    assert '"name": "From the portal"' in created
    listed = send_from_reference(page, server, "listProjects")
    assert listed.startswith("200")
    assert "From the portal" in listed


def test_try_it_shows_problem(page: object, server: RunningServer) -> None:
    answer = send_from_reference(page, server, "createProject", {"colour": "red"})
    assert answer.startswith("422")
    assert "unknown field" in answer


def test_pages_have_no_external_requests(page: object, server: RunningServer) -> None:
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))  # type: ignore[attr-defined]
    for path in ("/docs", "/docs/v2", "/docs/changelog"):
        page.goto(server.base_url + path)  # type: ignore[attr-defined]
    assert requested
    assert all(url.startswith(server.base_url) for url in requested), requested
