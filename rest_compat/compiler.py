"""Compilation of the route table against the schema, once at start-up.

Each route's operation is parsed and validated here, its variables are turned
into REST parameters, and its selection set into a response shape. A route
whose operation does not validate stops the server from starting.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    GraphQLInputObjectType,
    GraphQLInputType,
    GraphQLNonNull,
    GraphQLObjectType,
    OperationDefinitionNode,
    OperationType,
    parse,
    validate,
)
from graphql.language import VariableNode
from graphql.pyutils import Undefined
from graphql.utilities import type_from_ast
from strawberry.schema import Schema as StrawberrySchema

from rest_compat.binding import Parameter
from rest_compat.naming import snake
from rest_compat.routes import RouteSpec, Version
from rest_compat.shapes import Serializer, Shape, compile_serializer, compile_shape


class RouteDefinitionError(RuntimeError):
    """A route of the table does not fit the schema."""


@dataclass(slots=True)
class BodyBinding:
    variable: str
    type: GraphQLInputType
    # Input fields that come from the path instead of the body.
    excluded: frozenset[str]

    @property
    def object_type(self) -> GraphQLInputObjectType:
        type_ = self.type.of_type if isinstance(self.type, GraphQLNonNull) else self.type
        if not isinstance(type_, GraphQLInputObjectType):
            raise RouteDefinitionError(f"body variable ${self.variable} must be an input object")
        return type_


@dataclass(slots=True)
class CompiledRoute:
    spec: RouteSpec
    version: Version
    document: DocumentNode
    operation: OperationDefinitionNode
    fragments: dict[str, FragmentDefinitionNode]
    root_node: FieldNode
    root_type: GraphQLObjectType
    shape: Shape
    parameters: list[Parameter]
    body: BodyBinding | None
    serializer: Serializer | None
    path_pattern: re.Pattern[str] = field(init=False)

    def __post_init__(self) -> None:
        self.path_pattern = path_regex(self.spec.path)

    @property
    def argument_variables(self) -> dict[str, str]:
        """Root field argument name -> the variable passed to it directly."""
        return {
            argument.name.value: argument.value.name.value
            for argument in self.root_node.arguments or ()
            if isinstance(argument.value, VariableNode)
        }

    @property
    def is_mutation(self) -> bool:
        return self.operation.operation is OperationType.MUTATION

    @property
    def path_parameters(self) -> list[Parameter]:
        return [parameter for parameter in self.parameters if parameter.location == "path"]

    @property
    def query_parameters(self) -> list[Parameter]:
        return [parameter for parameter in self.parameters if parameter.location == "query"]


def path_regex(template: str) -> re.Pattern[str]:
    pattern = re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", template)
    return re.compile(f"^{pattern}$")


def compile_route(schema: StrawberrySchema, version: Version, spec: RouteSpec) -> CompiledRoute:
    graphql_schema = schema._schema
    document = parse(spec.operation)
    errors = validate(graphql_schema, document)
    if errors:
        raise RouteDefinitionError(f"{version.name} {spec.method} {spec.path}: {errors[0].message}")

    operations = [node for node in document.definitions if isinstance(node, OperationDefinitionNode)]
    fragments = {node.name.value: node for node in document.definitions if isinstance(node, FragmentDefinitionNode)}
    if len(operations) != 1 or len(operations[0].selection_set.selections) != 1:
        raise RouteDefinitionError(f"{spec.path}: a route needs exactly one operation with one root field")
    operation = operations[0]
    root_node = operation.selection_set.selections[0]
    if not isinstance(root_node, FieldNode):
        raise RouteDefinitionError(f"{spec.path}: the root selection must be a field")
    root_type = graphql_schema.get_root_type(operation.operation)
    if root_type is None:
        raise RouteDefinitionError(f"{spec.path}: the schema has no {operation.operation.value} type")

    shape = compile_shape(schema, root_type, root_node, fragments)
    parameters, body = _bind_variables(graphql_schema, spec, operation, root_node, root_type)
    serializer = None
    if shape.is_object and all(child.basic for child in shape.children):
        serializer = compile_serializer(shape, version.datetime_style)
    return CompiledRoute(
        spec, version, document, operation, fragments, root_node, root_type, shape, parameters, body, serializer
    )


def _argument_descriptions(root_type: GraphQLObjectType, root_node: FieldNode) -> dict[str, str | None]:
    """Map each variable used directly as a root argument to that argument's description."""
    arguments = root_type.fields[root_node.name.value].args
    descriptions: dict[str, str | None] = {}
    for argument in root_node.arguments or ():
        if isinstance(argument.value, VariableNode):
            descriptions[argument.value.name.value] = arguments[argument.name.value].description
    return descriptions


def _bind_variables(
    graphql_schema: object,
    spec: RouteSpec,
    operation: OperationDefinitionNode,
    root_node: FieldNode,
    root_type: GraphQLObjectType,
) -> tuple[list[Parameter], BodyBinding | None]:
    path_names = set(re.findall(r"\{(\w+)\}", spec.path))
    targets = dict(spec.params)
    descriptions = _argument_descriptions(root_type, root_node)
    variable_types = {
        definition.variable.name.value: (
            type_from_ast(graphql_schema, definition.type),  # type: ignore[arg-type]
            definition.default_value is not None,
        )
        for definition in operation.variable_definitions or ()
    }

    body = None
    excluded = {target.partition(".")[2] for target in targets.values() if "." in target}
    parameters: list[Parameter] = []
    if spec.body is not None:
        if spec.body not in variable_types:
            raise RouteDefinitionError(f"{spec.path}: body variable ${spec.body} is not defined")
        body = BodyBinding(spec.body, variable_types[spec.body][0], frozenset(excluded))
        body.object_type  # noqa: B018 - raises when the body variable is not an input object

    bound_variables = {spec.body} if spec.body else set()
    reverse = {target.partition(".")[0]: rest_name for rest_name, target in targets.items() if "." not in target}
    for rest_name, target in targets.items():
        variable, _, input_field = target.partition(".")
        if input_field:
            if body is None or variable != body.variable:
                raise RouteDefinitionError(f"{spec.path}: {target} must name a field of the body variable")
            field_type = body.object_type.fields[input_field].type
            location = "path" if rest_name in path_names else "query"
            parameters.append(Parameter(rest_name, location, variable, input_field, field_type, location == "path"))

    for variable, (type_, has_default) in variable_types.items():
        if variable in bound_variables:
            continue
        rest_name = reverse.get(variable, snake(variable))
        location = "path" if rest_name in path_names else "query"
        required = location == "path" or (isinstance(type_, GraphQLNonNull) and not has_default)
        parameters.append(
            Parameter(rest_name, location, variable, None, type_, required, descriptions.get(variable))
        )

    declared_path = {parameter.rest_name for parameter in parameters if parameter.location == "path"}
    if declared_path != path_names:
        raise RouteDefinitionError(f"{spec.path}: path parameters {sorted(path_names - declared_path)} are not bound")
    return parameters, body


def compile_version(schema: StrawberrySchema, version: Version) -> list[CompiledRoute]:
    return [compile_route(schema, version, spec) for spec in version.routes]


__all__ = ["CompiledRoute", "RouteDefinitionError", "Undefined", "compile_route", "compile_version"]
