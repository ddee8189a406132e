"""API key format, hashing and checks.

A key reads ``cnx_`` + 32 base62 characters of randomness (190 bits) + 6 base62
characters of CRC-32 over the prefix and body, 42 characters in all. The
checksum lets a secret scanner tell a real ConneX key from a random string
without calling us, and lets the server reject typos before any lookup. Keys are
stored only as HMAC-SHA256 under the server's secret key.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import zlib

PREFIX = "cnx_"
BODY_LENGTH = 32
CHECKSUM_LENGTH = 6
KEY_LENGTH = len(PREFIX) + BODY_LENGTH + CHECKSUM_LENGTH
_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_ALPHABET_SET = frozenset(_ALPHABET)


def _base62(value: int, width: int) -> str:
    chars = []
    for _ in range(width):
        value, digit = divmod(value, 62)
        chars.append(_ALPHABET[digit])
    return "".join(reversed(chars))


def _checksum(prefix_and_body: str) -> str:
    return _base62(zlib.crc32(prefix_and_body.encode()), CHECKSUM_LENGTH)


def generate_key() -> str:
    body = "".join(secrets.choice(_ALPHABET) for _ in range(BODY_LENGTH))
    return PREFIX + body + _checksum(PREFIX + body)


def is_well_formed(key: str) -> bool:
    """Check prefix, length, alphabet and checksum; no lookup, no secret needed."""
    if len(key) != KEY_LENGTH or not key.startswith(PREFIX):
        return False
    rest = key[len(PREFIX) :]
    if not _ALPHABET_SET.issuperset(rest):
        return False
    body_end = len(PREFIX) + BODY_LENGTH
    return hmac.compare_digest(_checksum(key[:body_end]), key[body_end:])


def hash_key(secret_key: bytes, key: str) -> str:
    return hmac.new(secret_key, key.encode(), hashlib.sha256).hexdigest()


class SecretKey(str):
    """A freshly issued key: a plain string whose ``repr`` hides all but the prefix."""

    __slots__ = ()

    def __repr__(self) -> str:
        return f"SecretKey('{PREFIX}…')"
