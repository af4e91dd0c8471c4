"""Broadcast recipients by user and time: frequency caps count a user's recent broadcasts.

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-29

"""

from __future__ import annotations

from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_index(
        "ix_broadcast_recipients_user_id_updated_at",
        "broadcast_recipients",
        ["user_id", "updated_at"],
    )


def downgrade() -> None:
    op.drop_index("ix_broadcast_recipients_user_id_updated_at", table_name="broadcast_recipients")
