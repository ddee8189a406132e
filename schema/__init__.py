"""The Strawberry schema: the single definition of the domain and its operations."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

import strawberry
from graphql import GraphQLError
from strawberry.extensions import (
    MaskErrors,
    MaxAliasesLimiter,
    MaxTokensLimiter,
    ParserCache,
    QueryDepthLimiter,
    ValidationCache,
)
from strawberry.schema.config import StrawberryConfig
from strawberry.tools import merge_types
from strawberry.types import ExecutionContext

from connex.errors import ConnexError
from connex.settings import Settings
from schema import mutations, queries, usage, webhooks
from schema.cost import CostAnalyzer
from schema.scalars import DateTime

logger = logging.getLogger("connex.graphql")

# Each domain module contributes its own Query and Mutation fields.
Query = merge_types("Query", (queries.Query, usage.Query, webhooks.Query))
Mutation = merge_types("Mutation", (mutations.Mutation, usage.Mutation, webhooks.Mutation))


def is_expected(error: GraphQLError) -> bool:
    """True for errors the caller caused: our typed errors, and errors found before execution.

    Errors without a path come from parsing, validation or variable coercion
    (a scalar's parser raising ValueError, for example), so they describe the request.
    """
    original = error.original_error
    return original is None or isinstance(original, ConnexError) or error.path is None


class ConnexSchema(strawberry.Schema):
    # Set by build_schema; the /graphql endpoint prices each query with it.
    cost_analyzer: CostAnalyzer

    def process_errors(self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None) -> None:
        # Strawberry logs every error at ERROR; a denied permission or a typo in a
        # query is the caller's doing, so only unexpected errors are logged here.
        for error in errors:
            if is_expected(error):
                logger.debug("graphql error: %s", error.message)
            else:
                logger.error("unexpected error in resolver", exc_info=error.original_error)


def _should_mask(error: GraphQLError) -> bool:
    return not is_expected(error)


def build_schema(settings: Settings) -> ConnexSchema:
    # Strawberry builds the extensions anew for each request; the parser and
    # validation caches live at module level, so they persist across requests.
    extensions: list[Any] = [
        lambda: MaxTokensLimiter(max_token_count=settings.graphql_max_tokens),
        lambda: MaxAliasesLimiter(max_alias_count=settings.graphql_max_aliases),
        lambda: QueryDepthLimiter(max_depth=settings.graphql_max_depth),
        lambda: ParserCache(maxsize=256),
        lambda: ValidationCache(maxsize=256),
        lambda: MaskErrors(should_mask_error=_should_mask, error_message="Internal server error"),
    ]
    schema = ConnexSchema(
        query=Query,
        mutation=Mutation,
        extensions=extensions,
        config=StrawberryConfig(scalar_map={datetime: DateTime}),
    )
    schema.cost_analyzer = CostAnalyzer(schema._schema, max_tokens=settings.graphql_max_tokens)
    return schema
