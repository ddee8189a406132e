"""The ``/graphql`` endpoint: GraphQL over HTTP for POST and for read-only GET."""

from __future__ import annotations

from typing import Any

import orjson
from graphql import GraphQLError
from starlette.requests import Request
from starlette.responses import Response
from strawberry.schema.exceptions import CannotGetOperationTypeError, InvalidOperationTypeError
from strawberry.types.graphql import OperationType

from connex.context import RequestContext, Services
from connex.errors import BadRequest, ConnexError, MethodNotAllowed, UnsupportedMediaType
from connex.problems import problem_response


def _format_error(error: GraphQLError) -> dict[str, Any]:
    formatted = dict(error.formatted)
    extensions = dict(formatted.get("extensions") or {})
    if "code" not in extensions:
        extensions["code"] = "GRAPHQL_VALIDATION_FAILED" if error.path is None else "INTERNAL"
    formatted["extensions"] = extensions
    return formatted


async def _read_request(request: Request) -> dict[str, Any]:
    if request.method == "GET":
        params = request.query_params
        variables = params.get("variables")
        try:
            parsed_variables = orjson.loads(variables) if variables else None
        except orjson.JSONDecodeError:
            raise BadRequest("The 'variables' query parameter is not valid JSON") from None
        return {"query": params.get("query"), "variables": parsed_variables, "operationName": params.get("operationName")}
    media_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media_type not in ("application/json", "application/graphql-response+json"):
        raise UnsupportedMediaType("Send GraphQL requests as application/json")
    try:
        payload = orjson.loads(await request.body())
    except orjson.JSONDecodeError as error:
        raise BadRequest(f"The body is not valid JSON: {error}") from None
    if not isinstance(payload, dict):
        raise BadRequest("The body must be a JSON object with a 'query' member")
    return payload


async def graphql_endpoint(request: Request) -> Response:
    services: Services = request.app.state.services
    try:
        payload = await _read_request(request)
        query = payload.get("query")
        variables = payload.get("variables")
        if not isinstance(query, str) or not query.strip():
            raise BadRequest("Missing 'query': send a GraphQL document")
        if variables is not None and not isinstance(variables, dict):
            raise BadRequest("'variables' must be a JSON object")
    except ConnexError as error:
        return problem_response(error, instance=request.url.path)

    allowed = {OperationType.QUERY} if request.method == "GET" else {OperationType.QUERY, OperationType.MUTATION}
    context = RequestContext(services, request.state.principal, request.state.request_id)
    schema = services.extras["schema"]
    try:
        result = await schema.execute(
            query,
            variable_values=variables,
            context_value=context,
            operation_name=payload.get("operationName"),
            allowed_operation_types=allowed,
        )
    except InvalidOperationTypeError:
        return problem_response(MethodNotAllowed(["POST"]), instance=request.url.path)
    except CannotGetOperationTypeError:
        error = BadRequest("Name the operation to run with 'operationName'")
        return problem_response(error, instance=request.url.path)
    body: dict[str, Any] = {}
    if result.errors:
        body["errors"] = [_format_error(error) for error in result.errors]
    body["data"] = result.data
    if result.extensions:
        body["extensions"] = result.extensions
    status = 200 if result.data is not None or not result.errors else 400
    return Response(orjson.dumps(body), status_code=status, media_type="application/json")
