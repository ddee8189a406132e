"""The ``/graphql`` endpoint: GraphQL over HTTP for POST and for read-only GET."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
from graphql import GraphQLError
from starlette.requests import Request
from starlette.responses import Response
from strawberry.schema.exceptions import CannotGetOperationTypeError, InvalidOperationTypeError
from strawberry.types.graphql import OperationType

from connex.admission import Admission
from connex.context import RequestContext, Services
from connex.db import rfc3339
from connex.errors import (
    BadRequest,
    ConnexError,
    CostLimitExceeded,
    MethodNotAllowed,
    UnsupportedMediaType,
)
from connex.middleware import AdmissionGate, rate_limited_response
from connex.problems import problem_response
from schema.cost import QueryCost


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
    """Run a GraphQL request, charging its cost against the key's rate limit first.

    The key is admitted before any other response, so a bad key gets 401 even with a
    malformed request. A request that cannot be read costs 1 unit. A query over
    the maximum cost is rejected before execution without consuming budget.
    """
    services: Services = request.app.state.services
    schema = services.extras["schema"]
    gate: AdmissionGate = request.state.admission_gate
    path = request.url.path

    payload: dict[str, Any] = {}
    read_error: ConnexError | None = None
    try:
        payload = await _read_request(request)
        query = payload.get("query")
        variables = payload.get("variables")
        if not isinstance(query, str) or not query.strip():
            raise BadRequest("Missing 'query': send a GraphQL document")
        if variables is not None and not isinstance(variables, dict):
            raise BadRequest("'variables' must be a JSON object")
    except ConnexError as error:
        read_error = error

    if read_error is None:
        operation_name = payload.get("operationName")
        cost = schema.cost_analyzer.measure(query, variables, operation_name if isinstance(operation_name, str) else None)
    else:
        cost = QueryCost(0, 1)
    maximum = services.settings.graphql_max_cost
    over_maximum = cost.cost > maximum

    try:
        admission = await gate.admit(0 if over_maximum else cost.cost)
    except ConnexError as error:
        return problem_response(error, instance=path)
    if read_error is not None:
        return problem_response(read_error, instance=path)
    if over_maximum or admission.cost_over_limit:
        return _cost_error_response(cost, admission, maximum)
    if not admission.allowed:
        return rate_limited_response(admission, path, what="query")

    allowed = {OperationType.QUERY} if request.method == "GET" else {OperationType.QUERY, OperationType.MUTATION}
    context = RequestContext(services, admission.principal, request.state.request_id)
    try:
        result = await schema.execute(
            query,
            variable_values=variables,
            context_value=context,
            operation_name=payload.get("operationName"),
            allowed_operation_types=allowed,
        )
    except InvalidOperationTypeError:
        return problem_response(MethodNotAllowed(["POST"]), instance=path)
    except CannotGetOperationTypeError:
        error = BadRequest("Name the operation to run with 'operationName'")
        return problem_response(error, instance=path)
    body: dict[str, Any] = {}
    if result.errors:
        body["errors"] = [_format_error(error) for error in result.errors]
    body["data"] = result.data
    body["extensions"] = {**(result.extensions or {}), "cost": _cost_extension(cost, admission, maximum)}
    # GraphQL over HTTP: a request that could not run (syntax, validation, variables) is 400;
    # one that ran is 200, its resolver errors (FORBIDDEN, NOT_FOUND, ...) in "errors".
    not_run = result.data is None and any(error.path is None for error in result.errors or ())
    status = 400 if not_run else 200
    return Response(orjson.dumps(body), status_code=status, media_type="application/json")


def _cost_extension(cost: QueryCost, admission: Admission, maximum: int) -> dict[str, Any]:
    """Return ``extensions.cost``: the query's cost, the maximum, and the key's budget after it."""
    decision = admission.decision
    return {
        "requestedQueryCost": cost.cost,
        "nodeCount": cost.nodes,
        "maximumQueryCost": min(maximum, decision.limit),
        "limit": decision.limit,
        "remaining": decision.remaining,
        "resetAt": rfc3339(datetime.fromtimestamp(admission.reset_at, UTC)),
    }


def _cost_error_response(cost: QueryCost, admission: Admission, maximum: int) -> Response:
    """Reject a query whose cost is over the maximum, or over the key's whole limit."""
    effective = min(maximum, admission.decision.limit)
    if cost.cost > maximum:
        reason = f"the maximum query cost is {maximum}"
    else:
        reason = f"the API key's limit is {admission.decision.limit} per {admission.decision.window} s"
    error = CostLimitExceeded(
        f"The query costs {cost.cost} (it can return {cost.nodes} nodes, 1 per 100) and {reason}, "
        f"so the maximum is {effective}. Request smaller pages with 'first' or split the query."
    )
    formatted = {"message": error.detail, "extensions": error.extensions}
    body = {"errors": [formatted], "data": None, "extensions": {"cost": _cost_extension(cost, admission, maximum)}}
    return Response(orjson.dumps(body), status_code=error.status, media_type="application/json")
