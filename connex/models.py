"""The SQLModel tables. Alembic migrations under connex/migrations create them."""

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import Column, ForeignKey, Index, Integer, String
from sqlalchemy import Enum as SAEnum
from sqlmodel import Field, SQLModel

from connex.db import JSONType, UTCDateTime, utcnow


class ProjectStatus(enum.StrEnum):
    ACTIVE = "active"
    ARCHIVED = "archived"


def _enum_values(enum_class: type[enum.Enum]) -> list[str]:
    return [member.value for member in enum_class]


class Organization(SQLModel, table=True):
    __tablename__ = "organizations"

    id: str = Field(primary_key=True, max_length=40)
    slug: str = Field(max_length=63, unique=True)
    name: str = Field(max_length=200)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)


class ApiKey(SQLModel, table=True):
    __tablename__ = "api_keys"

    id: str = Field(primary_key=True, max_length=40)
    # NULL for a platform admin key.
    organization_id: str | None = Field(
        default=None,
        sa_column=Column(String(40), ForeignKey("organizations.id", ondelete="CASCADE"), index=True),
    )
    name: str = Field(max_length=200)
    # HMAC-SHA256 of the whole key under CONNEX_SECRET_KEY, hex; the key itself is never stored.
    key_hash: str = Field(max_length=64, unique=True)
    # The last four characters of the key, shown in listings so people can tell keys apart.
    last4: str = Field(max_length=4)
    scopes: list[str] = Field(default_factory=list, sa_type=JSONType, nullable=False)
    rate_limit_per_minute: int | None = Field(default=None)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
    expires_at: datetime | None = Field(default=None, sa_type=UTCDateTime, nullable=True)
    revoked_at: datetime | None = Field(default=None, sa_type=UTCDateTime, nullable=True)
    last_used_at: datetime | None = Field(default=None, sa_type=UTCDateTime, nullable=True)
    # The key this one replaced through rotation.
    rotated_from_id: str | None = Field(default=None, max_length=40)


class Project(SQLModel, table=True):
    __tablename__ = "projects"
    __table_args__ = (
        Index("ix_projects_org_status_updated", "organization_id", "status", "updated_at", "id"),
    )

    id: str = Field(primary_key=True, max_length=40)
    organization_id: str = Field(
        sa_column=Column(String(40), ForeignKey("organizations.id", ondelete="CASCADE"), nullable=False)
    )
    name: str = Field(max_length=200)
    description: str | None = Field(default=None, max_length=2000)
    status: ProjectStatus = Field(
        default=ProjectStatus.ACTIVE, sa_column=Column(
            SAEnum(ProjectStatus, native_enum=False, length=16, values_callable=_enum_values),
            nullable=False,
        ),
    )
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)


class Event(SQLModel, table=True):
    __tablename__ = "events"
    __table_args__ = (Index("ix_events_org_created", "organization_id", "created_at", "id"),)

    id: str = Field(primary_key=True, max_length=40)
    organization_id: str = Field(
        sa_column=Column(String(40), ForeignKey("organizations.id", ondelete="CASCADE"), nullable=False)
    )
    type: str = Field(max_length=64)
    data: dict[str, Any] = Field(default_factory=dict, sa_type=JSONType, nullable=False)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)


class DeliveryStatus(enum.StrEnum):
    PENDING = "pending"
    SUCCEEDED = "succeeded"
    # The dead-letter state: every scheduled attempt failed. Kept until replayed.
    FAILED = "failed"


class AttemptStatus(enum.StrEnum):
    # Written before the request is sent, so a worker killed mid-request leaves a trace.
    IN_PROGRESS = "in_progress"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    # The worker stopped before recording the outcome; the receiver may have got the request.
    INTERRUPTED = "interrupted"


def _status_column(enum_class: type[enum.Enum]) -> Column:
    return Column(
        SAEnum(enum_class, native_enum=False, length=16, values_callable=_enum_values), nullable=False
    )


class WebhookEndpoint(SQLModel, table=True):
    __tablename__ = "webhook_endpoints"
    __table_args__ = (Index("ix_webhook_endpoints_org_created", "organization_id", "created_at", "id"),)

    id: str = Field(primary_key=True, max_length=40)
    organization_id: str = Field(
        sa_column=Column(String(40), ForeignKey("organizations.id", ondelete="CASCADE"), nullable=False)
    )
    url: str = Field(max_length=2048, repr=False)
    description: str | None = Field(default=None, max_length=500)
    # Exact event type names, or ["*"] for every type.
    event_types: list[str] = Field(default_factory=list, sa_type=JSONType, nullable=False)
    # The REST version whose representation the payloads use: "v1" or "v2".
    api_version: str = Field(max_length=8)
    enabled: bool = Field(default=True)
    # Signing secrets, "whsec_" + base64. Stored as given, because signing needs them.
    # NOTE: not encrypted at rest, so a reader of this table can sign webhooks.
    secret: str = Field(max_length=128, repr=False)
    previous_secret: str | None = Field(default=None, max_length=128, repr=False)
    previous_secret_expires_at: datetime | None = Field(default=None, sa_type=UTCDateTime, nullable=True)
    # Start of the current run of failed attempts; None after a success.
    failing_since: datetime | None = Field(default=None, sa_type=UTCDateTime, nullable=True)
    disabled_reason: str | None = Field(default=None, max_length=500)
    disabled_at: datetime | None = Field(default=None, sa_type=UTCDateTime, nullable=True)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)


class WebhookDelivery(SQLModel, table=True):
    """One event for one endpoint. Its id is the ``webhook-id`` of every attempt and replay."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        Index("ix_webhook_deliveries_endpoint_created", "endpoint_id", "created_at", "id"),
        Index("ix_webhook_deliveries_status_next", "status", "next_attempt_at"),
    )

    id: str = Field(primary_key=True, max_length=40)
    endpoint_id: str = Field(
        sa_column=Column(String(40), ForeignKey("webhook_endpoints.id", ondelete="CASCADE"), nullable=False)
    )
    event_id: str = Field(
        sa_column=Column(String(40), ForeignKey("events.id", ondelete="CASCADE"), nullable=False)
    )
    event_type: str = Field(max_length=64)
    # Copied from the endpoint at creation, so every attempt sends the same bytes.
    api_version: str = Field(max_length=8)
    status: DeliveryStatus = Field(default=DeliveryStatus.PENDING, sa_column=_status_column(DeliveryStatus))
    attempt_count: int = Field(default=0)
    # Attempts since the delivery was created or last replayed; indexes the retry schedule.
    round_attempts: int = Field(default=0)
    next_attempt_at: datetime | None = Field(default=None, sa_type=UTCDateTime, nullable=True)
    # When the last queue message sent for this delivery becomes due; the sweep re-sends
    # the delivery when this is older than the grace period. None: no message was sent.
    message_due_at: datetime | None = Field(default=None, sa_type=UTCDateTime, nullable=True)
    # The lease of the worker sending an attempt: no other worker claims it before then.
    locked_until: datetime | None = Field(default=None, sa_type=UTCDateTime, nullable=True)
    lock_token: str | None = Field(default=None, max_length=32)
    last_attempt_at: datetime | None = Field(default=None, sa_type=UTCDateTime, nullable=True)
    last_status_code: int | None = Field(default=None)
    completed_at: datetime | None = Field(default=None, sa_type=UTCDateTime, nullable=True)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)


class WebhookAttempt(SQLModel, table=True):
    __tablename__ = "webhook_attempts"
    __table_args__ = (Index("ix_webhook_attempts_delivery_started", "delivery_id", "started_at", "id"),)

    id: str = Field(primary_key=True, max_length=40)
    delivery_id: str = Field(
        sa_column=Column(String(40), ForeignKey("webhook_deliveries.id", ondelete="CASCADE"), nullable=False)
    )
    # Denormalised from the delivery so that an endpoint's attempts list without a join.
    endpoint_id: str = Field(max_length=40, index=True)
    number: int
    status: AttemptStatus = Field(default=AttemptStatus.IN_PROGRESS, sa_column=_status_column(AttemptStatus))
    started_at: datetime = Field(sa_type=UTCDateTime, nullable=False)
    duration_ms: int | None = Field(default=None)
    status_code: int | None = Field(default=None)
    # A network error, timeout or SSRF rejection, in words; None when a response came.
    error: str | None = Field(default=None, max_length=1000)
    # The first 4 KiB of the response body, decoded as UTF-8 with replacement characters.
    response_body: str | None = Field(default=None)
    # The headers sent, with each signature replaced by a placeholder.
    request_headers: dict[str, Any] = Field(default_factory=dict, sa_type=JSONType, nullable=False)


class UsageCount(SQLModel, table=True):
    """Requests of one API key that started in one minute, by status class."""

    __tablename__ = "usage_counts"
    __table_args__ = (Index("ix_usage_counts_org_minute", "organization_id", "minute"),)

    api_key_id: str = Field(
        sa_column=Column(String(40), ForeignKey("api_keys.id", ondelete="CASCADE"), primary_key=True)
    )
    # Minutes since the Unix epoch, UTC. Integer minutes group into hours and days with
    # integer division on both SQLite and PostgreSQL.
    minute: int = Field(sa_column=Column(Integer, primary_key=True, autoincrement=False))
    # The key's organization, copied so an organization's usage needs no join. NULL for
    # a platform admin key.
    organization_id: str | None = Field(
        default=None, sa_column=Column(String(40), ForeignKey("organizations.id", ondelete="CASCADE"))
    )
    requests: int = Field(default=0, nullable=False)
    status_2xx: int = Field(default=0, nullable=False)
    status_4xx: int = Field(default=0, nullable=False)
    status_5xx: int = Field(default=0, nullable=False)
    # Requests rejected with 429; they are also counted in status_4xx.
    rate_limited: int = Field(default=0, nullable=False)


class UsageLatency(SQLModel, table=True):
    """How many requests of one API key in one minute fell into one latency bucket.

    Buckets are log-spaced (connex.usage.histogram), so rows of any minutes and
    processes add up into one histogram.
    """

    __tablename__ = "usage_latency"
    __table_args__ = (Index("ix_usage_latency_org_minute", "organization_id", "minute"),)

    api_key_id: str = Field(
        sa_column=Column(String(40), ForeignKey("api_keys.id", ondelete="CASCADE"), primary_key=True)
    )
    minute: int = Field(sa_column=Column(Integer, primary_key=True, autoincrement=False))
    bucket: int = Field(sa_column=Column(Integer, primary_key=True, autoincrement=False))
    organization_id: str | None = Field(
        default=None, sa_column=Column(String(40), ForeignKey("organizations.id", ondelete="CASCADE"))
    )
    count: int = Field(default=0, nullable=False)


class UsageRollup(SQLModel, table=True):
    """A batch of usage counters moved from Redis into the tables above.

    The batch id is written in the same transaction as the counters, so a batch that
    is rolled up twice (after a crash before Redis forgot it) is added only once.
    """

    __tablename__ = "usage_rollups"

    id: str = Field(primary_key=True, max_length=40)
    applied_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False, index=True)
