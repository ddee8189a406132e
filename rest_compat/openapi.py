"""OpenAPI 3.1 documents of the REST versions, built with apispec.

Each part of a document comes from the compiled routes and the schema: paths
and methods from the route table, parameters from the operations' variables,
request bodies from the GraphQL input types and response bodies from the
selection sets. Examples come from the serializers, envelopes and problem
bodies that write real responses, applied to fixed sample rows.

The document's ``servers`` entry ends in the version prefix (``/v2``), so its
paths are the route table's paths, relative to the version.
"""

from __future__ import annotations

import dataclasses
import weakref
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Any

from apispec import APISpec
from graphql import (
    GraphQLEnumType,
    GraphQLInputObjectType,
    GraphQLInputType,
    GraphQLList,
    GraphQLNonNull,
    GraphQLScalarType,
)
from graphql.language import VariableNode
from graphql.pyutils import Undefined
from graphql.utilities import ast_from_value, value_from_ast_untyped
from strawberry.schema import Schema as StrawberrySchema

import connex
from connex.admission import Admission, rate_limit_headers
from connex.auth import Principal
from connex.db import rfc3339
from connex.errors import (
    BadRequest,
    ConnexError,
    FieldError,
    NotFound,
    PayloadTooLarge,
    PermissionDenied,
    RateLimited,
    Unauthenticated,
    UnsupportedMediaType,
    ValidationFailed,
)
from connex.keys import KEY_LENGTH, PREFIX
from connex.logs import request_id_var
from connex.models import Event, Project, ProjectStatus
from connex.pagination import encode_cursor
from connex.problems import PROBLEM_MEDIA_TYPE, problem_body, problem_headers
from connex.projects import snapshot
from connex.ratelimit import Decision
from connex.scopes import Scope, grants
from connex.settings import Settings
from rest_compat.app import deprecation_headers, list_envelope
from rest_compat.binding import Parameter, enum_values, named_type
from rest_compat.compiler import CompiledRoute, compile_version
from rest_compat.naming import snake
from rest_compat.routes import VERSIONS, Version
from rest_compat.shapes import Shape, compile_serializer
from rest_compat.webhook_samples import WEBHOOK_INPUT_EXAMPLES, WEBHOOK_SAMPLES

OPENAPI_VERSION = "3.1.0"
SECURITY_SCHEME = "BearerAuth"
JSON_MEDIA_TYPE = "application/json"
INT32_MIN = -(2**31)
INT32_MAX = 2**31 - 1
DEPRECATION_HEADERS = ("Deprecation", "Sunset", "Link")
RATE_LIMIT_HEADERS = ("RateLimit-Policy", "RateLimit", "X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset")
# Responses sent before the key is admitted carry no rate-limit headers: a 401, and a 413
# rejected by its Content-Length before authentication.
UNADMITTED_STATUSES = frozenset({401, 413})
SAMPLE_DECIDED_AT = datetime(2026, 11, 12, 16, 45, 10, tzinfo=UTC).timestamp()
SAMPLE_RESET_SECONDS = 42

# Fixed values for the examples, so that a document is the same on every build.
SAMPLE_REQUEST_ID = "5f2c9a1b7e3d4c6a8b0e1f2a"
SAMPLE_ORGANIZATION_ID = "org_01JB7Q4X9M2K8T5R3N6C1VZD0E"
SAMPLE_PROJECT = Project(
    id="proj_01JDW8M3R6Q9T2XK5B7N4C1VZE",
    organization_id=SAMPLE_ORGANIZATION_ID,
    name="Website redesign",
    description="Rebuild the marketing site on the new design system.",
    status=ProjectStatus.ACTIVE,
    created_at=datetime(2026, 10, 5, 9, 30, tzinfo=UTC),
    updated_at=datetime(2026, 11, 12, 16, 45, 10, tzinfo=UTC),
)
SAMPLE_EVENT = Event(
    id="evt_01JCJ5T8W2N7Q4X9K3M6R1BVZA",
    organization_id=SAMPLE_ORGANIZATION_ID,
    type="project.updated",
    data={"object": snapshot(SAMPLE_PROJECT)},
    created_at=SAMPLE_PROJECT.updated_at,
)
# Sample rows by GraphQL object type. An object type without a sample gets no example.
SAMPLES: dict[str, Any] = {"Project": SAMPLE_PROJECT, "Event": SAMPLE_EVENT, **WEBHOOK_SAMPLES}
# Body examples of input types whose fields the result's sample does not contain.
INPUT_EXAMPLES: dict[str, dict[str, Any]] = {**WEBHOOK_INPUT_EXAMPLES}
# The time attribute a type's list cursors carry, where it is not created_at.
CURSOR_TIMES = {"WebhookAttempt": "started_at"}


@dataclasses.dataclass(frozen=True, slots=True)
class ErrorResponse:
    """A reusable problem response: the error class that produces it and when it happens."""

    error: type[ConnexError]
    description: str
    example_detail: str | None = None
    example_errors: tuple[FieldError, ...] = ()

    @property
    def component_name(self) -> str:
        return "InternalError" if self.error is ConnexError else self.error.__name__


def error_responses(settings: Settings) -> dict[int, ErrorResponse]:
    """Map each documented error status to its problem response."""
    responses = [
        ErrorResponse(
            BadRequest,
            "The body is not valid JSON.",
            "The body is not valid JSON: unexpected character",
        ),
        ErrorResponse(
            Unauthenticated,
            "The API key is missing, malformed, unknown, expired or revoked.",
            "Invalid API key",
        ),
        ErrorResponse(
            PermissionDenied,
            "The API key lacks the operation's scope or belongs to another organization.",
            "The API key lacks the 'projects:write' scope",
        ),
        ErrorResponse(
            NotFound, "No resource has the given ID.", f"No project with id {SAMPLE_PROJECT.id!r}"
        ),
        ErrorResponse(
            PayloadTooLarge,
            f"The body is larger than {settings.max_body_bytes} bytes.",
            f"The body exceeds {settings.max_body_bytes} bytes",
        ),
        ErrorResponse(
            UnsupportedMediaType,
            "The body is not labelled as JSON; send it with Content-Type: application/json.",
            "Send the body as application/json, not 'text/plain'",
        ),
        ErrorResponse(
            ValidationFailed,
            "A parameter or body field is invalid. `errors` lists each invalid value with its location.",
            "The request has invalid parameters",
            (FieldError("name", "required field is missing", "body"),),
        ),
        ErrorResponse(RateLimited, "The API key has used up its rate limit. Retry later."),
        ErrorResponse(
            ConnexError,
            "An unexpected server error. The request_id identifies the request in the server's logs.",
        ),
    ]
    return {response.error.status: response for response in responses}


def error_statuses(route: CompiledRoute) -> list[int]:
    """Return the error statuses a route can return, besides 405 for a wrong method."""
    statuses = {401, 403, 429, 500}
    if route.parameters or route.body is not None:
        statuses.add(422)
    if route.body is not None:
        statuses.update({400, 413, 415})
    if route.path_parameters or (route.body is not None and _references_other_resources(route)):
        statuses.add(404)
    return sorted(statuses)


def _references_other_resources(route: CompiledRoute) -> bool:
    """Tell whether the body has an ID field, which names a resource that may not exist."""
    assert route.body is not None
    fields = route.body.object_type.fields
    return any(
        _is_id(field.type) for name, field in fields.items() if name not in route.body.excluded
    )


def _is_id(type_: GraphQLInputType) -> bool:
    named = named_type(type_)
    return isinstance(named, GraphQLScalarType) and named.name == "ID"


def schema_ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def nullable(schema: dict[str, Any]) -> dict[str, Any]:
    """Allow null in a schema, as OpenAPI 3.1 writes it: a type list, or anyOf around a reference."""
    type_ = schema.get("type")
    if isinstance(type_, str):
        return {**schema, "type": [type_, "null"]}
    if isinstance(type_, list):
        return schema if "null" in type_ else {**schema, "type": [*type_, "null"]}
    if not schema:
        return schema
    return {"anyOf": [schema, {"type": "null"}]}


def _input_value(value: Any, type_: GraphQLInputType) -> Any:
    """Convert an output example value to input form: DateTime inputs are RFC 3339 in every version."""
    named = type_.of_type if isinstance(type_, GraphQLNonNull) else type_
    if isinstance(named, GraphQLScalarType) and named.name == "DateTime" and isinstance(value, int):
        return rfc3339(datetime.fromtimestamp(value, UTC))
    return value


def path_prefix(path: str, name: str) -> tuple[str, str]:
    """Return the part of ``path`` up to and including the parameter ``{name}``, with the name."""
    placeholder = "{" + name + "}"
    return path[: path.index(placeholder) + len(placeholder)], name


def with_description(schema: dict[str, Any], description: str | None) -> dict[str, Any]:
    return {**schema, "description": description} if description else schema


def lower_camel(name: str) -> str:
    return name[:1].lower() + name[1:]


def rest_value(value: Any, type_: GraphQLInputType) -> Any:
    """Convert a GraphQL input value to its REST form: lowercase enum values, snake_case keys."""
    if isinstance(type_, GraphQLNonNull):
        return rest_value(value, type_.of_type)
    if value is None:
        return None
    if isinstance(type_, GraphQLList) and isinstance(value, list):
        return [rest_value(item, type_.of_type) for item in value]
    if isinstance(type_, GraphQLEnumType) and isinstance(value, str):
        return value.lower()
    if isinstance(type_, GraphQLInputObjectType) and isinstance(value, dict):
        return {snake(key): rest_value(item, type_.fields[key].type) for key, item in value.items()}
    return value


def default_value(python_value: Any, type_: GraphQLInputType) -> Any:
    """Return the REST form of an argument's or input field's default, or Undefined if it has none."""
    if python_value is Undefined:
        return Undefined
    node = ast_from_value(python_value, type_)
    if node is None:
        return Undefined
    return rest_value(value_from_ast_untyped(node), type_)


class DocumentBuilder:
    """Build the OpenAPI document of one version."""

    def __init__(self, schema: StrawberrySchema, version: Version, settings: Settings) -> None:
        self.version = version
        self.settings = settings
        self.routes = compile_version(schema, version)
        self.base_url = settings.public_base_url.rstrip("/")
        self.spec = APISpec(
            title=f"ConneX API {version.name}",
            version=connex.__version__,
            openapi_version=OPENAPI_VERSION,
            info={"description": self.info_description()},
            servers=[
                {
                    "url": f"{self.base_url}/{version.name}",
                    "description": f"ConneX API {version.name}",
                }
            ],
            security=[{SECURITY_SCHEME: []}],
        )
        # Schemas registered so far, to reuse a component and to detect two routes that select
        # different fields of one type.
        self.schemas: dict[str, dict[str, Any]] = {}
        self.path_descriptions = self.collect_path_descriptions()
        self.errors = error_responses(settings)

    def build(self) -> dict[str, Any]:
        self.register_security_scheme()
        self.register_headers()
        self.register_problem()
        for tag in dict.fromkeys(route.spec.tag for route in self.routes):
            self.spec.tag({"name": tag})
        for path in dict.fromkeys(route.spec.path for route in self.routes):
            operations = {
                route.spec.method.lower(): self.operation(route)
                for route in self.routes
                if route.spec.path == path
            }
            self.spec.path(path=path, operations=operations)
        return self.spec.to_dict()

    # Document-wide parts

    def info_description(self) -> str:
        version = self.version
        sections = [
            (
                f"The ConneX REST API, version {version.name}. Each operation runs one fixed "
                "operation of the GraphQL API at `/graphql`, which serves the same data."
            ),
            (
                "## Authentication\n\nSend an API key in the `Authorization` header as "
                "`Bearer <key>`. Each operation names the scope its key needs."
            ),
            "## Lists\n\n" + self.list_description(),
            "## Timestamps\n\n" + self.timestamp_description(),
            (
                "## Errors\n\nErrors are RFC 9457 problem details (`application/problem+json`) with "
                "a machine-readable `code`. For invalid input, `errors` lists each invalid value with "
                "its field and location. A method that a path does not support returns 405 with an "
                "`Allow` header."
            ),
            (
                "## Request IDs\n\nEvery response carries an `X-Request-Id` header, and problem "
                "details repeat it as `request_id`. Quote it when you report a problem."
            ),
            "## Rate limits\n\n" + self.rate_limit_description(),
        ]
        if version.deprecated:
            sections.append(
                "## Deprecation\n\n"
                f"This version is deprecated since {self.settings.v1_deprecated_on.isoformat()}. Its sunset "
                f"date is {self.settings.v1_sunset_on.isoformat()}, after which it may stop responding. Every "
                "response carries `Deprecation`, `Sunset` and `Link` headers. The link with "
                '`rel="successor-version"` leads to the documentation of the next version.'
            )
        if version.changelog:
            entries = "\n".join(f"- {day.isoformat()}: {text}" for day, text in version.changelog)
            sections.append("## Changes\n\n" + entries)
        return "\n\n".join(sections)

    def rate_limit_description(self) -> str:
        limit = self.settings.rate_limit_per_minute
        window = self.settings.rate_limit_window_seconds
        return (
            f"Each API key may make {limit} requests per {window} seconds unless it has a limit of "
            "its own. The window slides: a request counts until it is a window old. Every response "
            "to an authenticated request carries `RateLimit-Policy` and `RateLimit` "
            "(draft-ietf-httpapi-ratelimit-headers-11) and the same figures as `X-RateLimit-Limit`, "
            "`X-RateLimit-Remaining` and `X-RateLimit-Reset`. Over the limit, the API returns 429 "
            "with a `Retry-After` header in seconds, and the rejected request does not count. "
            "GraphQL queries at `/graphql` draw on the same budget, at a cost that grows with the "
            "page sizes they request."
        )

    def list_description(self) -> str:
        list_routes = [route for route in self.routes if route.spec.kind == "list"]
        if not list_routes:
            return "This version has no list operations."
        route = list_routes[0]
        size = self.argument_parameter(route, "first")
        if self.version.list_style == "cursor":
            cursor = self.argument_parameter(route, "after")
            return (
                'List operations return `{"data": [...], "next_cursor": ...}`. Set the page size with '
                f"`{size}`, and pass `next_cursor` as `{cursor}` to get the next page. "
                "`next_cursor` is null on the last page."
            )
        offset = self.argument_parameter(route, "offset")
        return (
            'List operations return `{"object": "list", "data": [...], "has_more": ...}`. Set the page '
            f"size with `{size}` and the number of items to skip with `{offset}`."
        )

    def timestamp_description(self) -> str:
        if self.version.datetime_style == "unix":
            return (
                "Timestamps are integers: Unix time in seconds, for example "
                f"`{int(SAMPLE_PROJECT.created_at.timestamp())}`."
            )
        return f"Timestamps are RFC 3339 strings in UTC, for example `{rfc3339(SAMPLE_PROJECT.created_at)}`."

    def register_security_scheme(self) -> None:
        placeholder = PREFIX + "x" * (KEY_LENGTH - len(PREFIX))
        self.spec.components.security_scheme(
            SECURITY_SCHEME,
            {
                "type": "http",
                "scheme": "bearer",
                "description": (
                    f"An API key, sent as `Authorization: Bearer <key>`. Keys have {KEY_LENGTH} characters "
                    f"and start with `{PREFIX}`, like `{placeholder}`. Each operation names the scope it "
                    "needs in its description and in `x-required-scope`."
                ),
            },
        )

    def register_headers(self) -> None:
        components = self.spec.components
        components.header(
            "X-Request-Id",
            {
                "description": "The request's ID, which the server logs with the request. A client may "
                "send its own X-Request-Id of 8 to 64 letters, digits, '.', '_' or '-' to have it reused.",
                "schema": {"type": "string"},
                "example": SAMPLE_REQUEST_ID,
            },
        )
        www_authenticate = problem_headers(Unauthenticated())["WWW-Authenticate"]
        components.header(
            "WWW-Authenticate",
            {
                "description": "The authentication scheme to use.",
                "schema": {"type": "string"},
                "example": www_authenticate,
            },
        )
        self.register_rate_limit_headers()
        if not self.version.deprecated:
            return
        values = {
            name.decode(): value.decode()
            for name, value in deprecation_headers(
                self.version,
                self.settings.v1_deprecated_on,
                self.settings.v1_sunset_on,
                self.base_url,
            )
        }
        descriptions = {
            "Deprecation": "When this version was deprecated: `@` and Unix time in seconds (RFC 9745).",
            "Sunset": "The date after which this version may stop responding, as an HTTP-date (RFC 8594).",
            "Link": "The documentation of the successor version and of the deprecation (RFC 8288).",
        }
        for name in DEPRECATION_HEADERS:
            components.header(
                name,
                {
                    "description": descriptions[name],
                    "schema": {"type": "string"},
                    "example": values[name.lower()],
                },
            )

    def register_rate_limit_headers(self) -> None:
        """Register the rate-limit headers, with examples written by the code that sends them."""
        limit = self.settings.rate_limit_per_minute
        window = self.settings.rate_limit_window_seconds
        principal = Principal("key_sample", SAMPLE_ORGANIZATION_ID, frozenset(), None, False, None)
        decision = Decision(True, limit, limit - 1, float(SAMPLE_RESET_SECONDS), window)
        admission = Admission(principal, decision, 1, SAMPLE_DECIDED_AT)
        examples = {name.decode(): value.decode() for name, value in rate_limit_headers(admission)}
        descriptions = {
            "RateLimit-Policy": "The key's quota: `q` requests per window of `w` seconds "
            "(draft-ietf-httpapi-ratelimit-headers-11).",
            "RateLimit": "The key's budget after this request: `r` requests remain, and more become "
            "available in `t` seconds (draft-ietf-httpapi-ratelimit-headers-11).",
            "X-RateLimit-Limit": "Requests the key may make per window.",
            "X-RateLimit-Remaining": "Requests the key may still make in the current window.",
            "X-RateLimit-Reset": "Unix time in seconds when more requests become available.",
        }
        for name in RATE_LIMIT_HEADERS:
            is_number = name.startswith("X-")
            self.spec.components.header(
                name,
                {
                    "description": descriptions[name],
                    "schema": {"type": "integer", "minimum": 0} if is_number else {"type": "string"},
                    "example": int(examples[name.lower()]) if is_number else examples[name.lower()],
                },
            )
        self.spec.components.header(
            "Retry-After",
            {
                "description": "Seconds until the key's budget admits this request again, at least 1.",
                "schema": {"type": "integer", "minimum": 1},
                "example": SAMPLE_RESET_SECONDS,
            },
        )

    def admitted_response_headers(self, status: int) -> dict[str, Any]:
        """Return the headers of a response with ``status`` to a request that reached admission."""
        headers = self.response_headers()
        if status not in UNADMITTED_STATUSES:
            headers.update({name: name for name in RATE_LIMIT_HEADERS})
        if status == 429:
            headers["Retry-After"] = "Retry-After"
        return headers

    def response_headers(self) -> dict[str, Any]:
        """Return the headers of every response of this version.

        Each value is a header component's name, which apispec turns into a reference.
        """
        names = ["X-Request-Id", *(DEPRECATION_HEADERS if self.version.deprecated else ())]
        return {name: name for name in names}

    def register_problem(self) -> None:
        components = self.spec.components
        components.schema(
            "FieldError",
            {
                "type": "object",
                "description": "One invalid input value.",
                "required": ["field", "location", "message"],
                "properties": {
                    "field": {
                        "type": "string",
                        "description": "The parameter or body field, as a dotted path.",
                    },
                    "location": {
                        "type": "string",
                        "description": "Where the value was sent: body, query or path.",
                    },
                    "message": {"type": "string", "description": "What is wrong with the value."},
                },
            },
        )
        errors = self.errors
        components.schema(
            "Problem",
            {
                "type": "object",
                "description": "An error, as RFC 9457 problem details.",
                "required": ["type", "title", "status", "detail", "code"],
                "properties": {
                    "type": {
                        "type": "string",
                        "format": "uri",
                        "description": "A URI that identifies the error kind.",
                    },
                    "title": {
                        "type": "string",
                        "description": "A short summary of the error kind.",
                    },
                    "status": {
                        "type": "integer",
                        "format": "int32",
                        "description": "The HTTP status code.",
                    },
                    "detail": {"type": "string", "description": "What went wrong in this request."},
                    "code": {
                        "type": "string",
                        "description": "A machine-readable error code, for example "
                        + ", ".join(sorted(response.error.code for response in errors.values()))
                        + ".",
                    },
                    "instance": {
                        "type": "string",
                        "format": "uri-reference",
                        "description": "The request path.",
                    },
                    "errors": {
                        "type": "array",
                        "items": schema_ref("FieldError"),
                        "description": "Each invalid value.",
                    },
                    "request_id": {
                        "type": "string",
                        "description": "The request's ID, as in X-Request-Id.",
                    },
                },
                "examples": [self.problem_example(errors[422])],
            },
        )
        for status, response in errors.items():
            headers = self.admitted_response_headers(status)
            if status == 401:
                headers["WWW-Authenticate"] = "WWW-Authenticate"
            # Lazy: only the responses some operation refers to end up in the document.
            components.response(
                response.component_name,
                {
                    "description": response.description,
                    "headers": headers,
                    "content": {
                        PROBLEM_MEDIA_TYPE: {
                            "schema": schema_ref("Problem"),
                            "example": self.problem_example(response),
                        }
                    },
                },
                lazy=True,
            )

    def problem_example(self, response: ErrorResponse) -> dict[str, Any]:
        if response.error is ConnexError:
            error = ConnexError(response.example_detail)
        else:
            error = response.error(response.example_detail, errors=list(response.example_errors))
        token = request_id_var.set(SAMPLE_REQUEST_ID)
        try:
            return problem_body(
                error, instance=f"/{self.version.name}/projects/{SAMPLE_PROJECT.id}"
            )
        finally:
            request_id_var.reset(token)

    # Operations

    def operation(self, route: CompiledRoute) -> dict[str, Any]:
        spec = route.spec
        operation: dict[str, Any] = {
            "summary": spec.summary,
            "description": self.operation_description(route),
            "tags": [spec.tag],
            "x-required-scope": spec.scope.value,
        }
        if route.operation.name is not None:
            # Generated clients name their functions after it, for example list_projects.
            operation["operationId"] = lower_camel(route.operation.name.value)
        if self.version.deprecated:
            operation["deprecated"] = True
        parameters = [self.parameter(route, parameter) for parameter in route.parameters]
        if parameters:
            operation["parameters"] = parameters
        if route.body is not None:
            operation["requestBody"] = self.request_body(route)
        responses: dict[str, Any] = {str(spec.status): self.success_response(route)}
        for status in error_statuses(route):
            # A response component's name, which apispec turns into a reference.
            responses[str(status)] = self.errors[status].component_name
        operation["responses"] = responses
        return operation

    def operation_description(self, route: CompiledRoute) -> str:
        scope = route.spec.scope
        broader = [
            other.value
            for other in Scope
            if other is not scope and grants(frozenset({other}), scope)
        ]
        requirement = f"Requires an API key with the `{scope.value}` scope"
        if broader:
            requirement += (
                " or one that implies it (" + ", ".join(f"`{name}`" for name in broader) + ")"
            )
        return "\n\n".join(part for part in (route.spec.description, requirement + ".") if part)

    def collect_path_descriptions(self) -> dict[tuple[str, str], str]:
        """Map (path prefix, parameter) to the first description any route gives that parameter.

        A path parameter means the same on every route whose path starts with the same
        prefix up to it (``{id}`` of /webhook_endpoints/{id} and /webhook_endpoints/{id}/test),
        but only a route that passes it straight to a root argument has the argument's
        description.
        """
        descriptions: dict[tuple[str, str], str] = {}
        for route in self.routes:
            for parameter in route.path_parameters:
                description = self.own_description(route, parameter)
                if description:
                    descriptions.setdefault(path_prefix(route.spec.path, parameter.rest_name), description)
        return descriptions

    def own_description(self, route: CompiledRoute, parameter: Parameter) -> str | None:
        if parameter.input_field is not None and route.body is not None:
            return route.body.object_type.fields[parameter.input_field].description
        return parameter.description

    def parameter(self, route: CompiledRoute, parameter: Parameter) -> dict[str, Any]:
        type_ = (
            parameter.type.of_type if isinstance(parameter.type, GraphQLNonNull) else parameter.type
        )
        # A URL cannot carry null, so parameter schemas are never nullable.
        schema = self.input_schema(type_, allow_null=False)
        default = self.parameter_default(route, parameter)
        if default is not Undefined and default is not None:
            schema = {**schema, "default": default}
        description = self.own_description(route, parameter)
        if not description and parameter.location == "path":
            description = self.path_descriptions.get(path_prefix(route.spec.path, parameter.rest_name))
        result: dict[str, Any] = {
            "name": parameter.rest_name,
            "in": parameter.location,
            "required": parameter.required,
            # The schema repeats the description because openapi-python-client (0.29) reads
            # descriptions only from schemas when it writes the docstrings of a client.
            "schema": with_description(schema, description),
        }
        if description:
            result["description"] = description
        return result

    def parameter_default(self, route: CompiledRoute, parameter: Parameter) -> Any:
        """Return the default of the operation's variable, else of the root argument it fills."""
        if parameter.input_field is not None:
            return Undefined
        for definition in route.operation.variable_definitions or ():
            if (
                definition.variable.name.value == parameter.variable
                and definition.default_value is not None
            ):
                return rest_value(value_from_ast_untyped(definition.default_value), parameter.type)
        arguments = route.root_type.fields[route.root_node.name.value].args
        for node in route.root_node.arguments or ():
            if isinstance(node.value, VariableNode) and node.value.name.value == parameter.variable:
                argument = arguments[node.name.value]
                return default_value(argument.default_value, argument.type)
        return Undefined

    def argument_parameter(self, route: CompiledRoute, argument: str) -> str | None:
        """Return the REST name of the parameter that fills a root argument, if one does."""
        for node in route.root_node.arguments or ():
            if node.name.value == argument and isinstance(node.value, VariableNode):
                for parameter in route.parameters:
                    if (
                        parameter.variable == node.value.name.value
                        and parameter.input_field is None
                    ):
                        return parameter.rest_name
        return None

    def request_body(self, route: CompiledRoute) -> dict[str, Any]:
        assert route.body is not None
        object_type = route.body.object_type
        example = self.input_example(route)
        media_type: dict[str, Any] = {
            "schema": self.input_object_schema(object_type, route.body.excluded, example)
        }
        if example is not None:
            media_type["example"] = example
        body: dict[str, Any] = {"required": True, "content": {JSON_MEDIA_TYPE: media_type}}
        if object_type.description:
            body["description"] = object_type.description
        return body

    def input_example(self, route: CompiledRoute) -> dict[str, Any] | None:
        """Build a body example from the sample of the route's result type.

        ID fields are left out: they name other resources, and a copied example with a
        made-up ID would fail.
        """
        assert route.body is not None
        object_type = route.body.object_type
        output = self.object_example(route.shape)
        if output is None:
            return INPUT_EXAMPLES.get(object_type.name)
        example = {
            snake(name): _input_value(output[snake(name)], field.type)
            for name, field in object_type.fields.items()
            if name not in route.body.excluded and snake(name) in output and not _is_id(field.type)
        }
        return example or INPUT_EXAMPLES.get(object_type.name)

    def success_response(self, route: CompiledRoute) -> dict[str, Any]:
        spec = route.spec
        phrase = HTTPStatus(spec.status).phrase
        headers = self.admitted_response_headers(spec.status)
        if spec.location is not None:
            example = self.object_example(route.shape)
            location: dict[str, Any] = {
                "description": "The path of the created resource.",
                "schema": {"type": "string", "format": "uri-reference"},
            }
            if example is not None:
                location["example"] = f"/{self.version.name}" + spec.location.format(**example)
            headers["Location"] = location
        if spec.kind == "empty":
            return {"description": f"{phrase}. The response has no body.", "headers": headers}
        if spec.kind == "list":
            schema = self.list_schema(route)
            content = f"a page of {route.shape.child('nodes').graphql_type.name} objects"
        else:
            schema = self.output_schema(route.shape, with_field_description=False)
            content = f"the {route.shape.graphql_type.name}"
        return {
            "description": f"{phrase}. The body contains {content}.",
            "headers": headers,
            "content": {JSON_MEDIA_TYPE: {"schema": schema}},
        }

    # Response schemas

    def register_schema(self, name: str, schema: dict[str, Any]) -> dict[str, Any]:
        """Register a component schema and return a reference to it.

        When another route already registered a different schema under the same name (two
        selections of one type), the new schema stays inline under that route.
        """
        existing = self.schemas.get(name)
        if existing is None:
            self.schemas[name] = schema
            self.spec.components.schema(name, schema)
        elif existing != schema:
            return schema
        return schema_ref(name)

    def output_schema(self, shape: Shape, *, with_field_description: bool = True) -> dict[str, Any]:
        """Return the schema of a selected field: its type, list and nullability."""
        named = shape.graphql_type
        if shape.is_object:
            schema = self.object_schema(shape)
        elif isinstance(named, GraphQLEnumType):
            schema = self.enum_schema(named)
        else:
            schema = self.scalar_schema(named, self.version.datetime_style)
        if shape.is_list:
            schema = {"type": "array", "items": nullable(schema) if shape.item_nullable else schema}
        if shape.nullable:
            schema = nullable(schema)
        if not with_field_description:
            return schema
        description = shape.description
        if (
            isinstance(named, GraphQLScalarType)
            and named.name == "DateTime"
            and self.version.datetime_style == "unix"
        ):
            description = " ".join(filter(None, [description, "Unix time in seconds."]))
        return with_description(schema, description)

    def object_schema(self, shape: Shape) -> dict[str, Any]:
        properties = {child.rest_name: self.output_schema(child) for child in shape.children}
        schema: dict[str, Any] = {
            "type": "object",
            "required": list(properties),
            "properties": properties,
        }
        schema = with_description(schema, shape.graphql_type.description)
        example = self.object_example(shape)
        if example is not None:
            schema["examples"] = [example]
        return self.register_schema(shape.graphql_type.name, schema)

    def object_example(self, shape: Shape) -> dict[str, Any] | None:
        """Serialize the type's sample row with the serializer real responses use."""
        sample = SAMPLES.get(shape.graphql_type.name)
        if sample is None or not all(child.basic for child in shape.children):
            return None
        single = dataclasses.replace(shape, is_list=False, nullable=False)
        return compile_serializer(single, self.version.datetime_style)(sample)

    def list_schema(self, route: CompiledRoute) -> dict[str, Any]:
        """Return the schema of the version's list envelope around a connection's nodes."""
        nodes = route.shape.child("nodes")
        data = with_description(
            self.output_schema(nodes, with_field_description=False), "The page's items."
        )
        if self.version.list_style == "cursor":
            cursor = self.argument_parameter(route, "after")
            properties = {
                "data": data,
                "next_cursor": {
                    "type": ["string", "null"],
                    "description": f"Pass it as `{cursor}` to get the next page. It is null on the last page.",
                },
            }
        else:
            offset = self.argument_parameter(route, "offset")
            properties = {
                "object": {"type": "string", "const": "list", "description": "Always `list`."},
                "data": data,
                "has_more": {
                    "type": "boolean",
                    "description": f"Whether more items follow. Raise `{offset}` by the page size to get them.",
                },
            }
        name = nodes.graphql_type.name
        schema: dict[str, Any] = {
            "type": "object",
            "description": f"A page of {name} objects, newest first.",
            "required": list(properties),
            "properties": properties,
        }
        sample = SAMPLES.get(name)
        item = self.object_example(nodes)
        if sample is not None and item is not None:
            page_info = {
                "has_next_page": True,
                "end_cursor": encode_cursor(getattr(sample, CURSOR_TIMES.get(name, "created_at")), sample.id),
            }
            schema["examples"] = [
                list_envelope(self.version, {"nodes": [item], "page_info": page_info})
            ]
        return self.register_schema(f"{name}List", schema)

    def enum_schema(self, enum: GraphQLEnumType) -> dict[str, Any]:
        schema: dict[str, Any] = {"type": "string", "enum": enum_values(enum)}
        schema = with_description(schema, enum.description)
        schema["examples"] = [enum_values(enum)[0]]
        return self.register_schema(enum.name, schema)

    def scalar_schema(self, scalar: GraphQLScalarType, datetime_style: str) -> dict[str, Any]:
        name = scalar.name
        if name in ("ID", "String"):
            return {"type": "string"}
        if name == "Int":
            return {
                "type": "integer",
                "format": "int32",
                "minimum": INT32_MIN,
                "maximum": INT32_MAX,
            }
        if name == "Float":
            return {"type": "number", "format": "double"}
        if name == "Boolean":
            return {"type": "boolean"}
        if name == "DateTime":
            if datetime_style == "unix":
                return {"type": "integer", "format": "int64"}
            return {"type": "string", "format": "date-time"}
        if name == "JSON":
            # NOTE: the JSON scalar allows any JSON value, but every JSON field of the schema
            # (Event.data) contains an object, so the document promises an object.
            return {"type": "object", "additionalProperties": True}
        raise ValueError(
            f"no JSON Schema mapping for the GraphQL scalar {name!r}; add one to scalar_schema"
        )

    # Request schemas

    def input_schema(self, type_: GraphQLInputType, *, allow_null: bool = True) -> dict[str, Any]:
        """Return the schema of an input value. DateTime inputs are RFC 3339 strings in every version."""
        is_nullable = not isinstance(type_, GraphQLNonNull)
        if isinstance(type_, GraphQLNonNull):
            type_ = type_.of_type
        if isinstance(type_, GraphQLList):
            schema = {"type": "array", "items": self.input_schema(type_.of_type)}
        elif isinstance(type_, GraphQLEnumType):
            schema = self.enum_schema(type_)
        elif isinstance(type_, GraphQLInputObjectType):
            schema = self.input_object_schema(type_, frozenset(), None)
        else:
            schema = self.scalar_schema(type_, "rfc3339")
        return nullable(schema) if is_nullable and allow_null else schema

    def input_object_schema(
        self,
        type_: GraphQLInputObjectType,
        excluded: frozenset[str],
        example: dict[str, Any] | None,
    ) -> dict[str, Any]:
        properties: dict[str, Any] = {}
        required: list[str] = []
        for name, field in type_.fields.items():
            if name in excluded:
                continue
            rest_name = snake(name)
            schema = with_description(self.input_schema(field.type), field.description)
            default = default_value(field.default_value, field.type)
            if default is not Undefined:
                schema = {**schema, "default": default}
            properties[rest_name] = schema
            if isinstance(field.type, GraphQLNonNull) and field.default_value is Undefined:
                required.append(rest_name)
        schema: dict[str, Any] = {
            "type": "object",
            "additionalProperties": False,
            "properties": properties,
        }
        if required:
            schema["required"] = required
        schema = with_description(schema, type_.description)
        if example is not None:
            schema["examples"] = [example]
        return self.register_schema(type_.name, schema)


# Documents per schema, then per version and the settings they depend on. The weak keys let
# a schema that is no longer used take its documents with it.
_documents: weakref.WeakKeyDictionary[StrawberrySchema, dict[tuple[Any, ...], dict[str, Any]]] = (
    weakref.WeakKeyDictionary()
)


def build_document(
    schema: StrawberrySchema, version_name: str, settings: Settings
) -> dict[str, Any]:
    """Build the OpenAPI document of a version on the first call, and return the cached one after.

    Callers share the returned dict, so copy it before changing it. Raises LookupError for an
    unknown version name.
    """
    version = VERSIONS.get(version_name)
    if version is None:
        known = ", ".join(VERSIONS)
        raise LookupError(f"unknown API version {version_name!r}, expected one of: {known}")
    key = (
        version_name,
        settings.public_base_url,
        settings.v1_deprecated_on,
        settings.v1_sunset_on,
        settings.max_body_bytes,
    )
    documents = _documents.setdefault(schema, {})
    if key not in documents:
        documents[key] = DocumentBuilder(schema, version, settings).build()
    return documents[key]
