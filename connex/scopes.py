"""The scopes an API key can hold."""

from __future__ import annotations

import enum
from collections.abc import Iterable


class Scope(enum.StrEnum):
    PROJECTS_READ = "projects:read"
    PROJECTS_WRITE = "projects:write"
    EVENTS_READ = "events:read"
    WEBHOOKS_READ = "webhooks:read"
    WEBHOOKS_WRITE = "webhooks:write"
    USAGE_READ = "usage:read"
    # Manage the API keys of the key's own organization.
    KEYS_WRITE = "keys:write"
    # Platform-wide: every operation on every organization.
    ADMIN = "admin"


# A write scope lets its holder read the same resource.
IMPLIED: dict[Scope, frozenset[Scope]] = {
    Scope.PROJECTS_WRITE: frozenset({Scope.PROJECTS_READ}),
    Scope.WEBHOOKS_WRITE: frozenset({Scope.WEBHOOKS_READ}),
}


def parse_scopes(values: Iterable[str]) -> frozenset[Scope]:
    """Convert scope strings; raise ValueError naming the first unknown one."""
    scopes = set()
    for value in values:
        try:
            scopes.add(Scope(value))
        except ValueError:
            known = ", ".join(scope.value for scope in Scope)
            raise ValueError(f"unknown scope {value!r}; known scopes: {known}") from None
    return frozenset(scopes)


def grants(held: frozenset[Scope], needed: Scope) -> bool:
    if Scope.ADMIN in held or needed in held:
        return True
    return any(needed in IMPLIED.get(scope, ()) for scope in held)
