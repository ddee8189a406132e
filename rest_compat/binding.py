"""Binding of path, query and body values to an operation's GraphQL variables.

Names are translated (snake_case to the schema's camelCase, lowercase enum
values to GraphQL enum names), strings from the URL are parsed by their
variable's type, and the schema's own input coercion then checks every value.
Each problem is reported with the caller's field name and where it came from.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal

from graphql import (
    GraphQLEnumType,
    GraphQLError,
    GraphQLInputObjectType,
    GraphQLInputType,
    GraphQLList,
    GraphQLNonNull,
    GraphQLScalarType,
)
from graphql.pyutils import Undefined
from graphql.utilities import validate_input_value

from connex.errors import FieldError
from rest_compat.naming import snake

Location = Literal["path", "query", "body"]
_INTEGER = re.compile(r"^[+-]?\d{1,20}$")


@dataclass(frozen=True, slots=True)
class Parameter:
    """One REST parameter bound to a variable, or to one field of an input variable."""

    rest_name: str
    location: Location
    variable: str
    input_field: str | None
    type: GraphQLInputType
    required: bool
    description: str | None = None


def named_type(type_: GraphQLInputType) -> Any:
    while isinstance(type_, (GraphQLNonNull, GraphQLList)):
        type_ = type_.of_type
    return type_


def parse_text(text: str, type_: GraphQLInputType) -> Any:
    """Turn a URL string into the Python value the variable's type expects."""
    named = named_type(type_)
    if isinstance(named, GraphQLEnumType):
        return text.upper() if text.upper() in named.values else text
    if isinstance(named, GraphQLScalarType):
        if named.name == "Int":
            return int(text) if _INTEGER.match(text) else text
        if named.name == "Float":
            try:
                return float(text)
            except ValueError:
                return text
        if named.name == "Boolean":
            return {"true": True, "false": False}.get(text, text)
    return text


def translate_body(
    value: Any, type_: GraphQLInputType, path: str, errors: list[FieldError], excluded: frozenset[str] = frozenset()
) -> Any:
    """Rename snake_case keys to input field names and lowercase enum values to enum names.

    Unknown keys and missing required fields are reported here, with REST names;
    the schema's coercion reports everything else afterwards.
    """
    if value is None:
        return None
    if isinstance(type_, GraphQLNonNull):
        return translate_body(value, type_.of_type, path, errors, excluded)
    if isinstance(type_, GraphQLList):
        if not isinstance(value, list):
            return value
        return [translate_body(item, type_.of_type, f"{path}[{index}]", errors) for index, item in enumerate(value)]
    if isinstance(type_, GraphQLEnumType):
        if isinstance(value, str) and value.upper() in type_.values:
            return value.upper()
        errors.append(FieldError(path, "must be one of: " + ", ".join(enum_values(type_))))
        return value
    if isinstance(type_, GraphQLInputObjectType):
        return _translate_object(value, type_, path, errors, excluded)
    return value


def _translate_object(
    value: Any, type_: GraphQLInputObjectType, path: str, errors: list[FieldError], excluded: frozenset[str]
) -> Any:
    if not isinstance(value, dict):
        errors.append(FieldError(path or "body", "must be a JSON object"))
        return Undefined
    by_rest_name = {snake(name): name for name in type_.fields if name not in excluded}
    translated: dict[str, Any] = {}
    for key, item in value.items():
        name = by_rest_name.get(key)
        field_path = f"{path}.{key}" if path else key
        if name is None:
            errors.append(FieldError(field_path, "unknown field"))
            continue
        translated[name] = translate_body(item, type_.fields[name].type, field_path, errors)
    for name, input_field in type_.fields.items():
        if name in excluded or name in translated:
            continue
        if isinstance(input_field.type, GraphQLNonNull) and input_field.default_value is Undefined:
            field_path = f"{path}.{snake(name)}" if path else snake(name)
            errors.append(FieldError(field_path, "required field is missing"))
    return translated


def check_value(
    value: Any, type_: GraphQLInputType, rest_path: str, location: Location, errors: list[FieldError]
) -> None:
    """Run the schema's input coercion and report failures with REST names."""

    def on_error(error: GraphQLError, path: list[str | int]) -> None:
        segments = [rest_path] if rest_path else []
        segments += [f"[{part}]" if isinstance(part, int) else snake(part) for part in path]
        field = ".".join(segments).replace(".[", "[") or location
        errors.append(FieldError(field, _clean_message(error.message), location))

    validate_input_value(value, type_, on_error, hide_suggestions=True)


def enum_values(type_: GraphQLEnumType) -> list[str]:
    return [name.lower() for name in type_.values]


def first_error_per_field(errors: list[FieldError]) -> list[FieldError]:
    seen: dict[tuple[str, str], FieldError] = {}
    for error in errors:
        seen.setdefault((error.location, error.field), error)
    return list(seen.values())


# graphql-core's coercion messages name GraphQL types and quote Python values; REST callers
# see JSON, so the common ones are rewritten. Anything else keeps graphql-core's wording.
_MESSAGES: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"^(String|ID) cannot represent"), "must be a string"),
    (re.compile(r"^Int cannot represent non 32-bit"), "must be an integer from -2147483648 to 2147483647"),
    (re.compile(r"^Int cannot represent"), "must be an integer"),
    (re.compile(r"^Float cannot represent"), "must be a number"),
    (re.compile(r"^Boolean cannot represent"), "must be true or false"),
    (re.compile(r"^Expected value of non-null type .* not to be None"), "must not be null"),
    (re.compile(r"^Expected value of type '\w+', but encountered error '(?P<reason>.*)'; found"), r"\g<reason>"),
)


def _clean_message(message: str) -> str:
    for pattern, replacement in _MESSAGES:
        found = pattern.match(message)
        if found:
            return found.expand(replacement)
    return message.rstrip(".")
