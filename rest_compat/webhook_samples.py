"""Sample webhook objects for the examples of the OpenAPI documents.

Fixed values, so that a document is the same on every build. The secret is a made-up
example value, shown where the create and rotate responses carry the real one.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from connex.models import (
    AttemptStatus,
    DeliveryStatus,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
)
from connex.webhooks.endpoints import EndpointWithSecret
from schema.webhooks import WebhookRecovery

_CREATED = datetime(2026, 10, 6, 8, 15, tzinfo=UTC)
_SENT = datetime(2026, 11, 12, 16, 45, 11, tzinfo=UTC)

SAMPLE_WEBHOOK_ENDPOINT = WebhookEndpoint(
    id="we_01JDX2K7N4Q8T1RZ5B3M6C9VWA",
    organization_id="org_01JB7Q4X9M2K8T5R3N6C1VZD0E",
    url="https://crm.example.com/webhooks/connex",
    description="CRM sync",
    event_types=["project.created", "project.archived"],
    api_version="v2",
    enabled=True,
    secret="whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    created_at=_CREATED,
    updated_at=_CREATED,
)
SAMPLE_WEBHOOK_DELIVERY = WebhookDelivery(
    id="msg_01JDW8M4A2C5E7G9J1K3M5P7RT",
    endpoint_id=SAMPLE_WEBHOOK_ENDPOINT.id,
    event_id="evt_01JCJ5T8W2N7Q4X9K3M6R1BVZA",
    event_type="project.updated",
    api_version="v2",
    status=DeliveryStatus.SUCCEEDED,
    attempt_count=1,
    round_attempts=1,
    last_attempt_at=_SENT,
    last_status_code=200,
    completed_at=_SENT,
    created_at=_SENT,
)
SAMPLE_WEBHOOK_ATTEMPT = WebhookAttempt(
    id="att_01JDW8M4B6D8F0H2K4M6P8R0TV",
    delivery_id=SAMPLE_WEBHOOK_DELIVERY.id,
    endpoint_id=SAMPLE_WEBHOOK_ENDPOINT.id,
    number=1,
    status=AttemptStatus.SUCCEEDED,
    started_at=_SENT,
    duration_ms=84,
    status_code=200,
    response_body='{"received": true}',
    request_headers={
        "content-type": "application/json",
        "webhook-id": SAMPLE_WEBHOOK_DELIVERY.id,
        "webhook-timestamp": str(int(_SENT.timestamp())),
        "webhook-signature": "v1,<redacted>",
    },
)

WEBHOOK_SAMPLES: dict[str, Any] = {
    "WebhookEndpoint": SAMPLE_WEBHOOK_ENDPOINT,
    "WebhookEndpointWithSecret": EndpointWithSecret(SAMPLE_WEBHOOK_ENDPOINT, SAMPLE_WEBHOOK_ENDPOINT.secret),
    "WebhookDelivery": SAMPLE_WEBHOOK_DELIVERY,
    "WebhookAttempt": SAMPLE_WEBHOOK_ATTEMPT,
    "WebhookRecovery": WebhookRecovery(
        endpoint_id=SAMPLE_WEBHOOK_ENDPOINT.id,  # type: ignore[arg-type]
        since=datetime(2026, 11, 1, tzinfo=UTC),
        until=None,
        delivery_count=1,
        delivery_ids=[SAMPLE_WEBHOOK_DELIVERY.id],  # type: ignore[list-item]
    ),
}

WEBHOOK_INPUT_EXAMPLES: dict[str, dict[str, Any]] = {
    "RotateWebhookEndpointSecretInput": {"overlap_seconds": 3600},
}
