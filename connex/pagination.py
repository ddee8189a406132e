"""Keyset cursors and page-size rules shared by every list."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar

import orjson
from sqlalchemy import ColumnElement, Select

from connex.db import Database
from connex.errors import FieldError, ValidationFailed

MAX_PAGE_SIZE = 100
DEFAULT_PAGE_SIZE = 20
T = TypeVar("T")


def encode_cursor(moment: datetime, row_id: str) -> str:
    raw = orjson.dumps([moment.isoformat(), row_id])
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, *, field: str = "after") -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        moment_text, row_id = orjson.loads(raw)
        moment = datetime.fromisoformat(moment_text)
        if moment.tzinfo is None or not isinstance(row_id, str):
            raise ValueError
    except (ValueError, TypeError, orjson.JSONDecodeError):
        raise ValidationFailed(
            "The cursor is invalid; pass a cursor returned by a previous page",
            errors=[FieldError(field, "invalid cursor")],
        ) from None
    return moment, row_id


@dataclass(frozen=True, slots=True)
class PageRequest:
    first: int
    after: tuple[datetime, str] | None
    offset: int


def page_request(first: int | None, after: str | None, offset: int | None) -> PageRequest:
    errors = []
    size = DEFAULT_PAGE_SIZE if first is None else first
    if not 1 <= size <= MAX_PAGE_SIZE:
        errors.append(FieldError("first", f"must be between 1 and {MAX_PAGE_SIZE}"))
    if offset is not None and offset < 0:
        errors.append(FieldError("offset", "must not be negative"))
    if after is not None and offset:
        errors.append(FieldError("offset", "cannot be combined with a cursor"))
    if errors:
        raise ValidationFailed("Invalid page request", errors=errors)
    return PageRequest(size, decode_cursor(after) if after else None, offset or 0)


@dataclass(slots=True)
class Page(Generic[T]):
    nodes: list[T]
    has_next_page: bool
    end_cursor: str | None


def make_page(rows: list[Any], request: PageRequest, moment_attribute: str) -> Page[Any]:
    """Build a page from up to ``first + 1`` rows fetched in keyset order."""
    has_next = len(rows) > request.first
    nodes = rows[: request.first]
    cursor = None
    if nodes:
        last = nodes[-1]
        cursor = encode_cursor(getattr(last, moment_attribute), last.id)
    return Page(nodes, has_next, cursor)


async def fetch_page(
    db: Database, query: Select[Any], moment: ColumnElement[Any], row_id: ColumnElement[Any], request: PageRequest
) -> Page[Any]:
    """Run ``query`` for one page, newest ``moment`` first with ties broken by ``row_id``.

    The cursor condition is a keyset seek, so a page costs the same wherever it starts.
    Rows come from a plain connection as Core rows; the query must be read-only.
    """
    if request.after is not None:
        after_moment, after_id = request.after
        query = query.where((moment < after_moment) | ((moment == after_moment) & (row_id < after_id)))
    query = query.order_by(moment.desc(), row_id.desc()).offset(request.offset).limit(request.first + 1)
    async with db.connection() as connection:
        rows = (await connection.execute(query)).all()
    return make_page(list(rows), request, moment.key)
