"""GraphQL camelCase names to REST snake_case names and back."""

from __future__ import annotations

import re
from functools import lru_cache

_BOUNDARY = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")


@lru_cache(maxsize=1024)
def snake(name: str) -> str:
    return _BOUNDARY.sub("_", name).lower()
