"""A/B tests: the experiments, their enrolments, and each notification's test and arm.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | None = None
depends_on: str | None = None

_json = sa.JSON(none_as_null=True).with_variant(postgresql.JSONB(none_as_null=True), "postgresql")
_time = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("notifications") as batch:
        batch.add_column(sa.Column("experiment_id", sa.String(64), nullable=True))
        batch.add_column(sa.Column("variant", sa.String(128), nullable=True))
    op.create_index(
        "ix_notifications_experiment_id_variant", "notifications", ["experiment_id", "variant"]
    )
    op.create_table(
        "experiments",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("config", _json, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("ending", sa.String(16), nullable=True),
        sa.Column("winner", sa.String(128), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("outcome", _json, nullable=True),
        sa.Column("created_at", _time, nullable=False),
        sa.Column("finished_at", _time, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_experiments"),
    )
    op.create_table(
        "experiment_enrolments",
        sa.Column("experiment_id", sa.String(64), nullable=False),
        sa.Column("user_id", sa.String(128), nullable=False),
        sa.Column("variant", sa.String(128), nullable=False),
        sa.Column("notification_id", sa.String(), nullable=True),
        sa.Column("claim_id", sa.String(128), nullable=False),
        sa.Column("enrolled_at", _time, nullable=False),
        sa.ForeignKeyConstraint(
            ["experiment_id"],
            ["experiments.id"],
            name="fk_experiment_enrolments_experiment_id_experiments",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("experiment_id", "user_id", name="pk_experiment_enrolments"),
    )


def downgrade() -> None:
    op.drop_table("experiment_enrolments")
    op.drop_table("experiments")
    op.drop_index("ix_notifications_experiment_id_variant", "notifications")
    with op.batch_alter_table("notifications") as batch:
        batch.drop_column("variant")
        batch.drop_column("experiment_id")
