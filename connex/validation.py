"""Checks on input values that the GraphQL types cannot express."""

from __future__ import annotations

import re

from connex.errors import FieldError

SLUG_PATTERN = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")


def check_text(
    errors: list[FieldError], field: str, value: str | None, *, max_length: int, required: bool
) -> None:
    if value is None:
        if required:
            errors.append(FieldError(field, "must not be null"))
        return
    if required and not value.strip():
        errors.append(FieldError(field, "must not be blank"))
    if len(value) > max_length:
        errors.append(FieldError(field, f"must be at most {max_length} characters"))
