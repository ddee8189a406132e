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
from strawberry.types import ExecutionContext

from connex.errors import ConnexError
from connex.settings import Settings
from schema.mutations import Mutation
from schema.queries import Query
from schema.scalars import DateTime

logger = logging.getLogger("connex.graphql")


def is_expected(error: GraphQLError) -> bool:
    """True for errors the caller caused: our typed errors and GraphQL validation errors."""
    original = error.original_error
    return original is None or isinstance(original, ConnexError)


class ConnexSchema(strawberry.Schema):
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
    extensions: list[Any] = [
        MaxTokensLimiter(max_token_count=settings.graphql_max_tokens),
        MaxAliasesLimiter(max_alias_count=settings.graphql_max_aliases),
        QueryDepthLimiter(max_depth=settings.graphql_max_depth),
        ParserCache(maxsize=256),
        ValidationCache(maxsize=256),
        MaskErrors(should_mask_error=_should_mask, error_message="Internal server error"),
    ]
    return ConnexSchema(
        query=Query,
        mutation=Mutation,
        extensions=extensions,
        scalar_overrides={datetime: DateTime},
    )
