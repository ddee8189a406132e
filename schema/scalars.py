"""Scalars whose parsing is stricter than Strawberry's defaults."""

from __future__ import annotations

from datetime import UTC, datetime

import strawberry

from connex.db import rfc3339


def _parse(value: object) -> datetime:
    if not isinstance(value, str):
        raise ValueError("DateTime must be an RFC 3339 string")
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{value!r} is not an RFC 3339 date-time") from None
    if moment.tzinfo is None:
        raise ValueError(f"{value!r} has no time zone; add 'Z' or an offset such as '+02:00'")
    return moment.astimezone(UTC)


DateTime = strawberry.scalar(
    name="DateTime",
    description="An RFC 3339 date-time with a time zone, returned in UTC.",
    serialize=rfc3339,
    parse_value=_parse,
    specified_by_url="https://datatracker.ietf.org/doc/html/rfc3339#section-5.6",
)
