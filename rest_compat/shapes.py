"""Response shapes compiled from a route's selection set.

A shape records, for every selected field, the GraphQL type, the response key,
the Python attribute a basic field reads and the REST name. From it come the
conversion of a GraphQL result to the version's JSON, the JSON Schema in the
OpenAPI document and, where every field below the root is a plain attribute,
a serializer that skips graphql-core's per-field execution.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from graphql import (
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLEnumType,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLOutputType,
    GraphQLScalarType,
    InlineFragmentNode,
    SelectionSetNode,
)
from strawberry.schema import Schema as StrawberrySchema

from connex.webhooks.payload import to_v1_data
from rest_compat.naming import snake

DateTimeStyle = Literal["rfc3339", "unix"]


class SerializationError(RuntimeError):
    """A resolver returned a value its declared type does not allow."""


@dataclass(slots=True)
class Shape:
    rest_name: str
    response_key: str
    python_name: str
    nullable: bool
    is_list: bool
    item_nullable: bool
    graphql_type: GraphQLScalarType | GraphQLEnumType | GraphQLObjectType
    children: list[Shape] = field(default_factory=list)
    # True when this field and every field below it reads a plain attribute.
    basic: bool = True
    description: str | None = None

    @property
    def is_object(self) -> bool:
        return isinstance(self.graphql_type, GraphQLObjectType)

    def child(self, rest_name: str) -> Shape:
        for shape in self.children:
            if shape.rest_name == rest_name:
                return shape
        raise KeyError(rest_name)


def _unwrap(type_: GraphQLOutputType) -> tuple[Any, bool, bool, bool]:
    """Return (named type, nullable, is_list, item_nullable)."""
    nullable = not isinstance(type_, GraphQLNonNull)
    if isinstance(type_, GraphQLNonNull):
        type_ = type_.of_type
    is_list = isinstance(type_, GraphQLList)
    item_nullable = True
    if is_list:
        type_ = type_.of_type
        item_nullable = not isinstance(type_, GraphQLNonNull)
        if isinstance(type_, GraphQLNonNull):
            type_ = type_.of_type
    return type_, nullable, is_list, item_nullable


def _field_nodes(selection_set: SelectionSetNode, fragments: dict[str, FragmentDefinitionNode]) -> list[FieldNode]:
    nodes: list[FieldNode] = []
    for selection in selection_set.selections:
        if isinstance(selection, FieldNode):
            nodes.append(selection)
        elif isinstance(selection, FragmentSpreadNode):
            nodes.extend(_field_nodes(fragments[selection.name.value].selection_set, fragments))
        elif isinstance(selection, InlineFragmentNode):
            nodes.extend(_field_nodes(selection.selection_set, fragments))
    return nodes


def compile_shape(
    schema: StrawberrySchema,
    parent: GraphQLObjectType,
    node: FieldNode,
    fragments: dict[str, FragmentDefinitionNode],
) -> Shape:
    name = node.name.value
    graphql_field = parent.fields[name]
    named, nullable, is_list, item_nullable = _unwrap(graphql_field.type)
    strawberry_field = schema.get_field_for_type(name, parent.name)
    python_name = strawberry_field.python_name if strawberry_field else name
    response_key = node.alias.value if node.alias else name
    shape = Shape(
        rest_name=snake(response_key),
        response_key=response_key,
        python_name=python_name,
        nullable=nullable,
        is_list=is_list,
        item_nullable=item_nullable,
        graphql_type=named,
        basic=bool(strawberry_field and strawberry_field.is_basic_field),
        description=graphql_field.description,
    )
    if isinstance(named, GraphQLObjectType) and node.selection_set:
        for child_node in _field_nodes(node.selection_set, fragments):
            child = compile_shape(schema, named, child_node, fragments)
            shape.children.append(child)
            shape.basic = shape.basic and child.basic
    return shape


def _datetime_from_text(value: str) -> int:
    return int(datetime.fromisoformat(value).timestamp())


def leaf_from_result(shape: Shape, style: DateTimeStyle) -> Callable[[Any], Any]:
    """Convert a leaf value of a GraphQL result to its REST form."""
    if isinstance(shape.graphql_type, GraphQLEnumType):
        return str.lower
    if shape.graphql_type.name == "DateTime" and style == "unix":
        return _datetime_from_text
    if shape.graphql_type.name == "JSON" and style == "unix":
        return to_v1_data
    return _identity


def _identity(value: Any) -> Any:
    return value


def from_result(shape: Shape, value: Any, style: DateTimeStyle) -> Any:
    """Convert a GraphQL result value (already serialized) to the version's JSON."""
    if value is None:
        return None
    if shape.is_list:
        return [_one_from_result(shape, item, style) for item in value]
    return _one_from_result(shape, value, style)


def _one_from_result(shape: Shape, value: Any, style: DateTimeStyle) -> Any:
    if value is None:
        return None
    if shape.is_object:
        return {child.rest_name: from_result(child, value.get(child.response_key), style) for child in shape.children}
    return leaf_from_result(shape, style)(value)


Serializer = Callable[[Any], Any]


def compile_serializer(shape: Shape, style: DateTimeStyle) -> Serializer:
    """Build a function from the resolver's Python value straight to the version's JSON.

    Only for shapes whose fields below ``shape`` are all basic: each reads its
    attribute and goes through its GraphQL type's ``serialize``, as graphql-core
    would do. ``shape`` itself may have a resolver; the caller runs it.
    """
    for child in shape.children:
        if not child.basic:
            raise ValueError(f"field {child.response_key!r} has a resolver; it needs the GraphQL executor")
    one = _compile_one(shape, style)
    if not shape.is_list:
        return _nullable(one, shape.nullable, shape.response_key)
    item = _nullable(one, shape.item_nullable, shape.response_key)

    def serialize_list(value: Any) -> Any:
        if value is None:
            if not shape.nullable:
                raise SerializationError(f"null for non-null list {shape.response_key!r}")
            return None
        return [item(entry) for entry in value]

    return serialize_list


def _nullable(serializer: Serializer, nullable: bool, key: str) -> Serializer:
    def serialize(value: Any) -> Any:
        if value is None:
            if not nullable:
                raise SerializationError(f"null for non-null field {key!r}")
            return None
        return serializer(value)

    return serialize


def _compile_one(shape: Shape, style: DateTimeStyle) -> Serializer:
    if shape.is_object:
        getters = [
            (child.rest_name, child.python_name, compile_serializer(child, style)) for child in shape.children
        ]

        def serialize_object(value: Any) -> dict[str, Any]:
            return {rest_name: serializer(getattr(value, python_name)) for rest_name, python_name, serializer in getters}

        return serialize_object

    graphql_serialize = shape.graphql_type.serialize
    if isinstance(shape.graphql_type, GraphQLEnumType):
        return lambda value: graphql_serialize(value).lower()
    if shape.graphql_type.name == "DateTime" and style == "unix":
        return lambda value: int(value.timestamp())
    if shape.graphql_type.name == "JSON" and style == "unix":
        # Event data is stored in the v2 form; v1 renames its time fields and uses Unix seconds.
        return lambda value: to_v1_data(graphql_serialize(value))
    return graphql_serialize
