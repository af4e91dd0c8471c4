"""Digests: registered definitions and the events waiting for (or sent in) a batch.

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-29

"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    json = sa.JSON(none_as_null=True).with_variant(
        postgresql.JSONB(none_as_null=True), "postgresql"
    )
    big_id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
    op.create_table(
        "digests",
        sa.Column("key", sa.String(128), nullable=False),
        sa.Column("config", json, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("key", name="pk_digests"),
    )
    op.create_table(
        "digest_events",
        sa.Column("seq", big_id, autoincrement=True, nullable=False),
        sa.Column("user_id", sa.String(128), nullable=False),
        sa.Column("digest_key", sa.String(128), nullable=False),
        sa.Column("event_id", sa.String(128), nullable=False),
        sa.Column("data", json, nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("batch", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("seq", name="pk_digest_events"),
        sa.UniqueConstraint(
            "user_id",
            "digest_key",
            "event_id",
            name="uq_digest_events_user_id_digest_key_event_id",
        ),
    )
    op.create_index(
        "ix_digest_events_user_id_digest_key_batch",
        "digest_events",
        ["user_id", "digest_key", "batch"],
    )


def downgrade() -> None:
    op.drop_index("ix_digest_events_user_id_digest_key_batch", table_name="digest_events")
    op.drop_table("digest_events")
    op.drop_table("digests")
