"""The developer portal under ``/docs``: guides, the API reference per version and the changelog.

Pages are server-rendered HTML with no third-party scripts. The reference is
rendered from the same OpenAPI document that ``/openapi/{version}.json`` serves,
and each operation has a form that sends the request from the browser with the
reader's key.
"""

from __future__ import annotations

import html
import json
from collections.abc import Callable, Mapping
from functools import cache
from importlib.metadata import metadata
from pathlib import Path
from string import Template
from typing import Any

from markdown_it import MarkdownIt
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from connex.errors import NotFound
from connex.problems import problem_response
from connex.scopes import Scope
from rest_compat.routes import VERSIONS

TEMPLATES = Path(__file__).parent / "templates"
# Portal pages that show a section of the README, the one copy of these partner guides.
README_GUIDES = {"rate-limits": "Rate limits", "webhooks": "Webhooks"}
STATIC = Path(__file__).parent / "static"

SCOPE_DESCRIPTIONS = {
    Scope.PROJECTS_READ: "List and read projects.",
    Scope.PROJECTS_WRITE: "Create, update and archive projects.",
    Scope.EVENTS_READ: "List and read events.",
    Scope.WEBHOOKS_READ: "List webhook endpoints, deliveries and attempts.",
    Scope.WEBHOOKS_WRITE: "Manage webhook endpoints and replay deliveries.",
    Scope.USAGE_READ: "Read the organization's API usage.",
    Scope.KEYS_WRITE: "Issue, rotate and revoke the organization's API keys.",
    Scope.ADMIN: "Everything, across organizations. Only for platform administrators.",
}


# CommonMark with tables; raw HTML in the source is escaped, not passed through.
_markdown = MarkdownIt("commonmark", {"html": False}).enable("table")


def markdown(text: str) -> str:
    return _markdown.render(text)


@cache
def _template(name: str) -> Template:
    return Template((TEMPLATES / name).read_text(encoding="utf-8"))


def render_page(title: str, content: str, scripts: str = "") -> HTMLResponse:
    page = _template("layout.html").substitute(title=html.escape(title), content=content, scripts=scripts)
    return HTMLResponse(page)


def _escape(value: Any) -> str:
    return html.escape(str(value))


def _pretty(value: Any) -> str:
    return html.escape(json.dumps(value, indent=2, ensure_ascii=False))


class Reference:
    """Renders one version's OpenAPI document as HTML."""

    def __init__(self, document: Mapping[str, Any]) -> None:
        self.document = document

    def resolve(self, node: Any) -> Any:
        while isinstance(node, Mapping) and "$ref" in node:
            *_, kind, name = node["$ref"].split("/")
            node = self.document["components"][kind][name]
        return node

    def type_label(self, schema: Mapping[str, Any]) -> str:
        if "$ref" in schema:
            return schema["$ref"].rsplit("/", 1)[-1]
        kind = schema.get("type", "object")
        label = " or ".join(kind) if isinstance(kind, list) else kind
        if "enum" in schema:
            label += ": " + ", ".join(str(value) for value in schema["enum"] if value is not None)
        if "format" in schema:
            label += f" ({schema['format']})"
        return label

    def render(self, version: str) -> str:
        info = self.document["info"]
        parts = [
            f"<h1>API reference {_escape(version)}</h1>",
            markdown(info.get("description", "")),
            f"<p>Base URL: <code>{_escape(self.document['servers'][0]['url'])}</code> · "
            f'<a href="/openapi/{_escape(version)}.json">OpenAPI document</a></p>',
            '<div class="keybar"><label>Your API key <input id="api-key" type="password" '
            'autocomplete="off" placeholder="cnx_..."></label> '
            '<span class="muted">kept in this tab only</span></div>',
        ]
        for path, operations in self.document["paths"].items():
            for method, operation in operations.items():
                parts.append(self.render_operation(path, method, operation))
        return "\n".join(parts)

    def render_operation(self, path: str, method: str, operation: Mapping[str, Any]) -> str:
        anchor = _escape(operation.get("operationId", f"{method}-{path}"))
        deprecated = ' <span class="tag">deprecated</span>' if operation.get("deprecated") else ""
        parameters = [self.resolve(parameter) for parameter in operation.get("parameters", [])]
        body = self.resolve(operation.get("requestBody", {}))
        body_content = body.get("content", {}).get("application/json", {})
        lines = [
            f'<section class="operation" id="{anchor}">',
            f'<h3><span class="method method-{_escape(method)}">{_escape(method.upper())}</span>'
            f"<code>{_escape(path)}</code> {_escape(operation.get('summary', ''))}{deprecated}</h3>",
            markdown(operation.get("description", "")),
        ]
        if parameters:
            lines.append(self.render_parameters(parameters))
        if body_content:
            lines.append(self.render_body(body_content))
        lines.append(self.render_responses(operation.get("responses", {})))
        lines.append(self.render_form(path, method, parameters, body_content))
        lines.append("</section>")
        return "\n".join(lines)

    def render_parameters(self, parameters: list[Mapping[str, Any]]) -> str:
        rows = [
            f"<tr><td><code>{_escape(parameter['name'])}</code></td><td>{_escape(parameter['in'])}</td>"
            f"<td>{_escape(self.type_label(parameter.get('schema', {})))}</td>"
            f"<td>{'required' if parameter.get('required') else ''}</td>"
            f"<td>{_inline(parameter.get('description', ''))}</td></tr>"
            for parameter in parameters
        ]
        return (
            "<h4>Parameters</h4><table><thead><tr><th>name</th><th>in</th><th>type</th><th></th>"
            "<th>description</th></tr></thead><tbody>" + "".join(rows) + "</tbody></table>"
        )

    def render_body(self, content: Mapping[str, Any]) -> str:
        schema = self.resolve(content.get("schema", {}))
        required = set(schema.get("required", []))
        rows = [
            f"<tr><td><code>{_escape(name)}</code></td><td>{_escape(self.type_label(field))}</td>"
            f"<td>{'required' if name in required else ''}</td>"
            f"<td>{_inline(field.get('description', ''))}</td></tr>"
            for name, field in schema.get("properties", {}).items()
        ]
        return (
            "<h4>Request body</h4><table><thead><tr><th>field</th><th>type</th><th></th>"
            "<th>description</th></tr></thead><tbody>" + "".join(rows) + "</tbody></table>"
        )

    def render_responses(self, responses: Mapping[str, Any]) -> str:
        rows = []
        for status, response in responses.items():
            response = self.resolve(response)
            rows.append(f"<tr><td><code>{_escape(status)}</code></td><td>{_inline(response.get('description', ''))}</td></tr>")
        return "<h4>Responses</h4><table><tbody>" + "".join(rows) + "</tbody></table>"

    def example_body(self, content: Mapping[str, Any]) -> Any:
        if "example" in content:
            return content["example"]
        for example in content.get("examples", {}).values():
            return self.resolve(example).get("value")
        return schema_example(self.resolve(content.get("schema", {})))

    def render_form(
        self, path: str, method: str, parameters: list[Mapping[str, Any]], body_content: Mapping[str, Any]
    ) -> str:
        base = self.document["servers"][0]["url"].split("://", 1)[-1].split("/", 1)
        prefix = "/" + base[1] if len(base) > 1 else ""
        fields = [
            f'<label>{_escape(parameter["name"])} ({_escape(parameter["in"])})'
            f'<input data-name="{_escape(parameter["name"])}" data-in="{_escape(parameter["in"])}"></label>'
            for parameter in parameters
        ]
        if body_content:
            fields.append(
                f'<label>Body (JSON)<textarea data-in="body" rows="6">{_pretty(self.example_body(body_content))}</textarea></label>'
            )
        return (
            f'<details class="try"><summary>Try it</summary><form data-method="{_escape(method.upper())}" '
            f'data-path="{_escape(prefix + path)}">{"".join(fields)}<button type="submit">Send</button>'
            '<pre class="response" aria-live="polite"></pre></form></details>'
        )


@cache
def readme_text() -> str:
    """Return the README: from the source tree when there is one, else from the package metadata.

    pyproject.toml names README.md as the package's long description, so an installed
    package carries it too.
    """
    source = Path(__file__).resolve().parents[1] / "README.md"
    if source.is_file():
        return source.read_text(encoding="utf-8")
    return metadata("connex").get_payload() or ""  # type: ignore[attr-defined]


def readme_section(heading: str) -> str:
    """Return one ``## heading`` section of the README, its subsections included, as a page."""
    lines = readme_text().splitlines()
    start = lines.index(f"## {heading}")
    end = next((index for index in range(start + 1, len(lines)) if lines[index].startswith("## ")), len(lines))
    body = [line[1:] if line.startswith("### ") else line for line in lines[start + 1 : end]]
    return "\n".join([f"# {heading}", *body])


def _scope_rows() -> str:
    return "\n".join(
        f"<tr><td><code>{_escape(scope.value)}</code></td><td>{_escape(text)}</td></tr>"
        for scope, text in SCOPE_DESCRIPTIONS.items()
    )


def changelog_html(deprecated_on: Any, sunset_on: Any) -> str:
    parts = ["<h1>Changelog</h1>"]
    for name, version in reversed(VERSIONS.items()):
        status = " <span class=\"tag\">deprecated</span>" if version.deprecated else ""
        parts.append(f"<h2>{_escape(name)}{status}</h2>")
        if version.deprecated:
            parts.append(
                f"<p>Deprecated since {_escape(deprecated_on.isoformat())}; it stops working on "
                f"{_escape(sunset_on.isoformat())}. Every response carries <code>Deprecation</code>, "
                "<code>Sunset</code> and <code>Link</code> headers. Move to the successor version "
                "before the sunset date.</p>"
            )
        parts.append("<ul>")
        for day, text in version.changelog:
            parts.append(f"<li><strong>{_escape(day.isoformat())}</strong>: {_inline(text)}</li>")
        parts.append("</ul>")
    return "\n".join(parts)


def _inline(text: str) -> str:
    """Render one line of Markdown without the enclosing paragraph."""
    return _markdown.renderInline(text)


def schema_example(schema: Mapping[str, Any]) -> Any:
    """Return the first example of a schema; OpenAPI 3.1 lists them under ``examples``."""
    examples = schema.get("examples") or [schema.get("example", {})]
    return examples[0]


def docs_routes(document_for: Callable[[str], Mapping[str, Any]], settings: Any) -> list[BaseRoute]:
    """Routes of the portal; ``document_for(version)`` returns that version's OpenAPI document."""
    base = settings.public_base_url.rstrip("/")
    guides: dict[str, tuple[str, Callable[[], str]]] = {
        "": ("Getting started", lambda: _template("index.html").substitute(base=base, project_example=_pretty(_project_example(document_for)))),
        "authentication": ("Authentication", lambda: _template("authentication.html").substitute(scope_rows=_scope_rows())),
        "errors": ("Errors", lambda: _template("errors.html").substitute(problem_example=_pretty(_problem_example(document_for)))),
        "changelog": ("Changelog", lambda: changelog_html(settings.v1_deprecated_on, settings.v1_sunset_on)),
    }
    for name, heading in README_GUIDES.items():
        guides[name] = (heading, lambda heading=heading: markdown(readme_section(heading)))
    rendered: dict[str, Response] = {}

    async def page(request: Request) -> Response:
        name = request.path_params.get("page", "")
        if name in VERSIONS:
            if name not in rendered:
                content = Reference(document_for(name)).render(name)
                rendered[name] = render_page(f"API reference {name}", content, '<script src="/docs/static/explorer.js"></script>')
            return rendered[name]
        if name not in guides:
            return problem_response(NotFound(f"No documentation page {name!r}"), instance=request.url.path)
        if name not in rendered:
            title, build = guides[name]
            rendered[name] = render_page(title, build())
        return rendered[name]

    return [
        Mount("/docs/static", app=StaticFiles(directory=STATIC), name="docs-static"),
        Route("/docs", page, methods=["GET"]),
        Route("/docs/{page}", page, methods=["GET"]),
    ]


def _project_example(document_for: Callable[[str], Mapping[str, Any]]) -> Any:
    return schema_example(document_for("v2")["components"]["schemas"]["Project"])


def _problem_example(document_for: Callable[[str], Mapping[str, Any]]) -> Any:
    response = document_for("v2")["components"]["responses"]["ValidationFailed"]
    return response["content"]["application/problem+json"]["example"]
