"""Template fallback order; Slack destinations on users.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None

_json = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    with op.batch_alter_table("templates") as batch:
        batch.add_column(sa.Column("fallback", _json, nullable=False, server_default="[]"))
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("slack_webhook_url", sa.Text(), nullable=True))
        batch.add_column(sa.Column("slack_user_id", sa.String(32), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.drop_column("slack_user_id")
        batch.drop_column("slack_webhook_url")
    with op.batch_alter_table("templates") as batch:
        batch.drop_column("fallback")
