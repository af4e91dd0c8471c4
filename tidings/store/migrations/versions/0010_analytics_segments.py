"""Analytics and segments: indexes for the analytics query shapes, and saved segments.

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | None = None
depends_on: str | None = None

_json = sa.JSON(none_as_null=True).with_variant(postgresql.JSONB(none_as_null=True), "postgresql")
_time = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_index(
        "ix_notifications_template_id_created_at", "notifications", ["template_id", "created_at"]
    )
    op.create_index("ix_deliveries_channel_status", "deliveries", ["channel", "status"])
    op.create_index(
        "ix_engagement_events_notification_id_type_at",
        "engagement_events",
        ["notification_id", "type", "at"],
    )
    op.create_index("ix_engagement_events_at", "engagement_events", ["at"])
    op.create_table(
        "segments",
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("rules", _json, nullable=False),
        sa.Column("created_at", _time, nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_segments"),
    )


def downgrade() -> None:
    op.drop_table("segments")
    op.drop_index("ix_engagement_events_at", "engagement_events")
    op.drop_index("ix_engagement_events_notification_id_type_at", "engagement_events")
    op.drop_index("ix_deliveries_channel_status", "deliveries")
    op.drop_index("ix_notifications_template_id_created_at", "notifications")
