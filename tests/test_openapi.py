"""The OpenAPI documents of v1 and v2: validity, agreement with the route table and with
real responses, and a client generated from the v2 document talking to a running server."""

from __future__ import annotations

import asyncio
import importlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from graphql import GraphQLEnumType, GraphQLScalarType
from jsonschema import Draft202012Validator
from openapi_spec_validator import OpenAPIV31SpecValidator, validate
from sqlalchemy import select

import connex
from connex.apikeys import issue_key
from connex.db import Database
from connex.models import Organization
from connex.scopes import parse_scopes
from connex.settings import Settings
from rest_compat.binding import enum_values, named_type
from rest_compat.compiler import CompiledRoute, compile_version
from rest_compat.openapi import build_document
from rest_compat.routes import VERSIONS
from schema import build_schema
from tests.live import RunningServer, run_server

VERSION_NAMES = list(VERSIONS)
DEPRECATION_HEADERS = ("Deprecation", "Sunset", "Link")
RATE_LIMIT_HEADERS = ("RateLimit-Policy", "RateLimit", "X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset")
VENV_BIN = Path(sys.executable).parent
GENERATOR = VENV_BIN / "openapi-python-client"


# Fixtures: settings, documents and a running server


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    with run_server(tmp_path_factory.mktemp("openapi"), ["projects:write", "events:read"]) as running:
        yield running


@pytest.fixture(scope="module")
def settings(server: RunningServer) -> Settings:
    return server.settings


@pytest.fixture(scope="module")
def schema(settings: Settings) -> Any:
    return build_schema(settings)


@pytest.fixture(scope="module")
def documents(schema: Any, settings: Settings) -> dict[str, dict[str, Any]]:
    return {name: build_document(schema, name, settings) for name in VERSION_NAMES}


@pytest.fixture(scope="module")
def routes(schema: Any) -> dict[str, list[CompiledRoute]]:
    return {name: compile_version(schema, version) for name, version in VERSIONS.items()}


@pytest.fixture
def http(server: RunningServer) -> Iterator[httpx.Client]:
    # trust_env=False keeps proxy variables from routing the requests away from 127.0.0.1.
    headers = {"Authorization": f"Bearer {server.api_key}"}
    with httpx.Client(
        base_url=server.base_url, headers=headers, timeout=10, trust_env=False
    ) as client:
        yield client


# Helpers


def resolve(document: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    """Follow a local $ref such as #/components/responses/NotFound."""
    while "$ref" in node and len(node) == 1:
        target: Any = document
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part.replace("~1", "/").replace("~0", "~")]
        node = target
    return node


def schema_validator(document: dict[str, Any], schema: dict[str, Any]) -> Draft202012Validator:
    # The document's components go into the root schema, so "#/components/schemas/..." resolves.
    root = {**schema, "components": document["components"]}
    return Draft202012Validator(root, format_checker=Draft202012Validator.FORMAT_CHECKER)


def schema_errors(document: dict[str, Any], schema: dict[str, Any], value: Any) -> list[str]:
    return [error.message for error in schema_validator(document, schema).iter_errors(value)]


def operation_of(document: dict[str, Any], route: CompiledRoute) -> dict[str, Any]:
    return document["paths"][route.spec.path][route.spec.method.lower()]


def component(document: dict[str, Any], name: str) -> dict[str, Any]:
    return document["components"]["schemas"][name]


def expected_parameter_schema(route: CompiledRoute, rest_name: str) -> dict[str, Any]:
    """Return the schema a parameter must have, written independently of the builder."""
    parameter = next(p for p in route.parameters if p.rest_name == rest_name)
    named = named_type(parameter.type)
    if isinstance(named, GraphQLEnumType):
        return {"$ref": f"#/components/schemas/{named.name}"}
    assert isinstance(named, GraphQLScalarType)
    return {
        "ID": {"type": "string"},
        "String": {"type": "string"},
        "Int": {"type": "integer", "format": "int32", "minimum": -(2**31), "maximum": 2**31 - 1},
        # Date-time parameters are RFC 3339 strings in every version.
        "DateTime": {"type": "string", "format": "date-time"},
    }[named.name]


def check_response(
    document: dict[str, Any], path: str, method: str, response: httpx.Response
) -> None:
    """Assert that a real response has a documented status, headers and body schema."""
    operation = document["paths"][path][method]
    documented = operation["responses"].get(str(response.status_code))
    assert documented is not None, (
        f"{method.upper()} {path}: status {response.status_code} is not documented"
    )
    documented = resolve(document, documented)
    for header in documented.get("headers", {}):
        assert header in response.headers, f"{method.upper()} {path}: header {header} is missing"
    content = documented.get("content")
    if content is None:
        assert response.content == b""
        return
    media_type = response.headers["content-type"].split(";")[0]
    assert media_type in content, (
        f"{method.upper()} {path}: media type {media_type} is not documented"
    )
    errors = schema_errors(document, content[media_type]["schema"], response.json())
    assert errors == [], f"{method.upper()} {path} {response.status_code}: {errors}"


# Validity


@pytest.mark.parametrize("version_name", VERSION_NAMES)
def test_document_is_valid_openapi_31(
    documents: dict[str, dict[str, Any]], version_name: str
) -> None:
    document = documents[version_name]
    assert document["openapi"] == "3.1.0"
    validate(document)
    validate(document, cls=OpenAPIV31SpecValidator)


@pytest.mark.parametrize("version_name", VERSION_NAMES)
def test_document_is_built_once(schema: Any, settings: Settings, version_name: str) -> None:
    assert build_document(schema, version_name, settings) is build_document(
        schema, version_name, settings
    )


def test_unknown_version_raises(schema: Any, settings: Settings) -> None:
    with pytest.raises(LookupError, match="v9"):
        build_document(schema, "v9", settings)


@pytest.mark.parametrize("version_name", VERSION_NAMES)
def test_info_and_servers(
    documents: dict[str, dict[str, Any]], server: RunningServer, version_name: str
) -> None:
    document = documents[version_name]
    assert document["info"]["version"] == connex.__version__
    assert version_name in document["info"]["title"]
    assert document["info"]["description"]
    assert document["servers"] == [
        {"url": f"{server.base_url}/{version_name}", "description": f"ConneX API {version_name}"}
    ]


# Agreement with the route table


@pytest.mark.parametrize("version_name", VERSION_NAMES)
def test_every_route_has_operation(
    documents: dict[str, dict[str, Any]], routes: dict[str, list[CompiledRoute]], version_name: str
) -> None:
    document = documents[version_name]
    expected = {(route.spec.path, route.spec.method.lower()) for route in routes[version_name]}
    documented = {
        (path, method)
        for path, item in document["paths"].items()
        for method in item
        if not method.startswith("x-")
    }
    assert documented == expected
    for route in routes[version_name]:
        operation = operation_of(document, route)
        assert operation["summary"] == route.spec.summary
        assert operation["tags"] == [route.spec.tag]
        assert operation["x-required-scope"] == route.spec.scope.value
        assert f"`{route.spec.scope.value}`" in operation["description"]


@pytest.mark.parametrize("version_name", VERSION_NAMES)
def test_operation_ids_unique(documents: dict[str, dict[str, Any]], version_name: str) -> None:
    operations = [op for item in documents[version_name]["paths"].values() for op in item.values()]
    operation_ids = [operation["operationId"] for operation in operations]
    assert len(set(operation_ids)) == len(operation_ids)
    assert "listProjects" in operation_ids


@pytest.mark.parametrize("version_name", VERSION_NAMES)
def test_parameters_documented_with_types(
    documents: dict[str, dict[str, Any]], routes: dict[str, list[CompiledRoute]], version_name: str
) -> None:
    document = documents[version_name]
    for route in routes[version_name]:
        operation = operation_of(document, route)
        documented = {(p["name"], p["in"]): p for p in operation.get("parameters", [])}
        expected = {(p.rest_name, p.location) for p in route.parameters}
        assert set(documented) == expected, f"{route.spec.method} {route.spec.path}"
        for parameter in route.parameters:
            entry = documented[(parameter.rest_name, parameter.location)]
            schema = {
                key: value
                for key, value in entry["schema"].items()
                if key not in ("description", "default")
            }
            assert schema == expected_parameter_schema(route, parameter.rest_name), (
                parameter.rest_name
            )
            assert entry["required"] is parameter.required
            assert entry.get("description"), (
                f"{route.spec.path}: {parameter.rest_name} has no description"
            )


@pytest.mark.parametrize("version_name", VERSION_NAMES)
def test_path_parameters_required_strings(
    documents: dict[str, dict[str, Any]], routes: dict[str, list[CompiledRoute]], version_name: str
) -> None:
    document = documents[version_name]
    for route in routes[version_name]:
        for parameter in operation_of(document, route).get("parameters", []):
            if parameter["in"] == "path":
                assert "{" + parameter["name"] + "}" in route.spec.path
                assert parameter["required"] is True
                assert parameter["schema"]["type"] == "string"


@pytest.mark.parametrize("version_name", VERSION_NAMES)
def test_list_parameters_by_version(
    documents: dict[str, dict[str, Any]], version_name: str
) -> None:
    operation = documents[version_name]["paths"]["/projects"]["get"]
    names = {parameter["name"] for parameter in operation["parameters"]}
    paging = (
        {"limit", "offset"}
        if VERSIONS[version_name].list_style == "offset"
        else {"limit", "cursor"}
    )
    assert names == paging | {"status", "organization_id"}
    status = next(
        parameter for parameter in operation["parameters"] if parameter["name"] == "status"
    )
    assert status["schema"]["default"] == "active"


@pytest.mark.parametrize("version_name", VERSION_NAMES)
def test_enum_values_lowercase(
    documents: dict[str, dict[str, Any]], schema: Any, version_name: str
) -> None:
    status = component(documents[version_name], "ProjectStatus")
    assert status["type"] == "string"
    assert status["enum"] == enum_values(schema._schema.type_map["ProjectStatus"])
    assert status["enum"] == ["active", "archived"]


@pytest.mark.parametrize("version_name", VERSION_NAMES)
def test_nullable_fields_use_type_list(
    documents: dict[str, dict[str, Any]], version_name: str
) -> None:
    document = documents[version_name]
    assert component(document, "Project")["properties"]["description"]["type"] == ["string", "null"]
    assert component(document, "CreateProjectInput")["properties"]["description"]["type"] == [
        "string",
        "null",
    ]
    update = component(document, "UpdateProjectInput")["properties"]
    assert update["name"]["type"] == ["string", "null"]
    assert update["description"]["type"] == ["string", "null"]
    assert update["status"]["anyOf"] == [
        {"$ref": "#/components/schemas/ProjectStatus"},
        {"type": "null"},
    ]


@pytest.mark.parametrize("version_name", VERSION_NAMES)
def test_non_null_fields_required(documents: dict[str, dict[str, Any]], version_name: str) -> None:
    project = component(documents[version_name], "Project")
    assert set(project["required"]) == set(project["properties"])
    assert project["properties"]["name"] == {"type": "string"}
    assert project["properties"]["status"] == {"$ref": "#/components/schemas/ProjectStatus"}


def test_v1_timestamps_are_unix_integers(documents: dict[str, dict[str, Any]]) -> None:
    document = documents["v1"]
    for name, fields in (("Project", ("created", "updated")), ("Event", ("created",))):
        properties = component(document, name)["properties"]
        for field in fields:
            assert properties[field]["type"] == "integer", f"{name}.{field}"
            assert properties[field]["format"] == "int64", f"{name}.{field}"
        assert "created_at" not in properties


def test_v2_timestamps_are_date_time_strings(documents: dict[str, dict[str, Any]]) -> None:
    document = documents["v2"]
    for name, fields in (("Project", ("created_at", "updated_at")), ("Event", ("created_at",))):
        properties = component(document, name)["properties"]
        for field in fields:
            assert properties[field]["type"] == "string", f"{name}.{field}"
            assert properties[field]["format"] == "date-time", f"{name}.{field}"
        assert "created" not in properties


def test_v1_list_envelope(documents: dict[str, dict[str, Any]]) -> None:
    for name, item in (("ProjectList", "Project"), ("EventList", "Event")):
        envelope = component(documents["v1"], name)
        assert envelope["required"] == ["object", "data", "has_more"]
        assert envelope["properties"]["object"]["const"] == "list"
        assert envelope["properties"]["data"]["items"] == {"$ref": f"#/components/schemas/{item}"}
        assert envelope["properties"]["has_more"]["type"] == "boolean"


def test_v2_list_envelope(documents: dict[str, dict[str, Any]]) -> None:
    for name, item in (("ProjectList", "Project"), ("EventList", "Event")):
        envelope = component(documents["v2"], name)
        assert envelope["required"] == ["data", "next_cursor"]
        assert envelope["properties"]["data"]["items"] == {"$ref": f"#/components/schemas/{item}"}
        assert envelope["properties"]["next_cursor"]["type"] == ["string", "null"]
        assert "`cursor`" in envelope["properties"]["next_cursor"]["description"]


@pytest.mark.parametrize("version_name", VERSION_NAMES)
def test_request_bodies_from_input_types(
    documents: dict[str, dict[str, Any]], routes: dict[str, list[CompiledRoute]], version_name: str
) -> None:
    document = documents[version_name]
    for route in routes[version_name]:
        operation = operation_of(document, route)
        if route.body is None:
            assert "requestBody" not in operation
            continue
        body = operation["requestBody"]
        assert body["required"] is True
        media_type = body["content"]["application/json"]
        assert media_type["schema"] == {
            "$ref": f"#/components/schemas/{route.body.object_type.name}"
        }
        assert media_type["example"]

    create = component(document, "CreateProjectInput")
    assert create["additionalProperties"] is False
    assert create["required"] == ["name"]
    assert set(create["properties"]) == {"name", "description", "organization_id"}
    assert (
        create["properties"]["organization_id"]["description"]
        == "Needed only with a platform admin key."
    )
    update = component(document, "UpdateProjectInput")
    assert update["additionalProperties"] is False
    assert "required" not in update
    assert set(update["properties"]) == {"name", "description", "status"}


@pytest.mark.parametrize("version_name", VERSION_NAMES)
def test_error_responses_by_route(
    documents: dict[str, dict[str, Any]], routes: dict[str, list[CompiledRoute]], version_name: str
) -> None:
    document = documents[version_name]
    for route in routes[version_name]:
        label = f"{version_name} {route.spec.method} {route.spec.path}"
        responses = operation_of(document, route)["responses"]
        expected = {"401", "403", "429", "500"}
        if route.parameters or route.body is not None:
            expected.add("422")
        if route.path_parameters:
            expected.add("404")
        if route.body is not None:
            expected |= {"400", "413", "415"}
        assert expected <= set(responses), f"{label}: missing {expected - set(responses)}"
        for status, response in responses.items():
            if status.startswith("2"):
                continue
            content = resolve(document, response)["content"]
            assert content["application/problem+json"]["schema"] == {
                "$ref": "#/components/schemas/Problem"
            }, label
        assert str(route.spec.status) in responses, label


@pytest.mark.parametrize("version_name", VERSION_NAMES)
def test_success_responses_by_kind(
    documents: dict[str, dict[str, Any]], routes: dict[str, list[CompiledRoute]], version_name: str
) -> None:
    document = documents[version_name]
    for route in routes[version_name]:
        response = operation_of(document, route)["responses"][str(route.spec.status)]
        if route.spec.kind == "empty":
            assert "content" not in response
            continue
        schema = response["content"]["application/json"]["schema"]
        if route.spec.kind == "list":
            node_type = route.shape.child("nodes").graphql_type.name
            assert schema == {"$ref": f"#/components/schemas/{node_type}List"}
        else:
            assert schema == {"$ref": f"#/components/schemas/{route.shape.graphql_type.name}"}
        if route.spec.status == 201:
            assert "Location" in response["headers"]


def test_v1_operations_deprecated_with_headers(documents: dict[str, dict[str, Any]]) -> None:
    document = documents["v1"]
    for path, item in document["paths"].items():
        for method, operation in item.items():
            assert operation.get("deprecated") is True, f"{method.upper()} {path}"
            for status, response in operation["responses"].items():
                headers = resolve(document, response)["headers"]
                for name in (*DEPRECATION_HEADERS, "X-Request-Id"):
                    assert name in headers, f"{method.upper()} {path} {status}: no {name}"


def test_v2_operations_not_deprecated(documents: dict[str, dict[str, Any]]) -> None:
    document = documents["v2"]
    for path, item in document["paths"].items():
        for method, operation in item.items():
            assert "deprecated" not in operation, f"{method.upper()} {path}"
            for status, response in operation["responses"].items():
                headers = resolve(document, response)["headers"]
                assert "X-Request-Id" in headers, f"{method.upper()} {path} {status}"
                assert not set(DEPRECATION_HEADERS) & set(headers), (
                    f"{method.upper()} {path} {status}"
                )


@pytest.mark.parametrize("version_name", VERSION_NAMES)
def test_rate_limit_headers_documented(documents: dict[str, dict[str, Any]], version_name: str) -> None:
    document = documents[version_name]
    for path, item in document["paths"].items():
        for method, operation in item.items():
            for status, response in operation["responses"].items():
                headers = resolve(document, response)["headers"]
                where = f"{method.upper()} {path} {status}"
                # A 401 and a 413 found by Content-Length are sent before the key is admitted.
                admitted = status not in ("401", "413")
                for name in RATE_LIMIT_HEADERS:
                    assert (name in headers) == admitted, f"{where}: {name}"
                assert ("Retry-After" in headers) == (status == "429"), where

    components = document["components"]["headers"]
    assert components["RateLimit-Policy"]["example"] == '"default";q=600;w=60'
    assert components["RateLimit"]["example"] == '"default";r=599;t=42'
    assert "Rate limits" in document["info"]["description"]


@pytest.mark.parametrize("version_name", VERSION_NAMES)
def test_security_scheme_is_bearer(documents: dict[str, dict[str, Any]], version_name: str) -> None:
    document = documents[version_name]
    schemes = document["components"]["securitySchemes"]
    assert list(schemes) == ["BearerAuth"]
    assert schemes["BearerAuth"]["type"] == "http"
    assert schemes["BearerAuth"]["scheme"] == "bearer"
    assert document["security"] == [{"BearerAuth": []}]


@pytest.mark.parametrize("version_name", VERSION_NAMES)
def test_problem_schema(documents: dict[str, dict[str, Any]], version_name: str) -> None:
    problem = component(documents[version_name], "Problem")
    assert problem["required"] == ["type", "title", "status", "detail", "code"]
    assert set(problem["properties"]) == {
        "type",
        "title",
        "status",
        "detail",
        "code",
        "instance",
        "errors",
        "request_id",
    }
    assert problem["properties"]["errors"]["items"] == {"$ref": "#/components/schemas/FieldError"}


@pytest.mark.parametrize("version_name", VERSION_NAMES)
def test_examples_match_schemas(documents: dict[str, dict[str, Any]], version_name: str) -> None:
    document = documents[version_name]
    for name in ("Project", "Event", "ProjectList", "EventList", "Problem", "CreateProjectInput"):
        assert component(document, name).get("examples"), f"{name} has no example"
    for name, schema in document["components"]["schemas"].items():
        for example in schema.get("examples", []):
            assert schema_errors(document, schema, example) == [], name
    for path, item in document["paths"].items():
        for method, operation in item.items():
            body = operation.get("requestBody")
            if body is not None:
                media_type = body["content"]["application/json"]
                errors = schema_errors(document, media_type["schema"], media_type["example"])
                assert errors == [], f"{method.upper()} {path}"
    for name, response in document["components"]["responses"].items():
        media_type = response["content"]["application/problem+json"]
        assert schema_errors(document, media_type["schema"], media_type["example"]) == [], name


# Served documents and real responses


@pytest.mark.parametrize("version_name", VERSION_NAMES)
def test_document_served_without_key(
    server: RunningServer, documents: dict[str, dict[str, Any]], version_name: str
) -> None:
    response = httpx.get(
        f"{server.base_url}/openapi/{version_name}.json", timeout=10, trust_env=False
    )
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert "x-request-id" in response.headers
    assert response.json() == json.loads(json.dumps(documents[version_name]))


def test_unknown_document_not_found(server: RunningServer) -> None:
    response = httpx.get(f"{server.base_url}/openapi/v9.json", timeout=10, trust_env=False)
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == "NOT_FOUND"
    assert "v9" in response.json()["detail"]


@pytest.mark.parametrize("version_name", VERSION_NAMES)
def test_responses_match_document(
    http: httpx.Client, documents: dict[str, dict[str, Any]], version_name: str
) -> None:
    document = documents[version_name]
    prefix = f"/{version_name}"

    created = http.post(
        f"{prefix}/projects", json={"name": f"Checked in {version_name}", "description": None}
    )
    assert created.status_code == 201, created.text
    check_response(document, "/projects", "post", created)
    project_id = created.json()["id"]
    assert created.headers["location"] == f"{prefix}/projects/{project_id}"

    check_response(
        document, "/projects", "get", http.get(f"{prefix}/projects", params={"limit": 2})
    )
    check_response(document, "/projects/{id}", "get", http.get(f"{prefix}/projects/{project_id}"))
    patched = http.patch(f"{prefix}/projects/{project_id}", json={"description": "Now described"})
    check_response(document, "/projects/{id}", "patch", patched)
    archived = http.delete(f"{prefix}/projects/{project_id}")
    assert archived.status_code == 204
    check_response(document, "/projects/{id}", "delete", archived)

    events = http.get(f"{prefix}/events")
    check_response(document, "/events", "get", events)
    event_id = events.json()["data"][0]["id"]
    check_response(document, "/events/{id}", "get", http.get(f"{prefix}/events/{event_id}"))


@pytest.mark.parametrize("version_name", VERSION_NAMES)
def test_error_responses_match_document(
    http: httpx.Client,
    server: RunningServer,
    documents: dict[str, dict[str, Any]],
    version_name: str,
) -> None:
    document = documents[version_name]
    prefix = f"/{version_name}"

    missing = http.get(f"{prefix}/projects/proj_missing")
    assert missing.status_code == 404
    check_response(document, "/projects/{id}", "get", missing)

    invalid = http.post(f"{prefix}/projects", json={"description": "no name"})
    assert invalid.status_code == 422
    check_response(document, "/projects", "post", invalid)

    bad_limit = http.get(f"{prefix}/projects", params={"limit": "many"})
    assert bad_limit.status_code == 422
    check_response(document, "/projects", "get", bad_limit)

    malformed = http.post(
        f"{prefix}/projects", content=b"{", headers={"Content-Type": "application/json"}
    )
    assert malformed.status_code == 400
    check_response(document, "/projects", "post", malformed)

    unlabelled = http.post(
        f"{prefix}/projects", content=b"name", headers={"Content-Type": "text/plain"}
    )
    assert unlabelled.status_code == 415
    check_response(document, "/projects", "post", unlabelled)

    anonymous = httpx.get(f"{server.base_url}{prefix}/projects", timeout=10, trust_env=False)
    assert anonymous.status_code == 401
    check_response(document, "/projects", "get", anonymous)


# Generated client


def generate_client(document: dict[str, Any], directory: Path, package: str) -> None:
    document_path = directory / f"{package}.json"
    document_path.write_text(json.dumps(document))
    # The generator formats its output with ruff, which lives next to the test interpreter.
    environment = {**os.environ, "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    result = subprocess.run(
        [
            str(GENERATOR),
            "generate",
            "--path",
            str(document_path),
            "--output-path",
            str(directory / package),
            "--meta",
            "none",
            "--fail-on-warning",
        ],
        check=False,
        cwd=directory,
        env=environment,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_v1_document_generates_client(documents: dict[str, dict[str, Any]], tmp_path: Path) -> None:
    generate_client(documents["v1"], tmp_path, "connex_v1_client")
    assert (tmp_path / "connex_v1_client" / "api" / "projects" / "list_projects.py").exists()


@pytest.fixture
def v2_client_package(documents: dict[str, dict[str, Any]], tmp_path: Path) -> Iterator[str]:
    package = "connex_v2_client"
    generate_client(documents["v2"], tmp_path, package)
    sys.path.insert(0, str(tmp_path))
    try:
        yield package
    finally:
        sys.path.remove(str(tmp_path))
        for name in [
            name for name in sys.modules if name == package or name.startswith(package + ".")
        ]:
            del sys.modules[name]


def test_generated_client_round_trip(server: RunningServer, v2_client_package: str) -> None:
    def load(module: str) -> Any:
        return importlib.import_module(f"{v2_client_package}.{module}")

    client_module = load("client")
    models = load("models")
    create_project = load("api.projects.create_project")
    list_projects = load("api.projects.list_projects")
    get_project = load("api.projects.get_project")
    update_project = load("api.projects.update_project")
    archive_project = load("api.projects.archive_project")
    list_events = load("api.events.list_events")
    get_event = load("api.events.get_event")

    # trust_env=False keeps proxy variables from routing the requests away from 127.0.0.1.
    client = client_module.AuthenticatedClient(
        base_url=f"{server.base_url}/v2",
        token=server.api_key,
        raise_on_unexpected_status=True,
        httpx_args={"trust_env": False},
    )
    with client:
        created = create_project.sync_detailed(
            client=client,
            body=models.CreateProjectInput(name="Docs site", description="Public documentation"),
        )
        assert created.status_code == 201
        project = created.parsed
        assert isinstance(project, models.Project)
        assert project.name == "Docs site"
        assert project.description == "Public documentation"
        assert project.status == models.ProjectStatus.ACTIVE
        assert isinstance(project.created_at, datetime)
        assert project.created_at.tzinfo is not None
        assert created.headers["location"] == f"/v2/projects/{project.id}"

        page = list_projects.sync(client=client, limit=100)
        assert isinstance(page, models.ProjectList)
        assert project.id in [item.id for item in page.data]

        fetched = get_project.sync(project.id, client=client)
        assert isinstance(fetched, models.Project)
        assert fetched.to_dict() == project.to_dict()

        updated = update_project.sync(
            project.id,
            client=client,
            body=models.UpdateProjectInput(name="Docs portal", description=None),
        )
        assert isinstance(updated, models.Project)
        assert updated.name == "Docs portal"
        assert updated.description is None
        assert updated.updated_at >= project.updated_at

        archived = archive_project.sync_detailed(project.id, client=client)
        assert archived.status_code == 204

        after = get_project.sync(project.id, client=client)
        assert after.status == models.ProjectStatus.ARCHIVED
        active = list_projects.sync(client=client, limit=100)
        assert project.id not in [item.id for item in active.data]
        archived_page = list_projects.sync(
            client=client, limit=100, status=models.ProjectStatus.ARCHIVED
        )
        assert project.id in [item.id for item in archived_page.data]

        missing = get_project.sync("proj_missing", client=client)
        assert isinstance(missing, models.Problem)
        assert missing.status == 404
        assert missing.code == "NOT_FOUND"

        events = list_events.sync(client=client, limit=100)
        assert isinstance(events, models.EventList)
        mine = [event for event in events.data if event.data["object"]["id"] == project.id]
        assert sorted(event.type_ for event in mine) == [
            "project.archived",
            "project.created",
            "project.updated",
        ]
        archived_event = next(event for event in mine if event.type_ == "project.archived")
        event = get_event.sync(archived_event.id, client=client)
        assert isinstance(event, models.Event)
        assert event.to_dict() == archived_event.to_dict()
        assert event.data["object"]["status"] == "archived"


async def issue_usage_key(settings: Settings, rate_limit_per_minute: int) -> str:
    """Issue a usage:read key with its own limit in the live server's organization."""
    db = Database(settings.database_url)
    try:
        async with db.transaction() as session:
            query = select(Organization.id).where(Organization.slug == "live-tests")
            organization_id = (await session.execute(query)).scalar_one()
            _, key = await issue_key(
                session,
                settings.secret_key_bytes(),
                name="rate-limited live tests",
                organization_id=organization_id,
                scopes=parse_scopes(["usage:read"]),
                rate_limit_per_minute=rate_limit_per_minute,
            )
    finally:
        await db.dispose()
    return str(key)


def test_usage_and_429_match_document(server: RunningServer, documents: dict[str, dict[str, Any]]) -> None:
    key = asyncio.run(issue_usage_key(server.settings, rate_limit_per_minute=2))
    params = {"from": "2026-01-01T00:00:00Z", "to": "2026-01-02T00:00:00Z", "granularity": "hour"}
    headers = {"Authorization": f"Bearer {key}"}
    with httpx.Client(base_url=server.base_url, headers=headers, timeout=10, trust_env=False) as http:
        for version_name in VERSION_NAMES:
            usage = http.get(f"/{version_name}/usage", params=params)
            assert usage.status_code == 200, usage.text
            assert len(usage.json()["buckets"]) == 24
            check_response(documents[version_name], "/usage", "get", usage)

        for version_name in VERSION_NAMES:
            limited = http.get(f"/{version_name}/usage", params=params)
            assert limited.status_code == 429
            check_response(documents[version_name], "/usage", "get", limited)
