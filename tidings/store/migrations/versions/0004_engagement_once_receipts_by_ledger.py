"""Engagement counts once; receipts find their send through the ledger.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29

An engagement event is now the same event when its notification and `dedupe_key` match (the
caller's event id, else type and channel). Rows recorded before this revision that repeat an
earlier one by that rule are repeats of one event, so they are removed, keeping the first.

Receipts are matched to sends by the provider's message id, which the ledger holds from the
moment the provider accepted the message; the index makes that lookup cheap.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    with op.batch_alter_table("engagement_events") as batch:
        batch.add_column(sa.Column("dedupe_key", sa.String(160), nullable=True))
    op.execute("UPDATE engagement_events SET dedupe_key = type || ':' || COALESCE(channel, '-')")
    op.execute(
        "DELETE FROM engagement_events WHERE id NOT IN ("
        " SELECT MIN(id) FROM engagement_events GROUP BY notification_id, dedupe_key)"
    )
    with op.batch_alter_table("engagement_events") as batch:
        batch.alter_column("dedupe_key", existing_type=sa.String(160), nullable=False)
        batch.drop_constraint("uq_engagement_events_notification_id_type_at", type_="unique")
        batch.create_unique_constraint(
            "uq_engagement_events_notification_id_dedupe_key", ["notification_id", "dedupe_key"]
        )
    op.create_index(
        "ix_send_ledger_channel_provider_message_id",
        "send_ledger",
        ["channel", "provider_message_id"],
    )


def downgrade() -> None:
    op.drop_index("ix_send_ledger_channel_provider_message_id", "send_ledger")
    with op.batch_alter_table("engagement_events") as batch:
        batch.drop_constraint("uq_engagement_events_notification_id_dedupe_key", type_="unique")
        batch.create_unique_constraint(
            "uq_engagement_events_notification_id_type_at", ["notification_id", "type", "at"]
        )
        batch.drop_column("dedupe_key")
