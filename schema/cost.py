"""The rate-limit cost of a GraphQL query, computed from the document before execution.

The method is the node count of GitHub's GraphQL node limit, described at
https://docs.github.com/graphql/overview/resource-limitations. Every connection in
the selected operation is assumed to return a full page. So it contributes its
requested page size times the page sizes of the connections it is nested in. A connection is a field with a ``first`` argument whose
type has ``nodes`` and ``pageInfo`` fields. ``first`` comes from the literal, the
variable or the argument's default, and is DEFAULT_PAGE_SIZE when none is given.
Values outside 1..MAX_PAGE_SIZE are clamped, since the resolvers reject them anyway.

    cost = max(1, ceil(nodes / 100))

GitHub's rate-limit score counts page requests instead (each connection once per
parent node), which would make every query of a flat schema like this one cost 1. The node count
charges what a query can return: ``projects(first: 100)`` costs 1, and three aliased
copies of it cost 3. Plain lists such as ``organizations`` count as no nodes. Fields
under ``@skip`` or ``@include`` count as if included.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLField,
    GraphQLInterfaceType,
    GraphQLObjectType,
    GraphQLSchema,
    InlineFragmentNode,
    IntValueNode,
    OperationDefinitionNode,
    SelectionSetNode,
    VariableNode,
    get_named_type,
    parse,
)

from connex.pagination import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE

NODES_PER_UNIT = 100


@dataclass(frozen=True, slots=True)
class QueryCost:
    """The nodes a query can return at most, and the rate-limit units it is charged."""

    nodes: int
    cost: int


class CostAnalyzer:
    """Query costs against one schema, with the parsed documents of recent queries cached."""

    def __init__(self, schema: GraphQLSchema, max_tokens: int, cache_size: int = 256) -> None:
        self._schema = schema
        self._max_tokens = max_tokens
        self._parse = lru_cache(maxsize=cache_size)(self._parse_uncached)

    def _parse_uncached(self, query: str) -> DocumentNode | None:
        try:
            return parse(query, max_tokens=self._max_tokens)
        except GraphQLError:
            return None

    def measure(
        self, query: str, variables: Mapping[str, Any] | None = None, operation_name: str | None = None
    ) -> QueryCost:
        """Return the cost of the operation that would run.

        A document that does not parse, or names no runnable operation, costs the minimum
        of 1: execution will reject it with the parser's or validator's error.
        """
        document = self._parse(query)
        operation = _select_operation(document, operation_name) if document is not None else None
        if document is None or operation is None:
            return QueryCost(0, 1)

        root_type = self._schema.get_root_type(operation.operation)
        if root_type is None:
            return QueryCost(0, 1)
        fragments = {
            node.name.value: node for node in document.definitions if isinstance(node, FragmentDefinitionNode)
        }
        walk = _Walk(self._schema, fragments, _variable_values(operation, variables or {}))
        nodes = walk.count(operation.selection_set, root_type, 1, frozenset())
        return QueryCost(nodes, max(1, math.ceil(nodes / NODES_PER_UNIT)))


def _select_operation(document: DocumentNode, operation_name: str | None) -> OperationDefinitionNode | None:
    operations = [node for node in document.definitions if isinstance(node, OperationDefinitionNode)]
    if operation_name is None:
        return operations[0] if len(operations) == 1 else None
    for operation in operations:
        if operation.name is not None and operation.name.value == operation_name:
            return operation
    return None


def _variable_values(operation: OperationDefinitionNode, provided: Mapping[str, Any]) -> dict[str, Any]:
    """Return the provided variables plus the integer defaults of the ones left out."""
    values = dict(provided)
    for definition in operation.variable_definitions or ():
        name = definition.variable.name.value
        if name not in values and isinstance(definition.default_value, IntValueNode):
            values[name] = int(definition.default_value.value)
    return values


class _Walk:
    def __init__(
        self, schema: GraphQLSchema, fragments: dict[str, FragmentDefinitionNode], variables: dict[str, Any]
    ) -> None:
        self._schema = schema
        self._fragments = fragments
        self._variables = variables

    def count(
        self,
        selection_set: SelectionSetNode,
        parent: Any,
        multiplier: int,
        spreads: frozenset[str],
    ) -> int:
        """Count the nodes below ``selection_set``, each reached ``multiplier`` times.

        ``spreads`` contains the fragments being expanded, so a cyclic spread (which
        validation rejects later) cannot recurse forever.
        """
        nodes = 0
        for selection in selection_set.selections:
            if isinstance(selection, FieldNode):
                nodes += self._count_field(selection, parent, multiplier, spreads)
            elif isinstance(selection, InlineFragmentNode):
                condition = selection.type_condition
                target = self._schema.get_type(condition.name.value) if condition else parent
                nodes += self.count(selection.selection_set, target or parent, multiplier, spreads)
            elif isinstance(selection, FragmentSpreadNode):
                name = selection.name.value
                fragment = self._fragments.get(name)
                if fragment is None or name in spreads:
                    continue
                target = self._schema.get_type(fragment.type_condition.name.value)
                nodes += self.count(fragment.selection_set, target or parent, multiplier, spreads | {name})
        return nodes

    def _count_field(self, node: FieldNode, parent: Any, multiplier: int, spreads: frozenset[str]) -> int:
        if not isinstance(parent, (GraphQLObjectType, GraphQLInterfaceType)):
            return 0
        definition = parent.fields.get(node.name.value)
        if definition is None:
            return 0

        nodes = 0
        if _is_connection(definition):
            multiplier *= self._page_size(node, definition)
            nodes += multiplier
        if node.selection_set is not None:
            nodes += self.count(node.selection_set, get_named_type(definition.type), multiplier, spreads)
        return nodes

    def _page_size(self, node: FieldNode, definition: GraphQLField) -> int:
        size: Any = None
        for argument in node.arguments or ():
            if argument.name.value != "first":
                continue
            if isinstance(argument.value, IntValueNode):
                size = int(argument.value.value)
            elif isinstance(argument.value, VariableNode):
                size = self._variables.get(argument.value.name.value)
        if size is None:
            default = definition.args["first"].default_value
            size = default if isinstance(default, int) else DEFAULT_PAGE_SIZE
        if isinstance(size, bool) or not isinstance(size, int):
            return DEFAULT_PAGE_SIZE
        return min(max(size, 1), MAX_PAGE_SIZE)


def _is_connection(definition: GraphQLField) -> bool:
    named = get_named_type(definition.type)
    return (
        "first" in definition.args
        and isinstance(named, GraphQLObjectType)
        and "nodes" in named.fields
        and "pageInfo" in named.fields
    )
