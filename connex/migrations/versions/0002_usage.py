"""Create the usage tables: per-key minute counters, latency histograms and rollup batches

Revision ID: 0002_usage
Revises: 0001
Create Date: 2026-12-05
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from connex.db import UTCDateTime

revision: str = "0002_usage"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _key_columns() -> list[sa.Column]:
    return [
        sa.Column(
            "api_key_id",
            sa.String(40),
            sa.ForeignKey("api_keys.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("minute", sa.Integer(), primary_key=True, autoincrement=False),
    ]


def _organization_column() -> sa.Column:
    return sa.Column(
        "organization_id",
        sa.String(40),
        sa.ForeignKey("organizations.id", ondelete="CASCADE"),
        nullable=True,
    )


def upgrade() -> None:
    op.create_table(
        "usage_counts",
        *_key_columns(),
        _organization_column(),
        sa.Column("requests", sa.Integer(), nullable=False),
        sa.Column("status_2xx", sa.Integer(), nullable=False),
        sa.Column("status_4xx", sa.Integer(), nullable=False),
        sa.Column("status_5xx", sa.Integer(), nullable=False),
        sa.Column("rate_limited", sa.Integer(), nullable=False),
    )
    op.create_index("ix_usage_counts_org_minute", "usage_counts", ["organization_id", "minute"])
    op.create_table(
        "usage_latency",
        *_key_columns(),
        sa.Column("bucket", sa.Integer(), primary_key=True, autoincrement=False),
        _organization_column(),
        sa.Column("count", sa.Integer(), nullable=False),
    )
    op.create_index("ix_usage_latency_org_minute", "usage_latency", ["organization_id", "minute"])
    op.create_table(
        "usage_rollups",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("applied_at", UTCDateTime(), nullable=False),
    )
    op.create_index("ix_usage_rollups_applied_at", "usage_rollups", ["applied_at"])


def downgrade() -> None:
    op.drop_table("usage_rollups")
    op.drop_table("usage_latency")
    op.drop_table("usage_counts")
