"""Inbox items get seen and archived marks and the category they were sent in; `inbox_events`
is the per-user log the inbox stream replays (`Last-Event-ID`) and waits on.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | None = None
depends_on: str | None = None

# Spelled out, not imported from tables.py, so this migration keeps meaning what it meant.
_ts = sa.DateTime(timezone=True)
_json = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
_big_id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("inbox_items") as batch:
        batch.add_column(sa.Column("seen_at", _ts, nullable=True))
        batch.add_column(sa.Column("archived_at", _ts, nullable=True))
        batch.add_column(sa.Column("category", sa.String(128), nullable=True))
    op.create_table(
        "inbox_events",
        sa.Column("id", _big_id, primary_key=True, autoincrement=True),
        sa.Column("user_id", sa.String(128), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("payload", _json, nullable=False),
        sa.Column("created_at", _ts, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_inbox_events")),
    )
    op.create_index(op.f("ix_inbox_events_user_id_id"), "inbox_events", ["user_id", "id"])
    op.create_index(op.f("ix_inbox_events_created_at"), "inbox_events", ["created_at"])


def downgrade() -> None:
    op.drop_index(op.f("ix_inbox_events_created_at"), table_name="inbox_events")
    op.drop_index(op.f("ix_inbox_events_user_id_id"), table_name="inbox_events")
    op.drop_table("inbox_events")
    with op.batch_alter_table("inbox_items") as batch:
        batch.drop_column("category")
        batch.drop_column("archived_at")
        batch.drop_column("seen_at")
