"""Sign and verify webhook messages as the Standard Webhooks specification defines.

The signed content is ``{webhook-id}.{webhook-timestamp}.`` followed by the exact body
bytes. The HMAC-SHA256 key is the secret without its ``whsec_`` prefix, base64-decoded.
A signature is sent as ``v1,`` plus the base64 digest. The ``webhook-signature`` header
lists one signature per active secret, separated by spaces, so that during a rotation a
receiver that has either the old or the new secret accepts the message.
Specification: https://www.standardwebhooks.com

No function here puts a secret into an exception message, a repr or a log line.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time
from collections.abc import Sequence
from secrets import token_bytes

SECRET_PREFIX = "whsec_"
SIGNATURE_VERSION = "v1"
SECRET_SIZE_BYTES = 32
# Five minutes, as in the standardwebhooks 1.3.0 reference library.
DEFAULT_TOLERANCE_SECONDS = 300

HEADER_ID = "webhook-id"
HEADER_TIMESTAMP = "webhook-timestamp"
HEADER_SIGNATURE = "webhook-signature"


class InvalidSecret(ValueError):
    """A webhook secret that is not ``whsec_`` followed by non-empty standard base64."""


class SignatureError(ValueError):
    """A webhook message whose signature or timestamp does not verify."""


def generate_secret() -> str:
    """Return a new secret: ``whsec_`` and the standard base64 of 32 random bytes."""
    return SECRET_PREFIX + base64.b64encode(token_bytes(SECRET_SIZE_BYTES)).decode("ascii")


def decode_secret(secret: str) -> bytes:
    """Return the HMAC key of a secret, given with or without its ``whsec_`` prefix.

    Missing base64 padding is accepted, as the ``standardwebhooks`` 1.3.0 reference
    library accepts it. Raises InvalidSecret, whose message never contains the secret.
    """
    key = _decode_base64(secret.removeprefix(SECRET_PREFIX))
    if key is None:
        raise InvalidSecret("invalid webhook secret: expected 'whsec_' followed by standard base64")
    if not key:
        raise InvalidSecret("invalid webhook secret: the key after 'whsec_' is empty")
    return key


def _decode_base64(text: str) -> bytes | None:
    # Returns None rather than raising, so that decode_secret raises InvalidSecret outside
    # this handler and the decoder's exception is not chained to it as __context__.
    padded = text + "=" * (-len(text) % 4)
    try:
        return base64.b64decode(padded, validate=True)
    except (binascii.Error, ValueError):
        return None


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """Return the ``v1,<base64 HMAC-SHA256>`` signature of one message.

    ``body`` must be the exact bytes that are sent. Raises ValueError or TypeError for an
    invalid message id, timestamp or body, and InvalidSecret for an invalid secret.
    """
    problem = _message_id_problem(msg_id)
    if problem is not None:
        raise ValueError(problem)
    _validate_timestamp(timestamp)
    _validate_body(body)

    key = decode_secret(secret)
    content = f"{msg_id}.{timestamp}.".encode("ascii") + bytes(body)
    digest = hmac.new(key, content, hashlib.sha256).digest()
    return f"{SIGNATURE_VERSION},{base64.b64encode(digest).decode('ascii')}"


def signature_header(secrets: Sequence[str], msg_id: str, timestamp: int, body: bytes) -> str:
    """Return the ``webhook-signature`` value: one signature per secret, separated by spaces.

    Pass both the old and the new secret while a secret is being rotated.
    """
    if isinstance(secrets, str):
        raise TypeError("secrets must be a sequence of secrets, not a single str")
    if not secrets:
        raise ValueError("at least one webhook secret is required to sign a message")
    return " ".join(sign(secret, msg_id, timestamp, body) for secret in secrets)


def build_headers(
    secrets: Sequence[str], msg_id: str, timestamp: int, body: bytes
) -> dict[str, str]:
    """Return the ``webhook-id``, ``webhook-timestamp`` and ``webhook-signature`` headers."""
    return {
        HEADER_ID: msg_id,
        HEADER_TIMESTAMP: str(timestamp),
        HEADER_SIGNATURE: signature_header(secrets, msg_id, timestamp, body),
    }


def verify(
    secret: str,
    msg_id: str,
    timestamp: int,
    body: bytes,
    header: str,
    *,
    now: float | None = None,
    tolerance: int = DEFAULT_TOLERANCE_SECONDS,
) -> None:
    """Raise SignatureError unless ``header`` contains a valid signature of the message.

    ``header`` is the ``webhook-signature`` value, space-separated ``v1,...`` entries of
    which one must match. The timestamp must lie within ``tolerance`` seconds of ``now``
    (default: the current time) in either direction, which bounds replays. Each entry is
    compared with hmac.compare_digest, so the time taken does not show how much matched.
    """
    problem = _message_id_problem(msg_id)
    if problem is not None:
        raise SignatureError(problem)
    _validate_timestamp(timestamp)
    _check_freshness(timestamp, time.time() if now is None else now, tolerance)

    expected = sign(secret, msg_id, timestamp, body).encode("ascii")
    candidates = header.split()
    if not candidates:
        raise SignatureError("webhook-signature header is empty")

    matched = False
    for candidate in candidates:
        if hmac.compare_digest(expected, candidate.encode("utf-8")):
            matched = True
    if not matched:
        raise SignatureError("no signature in the webhook-signature header matches")


def _check_freshness(timestamp: int, now: float, tolerance: int) -> None:
    if tolerance < 0:
        raise ValueError(f"tolerance must be 0 or more seconds, got {tolerance}")
    if timestamp < now - tolerance:
        raise SignatureError(
            f"webhook-timestamp {timestamp} is more than {tolerance} s in the past"
        )
    if timestamp > now + tolerance:
        raise SignatureError(
            f"webhook-timestamp {timestamp} is more than {tolerance} s in the future"
        )


def _message_id_problem(msg_id: str) -> str | None:
    # A "." inside the id would make the signed content ambiguous: the id "a.1" with
    # timestamp 2 and body "x" signs the same bytes as the id "a" with timestamp 1 and
    # body "2.x". Spaces and control characters cannot be sent in a header value.
    if not isinstance(msg_id, str):
        return f"webhook-id must be a str, got {type(msg_id).__name__}"
    if not msg_id:
        return "webhook-id is empty"
    if not (msg_id.isascii() and msg_id.isprintable()) or " " in msg_id or "." in msg_id:
        return f"webhook-id {msg_id!r} must be printable ASCII without spaces or dots"
    return None


def _validate_timestamp(timestamp: int) -> None:
    if isinstance(timestamp, bool) or not isinstance(timestamp, int):
        raise TypeError(
            f"webhook-timestamp must be an int of Unix seconds, got {type(timestamp).__name__}"
        )
    if timestamp < 0:
        raise ValueError(f"webhook-timestamp must not be negative, got {timestamp}")


def _validate_body(body: bytes) -> None:
    # A str is rejected rather than encoded here, because the signature must cover the
    # exact bytes on the wire and only the caller knows how the body was encoded.
    if not isinstance(body, (bytes, bytearray)):
        raise TypeError(f"body must be bytes, got {type(body).__name__}")
