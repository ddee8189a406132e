"""Tests for Standard Webhooks signing, against published vectors and the reference library."""

from __future__ import annotations

import base64
import json
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from connex.webhooks.signing import (
    InvalidSecret,
    SignatureError,
    build_headers,
    decode_secret,
    generate_secret,
    sign,
    signature_header,
    verify,
)

# The vectors come from the test suite of the Standard Webhooks reference library.
VECTORS_PATH = Path(__file__).resolve().parent / "vectors" / "standard-webhooks.json"

MSG_ID = "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W"
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
OTHER_SECRET = "whsec_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
UNICODE_BODY = json.dumps({"city": "Zürich — 東京 ✓"}, ensure_ascii=False).encode("utf-8")


def load_vectors() -> dict[str, Any]:
    return json.loads(VECTORS_PATH.read_text(encoding="utf-8"))


def vector_id(vector: dict[str, Any]) -> str:
    return vector["signature"][-8:]


@pytest.mark.parametrize("vector", load_vectors()["vectors"], ids=vector_id)
def test_vector_signs_and_verifies(vector: dict[str, Any]) -> None:
    body = vector["body"].encode("utf-8")
    timestamp = vector["webhook_timestamp"]

    signature = sign(vector["secret"], vector["webhook_id"], timestamp, body)

    assert signature == vector["signature"]
    verify(vector["secret"], vector["webhook_id"], timestamp, body, signature, now=timestamp)


@pytest.mark.parametrize("vector", load_vectors()["must_reject"], ids=vector_id)
def test_vector_must_reject(vector: dict[str, Any]) -> None:
    timestamp = vector["webhook_timestamp"]

    with pytest.raises(SignatureError):
        verify(
            vector["secret"],
            vector["webhook_id"],
            timestamp,
            vector["body"].encode("utf-8"),
            vector["signature"],
            now=timestamp,
        )


def test_vector_files_are_not_empty() -> None:
    vectors = load_vectors()

    assert vectors["vectors"]
    assert vectors["must_reject"]


def test_generate_secret_format() -> None:
    secret = generate_secret()

    assert secret.startswith("whsec_")
    assert len(base64.b64decode(secret.removeprefix("whsec_"), validate=True)) == 32
    assert decode_secret(secret) == base64.b64decode(secret.removeprefix("whsec_"))
    assert generate_secret() != secret


def test_decode_secret_with_and_without_prefix() -> None:
    key = decode_secret(SECRET)

    assert key == base64.b64decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
    assert decode_secret("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw") == key


def test_decode_secret_accepts_missing_padding() -> None:
    padded = "whsec_" + base64.b64encode(b"0123456789abcdefghijkl").decode("ascii")
    assert padded.endswith("=")

    assert decode_secret(padded.rstrip("=")) == b"0123456789abcdefghijkl"


@pytest.mark.parametrize(
    "secret",
    ["whsec_", "", "whsec_not*base64!", "whsec_abcde", "whsec_Zürich", "whsec_a b c d"],
)
def test_decode_secret_rejects_invalid(secret: str) -> None:
    with pytest.raises(InvalidSecret):
        decode_secret(secret)


def test_invalid_secret_error_hides_secret() -> None:
    secret = "whsec_sup3r-s3cret-value!"

    with pytest.raises(InvalidSecret) as caught:
        sign(secret, MSG_ID, 1_700_000_000, b"{}")

    error = caught.value
    formatted = "".join(traceback.format_exception(error))
    assert "sup3r-s3cret" not in str(error)
    assert "sup3r-s3cret" not in repr(error)
    assert "sup3r-s3cret" not in formatted
    assert error.__cause__ is None
    assert error.__context__ is None


def test_signature_error_hides_secret() -> None:
    timestamp = int(time.time())
    header = sign(OTHER_SECRET, MSG_ID, timestamp, b"{}")

    with pytest.raises(SignatureError) as caught:
        verify(SECRET, MSG_ID, timestamp, b"{}", header)

    secret_text = SECRET.removeprefix("whsec_")
    assert secret_text not in str(caught.value)
    assert secret_text not in repr(caught.value)


def test_verify_accepts_own_signature() -> None:
    timestamp = int(time.time())
    header = signature_header([SECRET], MSG_ID, timestamp, UNICODE_BODY)

    verify(SECRET, MSG_ID, timestamp, UNICODE_BODY, header)


def test_verify_rejects_tampered_body() -> None:
    timestamp = int(time.time())
    header = sign(SECRET, MSG_ID, timestamp, b'{"amount": 10}')

    with pytest.raises(SignatureError):
        verify(SECRET, MSG_ID, timestamp, b'{"amount": 99}', header)


def test_verify_rejects_wrong_secret() -> None:
    timestamp = int(time.time())
    header = sign(SECRET, MSG_ID, timestamp, b"{}")

    with pytest.raises(SignatureError):
        verify(OTHER_SECRET, MSG_ID, timestamp, b"{}", header)


def test_verify_rejects_other_message_id() -> None:
    timestamp = int(time.time())
    header = sign(SECRET, MSG_ID, timestamp, b"{}")

    with pytest.raises(SignatureError):
        verify(SECRET, "msg_other", timestamp, b"{}", header)


def test_verify_rejects_stale_timestamp() -> None:
    timestamp = 1_700_000_000
    header = sign(SECRET, MSG_ID, timestamp, b"{}")

    verify(SECRET, MSG_ID, timestamp, b"{}", header, now=timestamp + 300)
    with pytest.raises(SignatureError, match="in the past"):
        verify(SECRET, MSG_ID, timestamp, b"{}", header, now=timestamp + 301)


def test_verify_rejects_future_timestamp() -> None:
    timestamp = 1_700_000_000
    header = sign(SECRET, MSG_ID, timestamp, b"{}")

    verify(SECRET, MSG_ID, timestamp, b"{}", header, now=timestamp - 300)
    with pytest.raises(SignatureError, match="in the future"):
        verify(SECRET, MSG_ID, timestamp, b"{}", header, now=timestamp - 301)


def test_verify_custom_tolerance() -> None:
    timestamp = 1_700_000_000
    header = sign(SECRET, MSG_ID, timestamp, b"{}")

    verify(SECRET, MSG_ID, timestamp, b"{}", header, now=timestamp + 60, tolerance=60)
    with pytest.raises(SignatureError):
        verify(SECRET, MSG_ID, timestamp, b"{}", header, now=timestamp + 61, tolerance=60)


def test_verify_finds_match_among_several() -> None:
    timestamp = int(time.time())
    header = signature_header([OTHER_SECRET, SECRET], MSG_ID, timestamp, b"{}")

    verify(SECRET, MSG_ID, timestamp, b"{}", header)
    verify(OTHER_SECRET, MSG_ID, timestamp, b"{}", header)
    verify(SECRET, MSG_ID, timestamp, b"{}", "v1a,unknown-scheme " + header)


@pytest.mark.parametrize("header", ["", "   ", "v1,", "v2,abc", "garbage"])
def test_verify_rejects_malformed_header(header: str) -> None:
    timestamp = int(time.time())

    with pytest.raises(SignatureError):
        verify(SECRET, MSG_ID, timestamp, b"{}", header)


def test_verify_rejects_signature_without_version() -> None:
    timestamp = int(time.time())
    signature = sign(SECRET, MSG_ID, timestamp, b"{}")

    with pytest.raises(SignatureError):
        verify(SECRET, MSG_ID, timestamp, b"{}", signature.removeprefix("v1,"))


def test_signature_header_one_entry_per_secret() -> None:
    timestamp = 1_700_000_000
    header = signature_header([SECRET, OTHER_SECRET], MSG_ID, timestamp, b"{}")

    entries = header.split(" ")
    assert entries == [
        sign(SECRET, MSG_ID, timestamp, b"{}"),
        sign(OTHER_SECRET, MSG_ID, timestamp, b"{}"),
    ]
    assert "  " not in header


def test_signature_header_rejects_no_secrets() -> None:
    with pytest.raises(ValueError):
        signature_header([], MSG_ID, 1_700_000_000, b"{}")


def test_signature_header_rejects_single_str() -> None:
    with pytest.raises(TypeError):
        signature_header(SECRET, MSG_ID, 1_700_000_000, b"{}")  # type: ignore[arg-type]


def test_build_headers_names_and_values() -> None:
    headers = build_headers([SECRET], MSG_ID, 1_700_000_000, b"{}")

    assert set(headers) == {"webhook-id", "webhook-timestamp", "webhook-signature"}
    assert headers["webhook-id"] == MSG_ID
    assert headers["webhook-timestamp"] == "1700000000"
    assert headers["webhook-signature"] == sign(SECRET, MSG_ID, 1_700_000_000, b"{}")


@pytest.mark.parametrize("msg_id", ["", "msg.1", "msg 1", "msg\n1", "msg_é"])
def test_sign_rejects_invalid_message_id(msg_id: str) -> None:
    with pytest.raises(ValueError, match="webhook-id"):
        sign(SECRET, msg_id, 1_700_000_000, b"{}")


def test_verify_rejects_invalid_message_id() -> None:
    with pytest.raises(SignatureError, match="webhook-id"):
        verify(SECRET, "msg.1", 1_700_000_000, b"{}", "v1,abc", now=1_700_000_000)


@pytest.mark.parametrize("timestamp", [True, 1.5, "1700000000"])
def test_sign_rejects_non_int_timestamp(timestamp: Any) -> None:
    with pytest.raises(TypeError):
        sign(SECRET, MSG_ID, timestamp, b"{}")


def test_sign_rejects_negative_timestamp() -> None:
    with pytest.raises(ValueError):
        sign(SECRET, MSG_ID, -1, b"{}")


def test_sign_rejects_str_body() -> None:
    with pytest.raises(TypeError):
        sign(SECRET, MSG_ID, 1_700_000_000, "{}")  # type: ignore[arg-type]


def test_sign_accepts_bytearray_body() -> None:
    signature = sign(SECRET, MSG_ID, 1_700_000_000, bytearray(b"{}"))

    assert signature == sign(SECRET, MSG_ID, 1_700_000_000, b"{}")


def test_reference_library_verifies_unicode_body() -> None:
    secret = generate_secret()
    timestamp = int(time.time())
    headers = build_headers([secret], MSG_ID, timestamp, UNICODE_BODY)

    payload = Webhook(secret).verify(UNICODE_BODY, headers)

    assert payload == {"city": "Zürich — 東京 ✓"}


def test_reference_library_verifies_rotation_header() -> None:
    old_secret = generate_secret()
    new_secret = generate_secret()
    timestamp = int(time.time())
    headers = build_headers([old_secret, new_secret], MSG_ID, timestamp, UNICODE_BODY)

    Webhook(new_secret).verify(UNICODE_BODY, headers)
    Webhook(old_secret).verify(UNICODE_BODY, headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(generate_secret()).verify(UNICODE_BODY, headers)


def test_reference_library_agrees_on_signature() -> None:
    secret = generate_secret()
    timestamp = int(time.time())
    sent_at = datetime.fromtimestamp(timestamp, tz=UTC)

    reference_signature = Webhook(secret).sign(MSG_ID, sent_at, UNICODE_BODY)

    assert sign(secret, MSG_ID, timestamp, UNICODE_BODY) == reference_signature


def test_reference_library_rejects_tampered_body() -> None:
    secret = generate_secret()
    headers = build_headers([secret], MSG_ID, int(time.time()), UNICODE_BODY)

    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(UNICODE_BODY + b" ", headers)


def test_reference_library_rejects_stale_timestamp() -> None:
    secret = generate_secret()
    timestamp = int(time.time()) - 3600
    headers = build_headers([secret], MSG_ID, timestamp, UNICODE_BODY)

    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(UNICODE_BODY, headers)
