"""Initial schema: users, devices, preferences, templates, notifications, deliveries,
engagement events, the send ledger and the in-app inbox.

Revision ID: 0001
Revises:
Create Date: 2025-01-01

Types are spelled out here rather than imported from tables.py, so that this migration keeps
meaning what it meant when later revisions change the models.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None

_ts = sa.DateTime(timezone=True)
_json = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
_big_id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("id", sa.String(128), nullable=False),
        sa.Column("email", sa.String(320), nullable=True),
        sa.Column("phone", sa.String(32), nullable=True),
        sa.Column("timezone", sa.String(64), nullable=False),
        sa.Column("locale", sa.String(35), nullable=False),
        sa.Column("webhook_url", sa.Text(), nullable=True),
        sa.Column("attributes", _json, nullable=False),
        sa.Column("created_at", _ts, nullable=False),
        sa.Column("updated_at", _ts, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_users"),
    )
    op.create_table(
        "devices",
        sa.Column("platform", sa.String(16), nullable=False),
        sa.Column("token_sha256", sa.String(64), nullable=False),
        sa.Column("token", sa.Text(), nullable=False),
        sa.Column("user_id", sa.String(128), nullable=False),
        sa.Column("label", sa.String(200), nullable=True),
        sa.Column("created_at", _ts, nullable=False),
        sa.Column("updated_at", _ts, nullable=False),
        sa.PrimaryKeyConstraint("platform", "token_sha256", name="pk_devices"),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name="fk_devices_user_id_users", ondelete="CASCADE"
        ),
    )
    op.create_index("ix_devices_user_id", "devices", ["user_id"])
    op.create_table(
        "preferences",
        sa.Column("user_id", sa.String(128), nullable=False),
        sa.Column("channels", _json, nullable=False),
        sa.Column("categories", _json, nullable=False),
        sa.Column("templates", _json, nullable=False),
        sa.Column("quiet_hours", _json, nullable=True),
        sa.Column("updated_at", _ts, nullable=False),
        sa.PrimaryKeyConstraint("user_id", name="pk_preferences"),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name="fk_preferences_user_id_users", ondelete="CASCADE"
        ),
    )
    op.create_table(
        "templates",
        sa.Column("id", sa.String(128), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("category", sa.String(128), nullable=False),
        sa.Column("channels", _json, nullable=False),
        sa.Column("default_priority", sa.String(16), nullable=False),
        sa.Column("content", _json, nullable=False),
        sa.Column("locales", _json, nullable=False),
        sa.Column("sample_data", _json, nullable=False),
        sa.Column("created_at", _ts, nullable=False),
        sa.PrimaryKeyConstraint("id", "version", name="pk_templates"),
    )
    op.create_table(
        "notifications",
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("user_id", sa.String(128), nullable=False),
        sa.Column("template_id", sa.String(128), nullable=False),
        sa.Column("template_version", sa.Integer(), nullable=False),
        sa.Column("priority", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("send_at", _ts, nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("created_at", _ts, nullable=False),
        sa.Column("updated_at", _ts, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_notifications"),
    )
    op.create_index(
        "ix_notifications_user_id_created_at", "notifications", ["user_id", "created_at"]
    )
    op.create_index("ix_notifications_created_at", "notifications", ["created_at"])
    op.create_table(
        "deliveries",
        sa.Column("notification_id", sa.String(), nullable=False),
        sa.Column("channel", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("target", sa.Text(), nullable=True),
        sa.Column("provider_message_id", sa.Text(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("at", _ts, nullable=True),
        sa.Column("updated_at", _ts, nullable=False),
        sa.PrimaryKeyConstraint("notification_id", "channel", name="pk_deliveries"),
        sa.ForeignKeyConstraint(
            ["notification_id"],
            ["notifications.id"],
            name="fk_deliveries_notification_id_notifications",
            ondelete="CASCADE",
        ),
    )
    op.create_table(
        "engagement_events",
        sa.Column("id", _big_id, autoincrement=True, nullable=False),
        sa.Column("notification_id", sa.String(), nullable=False),
        sa.Column("type", sa.String(16), nullable=False),
        sa.Column("channel", sa.String(16), nullable=True),
        sa.Column("at", _ts, nullable=False),
        sa.Column("metadata", _json, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_engagement_events"),
        sa.ForeignKeyConstraint(
            ["notification_id"],
            ["notifications.id"],
            name="fk_engagement_events_notification_id_notifications",
            ondelete="CASCADE",
        ),
        sa.UniqueConstraint(
            "notification_id", "type", "at", name="uq_engagement_events_notification_id_type_at"
        ),
    )
    op.create_table(
        "send_ledger",
        sa.Column("key", sa.String(), nullable=False),
        sa.Column("notification_id", sa.String(), nullable=False),
        sa.Column("channel", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("target", sa.Text(), nullable=False),
        sa.Column("provider_message_id", sa.Text(), nullable=True),
        sa.Column("sent_at", _ts, nullable=False),
        sa.PrimaryKeyConstraint("key", name="pk_send_ledger"),
    )
    op.create_index("ix_send_ledger_notification_id", "send_ledger", ["notification_id"])
    op.create_table(
        "inbox_items",
        sa.Column("id", _big_id, autoincrement=True, nullable=False),
        sa.Column("user_id", sa.String(128), nullable=False),
        sa.Column("notification_id", sa.String(), nullable=False),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("created_at", _ts, nullable=False),
        sa.Column("read_at", _ts, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_inbox_items"),
        sa.UniqueConstraint("notification_id", name="uq_inbox_items_notification_id"),
    )
    op.create_index("ix_inbox_items_user_id_id", "inbox_items", ["user_id", "id"])


def downgrade() -> None:
    op.drop_table("inbox_items")
    op.drop_table("send_ledger")
    op.drop_table("engagement_events")
    op.drop_table("deliveries")
    op.drop_table("notifications")
    op.drop_table("templates")
    op.drop_table("preferences")
    op.drop_table("devices")
    op.drop_table("users")
