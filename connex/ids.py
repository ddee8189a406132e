"""Prefixed, time-ordered identifiers such as ``proj_01J9Z3...``.

The body is a ULID: 48 bits of milliseconds since the Unix epoch and 80 random
bits in Crockford base32, so ids sort by creation time and break ties in
cursor pagination.
"""

from __future__ import annotations

import secrets
import time

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def new_id(prefix: str) -> str:
    value = (time.time_ns() // 1_000_000) << 80 | secrets.randbits(80)
    chars = []
    for _ in range(26):
        chars.append(_CROCKFORD[value & 31])
        value >>= 5
    return f"{prefix}_{''.join(reversed(chars))}"
