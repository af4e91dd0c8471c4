"""Bulks accepted durably and the recipients their fan-out has still to start.

Revision ID: 0016
Revises: 0015
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | None = None
depends_on: str | None = None

_json = sa.JSON(none_as_null=True).with_variant(postgresql.JSONB(none_as_null=True), "postgresql")
_time = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "bulks",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("template_id", sa.String(128), nullable=False),
        sa.Column("total", sa.Integer(), nullable=False),
        sa.Column("started", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("created_at", _time, nullable=False),
        sa.Column("updated_at", _time, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_bulks"),
    )
    op.create_index("ix_bulks_created_at", "bulks", ["created_at"])
    op.create_table(
        "bulk_recipients",
        sa.Column("bulk_id", sa.String(64), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("notification_id", sa.String(), nullable=False),
        sa.Column("payload", _json, nullable=False),
        sa.ForeignKeyConstraint(
            ["bulk_id"],
            ["bulks.id"],
            name="fk_bulk_recipients_bulk_id_bulks",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("bulk_id", "position", name="pk_bulk_recipients"),
    )


def downgrade() -> None:
    op.drop_table("bulk_recipients")
    op.drop_index("ix_bulks_created_at", "bulks")
    op.drop_table("bulks")
