"""Execution of a compiled route: bind the request, run the operation, shape the JSON."""

from __future__ import annotations

import inspect
import logging
from typing import Any

from graphql import GraphQLEnumType, GraphQLError, GraphQLResolveInfo, execute
from graphql.execution import get_argument_values, get_variable_values
from graphql.pyutils import Path
from starlette.datastructures import QueryParams

from connex.context import RequestContext
from connex.errors import ConnexError, FieldError, ValidationFailed
from rest_compat.binding import (
    Parameter,
    check_value,
    enum_values,
    first_error_per_field,
    named_type,
    parse_text,
    translate_body,
)
from rest_compat.compiler import CompiledRoute
from rest_compat.naming import snake
from rest_compat.shapes import from_result

logger = logging.getLogger("connex.rest")


class InternalError(ConnexError):
    """An unexpected failure; its cause is logged and never shown to the caller."""


def bind(
    route: CompiledRoute, path_values: dict[str, str], query: QueryParams, body: Any
) -> dict[str, Any]:
    """Build the operation's variables from the request, or raise ValidationFailed."""
    errors: list[FieldError] = []
    variables: dict[str, Any] = {}

    body_valid = True
    if route.body is not None:
        if body is None:
            errors.append(FieldError("body", "must be a JSON object"))
        translated = translate_body(body or {}, route.body.object_type, "", errors, route.body.excluded)
        variables[route.body.variable] = translated if isinstance(translated, dict) else {}
        # Unknown and missing fields are already named; coercion would repeat them less clearly.
        body_valid = not errors

    known = {parameter.rest_name for parameter in route.query_parameters}
    for name in query:
        if name not in known:
            errors.append(FieldError(name, "unknown query parameter", "query"))

    for parameter in route.parameters:
        if parameter.location == "path":
            texts = [path_values[parameter.rest_name]]
        else:
            texts = query.getlist(parameter.rest_name)
        if not texts:
            continue
        if len(texts) > 1:
            errors.append(FieldError(parameter.rest_name, "given more than once", parameter.location))
            continue
        value = _parse_parameter(parameter, texts[0], errors)
        if parameter.input_field is None:
            variables[parameter.variable] = value
        else:
            variables.setdefault(parameter.variable, {})[parameter.input_field] = value

    for parameter in route.parameters:
        if parameter.input_field is None and parameter.variable in variables:
            check_value(variables[parameter.variable], parameter.type, parameter.rest_name, parameter.location, errors)
    if route.body is not None and body_valid:
        check_value(variables[route.body.variable], route.body.type, "", "body", errors)

    if errors:
        raise ValidationFailed("The request has invalid parameters", errors=first_error_per_field(errors))
    return variables


def _parse_parameter(parameter: Parameter, text: str, errors: list[FieldError]) -> Any:
    named = named_type(parameter.type)
    value = parse_text(text, parameter.type)
    if isinstance(named, GraphQLEnumType) and value not in named.values:
        errors.append(
            FieldError(parameter.rest_name, "must be one of: " + ", ".join(enum_values(named)), parameter.location)
        )
    return value


async def run(route: CompiledRoute, variables: dict[str, Any], context: RequestContext) -> Any:
    """Execute the route's operation and return its root value in the version's JSON form."""
    try:
        if route.serializer is not None:
            value = await _resolve_root(route, variables, context)
            return route.serializer(value)
        return await _execute(route, variables, context)
    except ValidationFailed as error:
        error.errors = [_rest_field_error(route, field_error) for field_error in error.errors]
        raise


def _rest_field_error(route: CompiledRoute, error: FieldError) -> FieldError:
    """Rename a field error from GraphQL argument paths to the route's REST names."""
    head, _, rest = error.field.partition(".")
    variable = route.argument_variables.get(head, head)
    if route.body is not None and variable == route.body.variable and rest:
        for parameter in route.parameters:
            if parameter.input_field == rest:
                return FieldError(parameter.rest_name, error.message, parameter.location)
        return FieldError(".".join(snake(part) for part in rest.split(".")), error.message, "body")
    for parameter in route.parameters:
        if parameter.input_field is None and parameter.variable == variable:
            return FieldError(parameter.rest_name, error.message, parameter.location)
    return FieldError(snake(error.field), error.message, error.location)


async def _resolve_root(route: CompiledRoute, variables: dict[str, Any], context: RequestContext) -> Any:
    """Call the root field's resolver as graphql-core would, skipping per-field execution below it.

    The resolver, its arguments' coercion and its permission checks are the
    schema's own. Only the plain attribute fields below it go through the
    route's compiled serializer.
    """
    schema = context.services.extras["schema"]._schema
    variable_values = get_variable_values(schema, route.operation.variable_definitions or (), variables)
    if isinstance(variable_values, list):
        raise _variables_error(variable_values)
    field_name = route.root_node.name.value
    field_definition = route.root_type.fields[field_name]
    arguments = get_argument_values(field_definition, route.root_node, variable_values)
    info = GraphQLResolveInfo(
        field_name,
        [route.root_node],
        field_definition.type,
        route.root_type,
        Path(None, route.shape.response_key, route.root_type.name),
        schema,
        route.fragments,
        None,
        route.operation,
        variable_values,
        context,
        inspect.isawaitable,
        None,
        None,  # type: ignore[arg-type]
    )
    value = field_definition.resolve(None, info, **arguments)  # type: ignore[misc]
    if inspect.isawaitable(value):
        value = await value
    return value


async def _execute(route: CompiledRoute, variables: dict[str, Any], context: RequestContext) -> Any:
    schema = context.services.extras["schema"]._schema
    result = execute(schema, route.document, context_value=context, variable_values=variables)
    if inspect.isawaitable(result):
        result = await result
    if result.errors:
        raise _translate(result.errors[0])
    value = (result.data or {}).get(route.shape.response_key)
    return from_result(route.shape, value, route.version.datetime_style)


def _translate(error: GraphQLError) -> ConnexError:
    if isinstance(error.original_error, ConnexError):
        return error.original_error
    logger.error("unexpected error in REST operation", exc_info=error.original_error or error)
    return InternalError()


def _variables_error(errors: list[GraphQLError]) -> ConnexError:
    # The binder checks every value first, so reaching this means the route table and binder disagree.
    logger.error("variables rejected after binding: %s", errors[0].message)
    return InternalError()
