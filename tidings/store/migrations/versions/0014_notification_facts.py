"""Notification facts: each notification's delivery outcome flags and latest engagement times,
and each delivery's first engagement through its channel, kept on their rows
(tidings/store/facts.py) so analytics read no events; backfilled here.

Revision ID: 0014
Revises: 0013
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | None = None
depends_on: str | None = None

_FLAGS = {
    "any_sent": "'sent', 'delivered'",
    "any_delivered": "'delivered'",
    "any_failed": "'failed'",
    "any_suppressed": "'suppressed'",
}
_LAST = {
    "last_opened_at": "'opened', 'clicked'",
    "last_clicked_at": "'clicked'",
    "last_converted_at": "'converted'",
}
_FIRST = {
    "first_opened_at": "'opened', 'clicked'",
    "first_clicked_at": "'clicked'",
    "first_converted_at": "'converted'",
}


def upgrade() -> None:
    for name in _FLAGS:
        op.add_column(
            "notifications",
            sa.Column(name, sa.Boolean(), nullable=False, server_default=sa.false()),
        )
    for name in _LAST:
        op.add_column("notifications", sa.Column(name, sa.DateTime(timezone=True), nullable=True))
    # The same recount as tidings.store.facts.refresh_facts, in plain SQL so that this
    # migration does not change when the code does.
    flags = [
        f"{name} = EXISTS (SELECT 1 FROM deliveries d WHERE d.notification_id = notifications.id"
        f" AND d.status IN ({statuses}))"
        for name, statuses in _FLAGS.items()
    ]
    last = [
        f"{name} = (SELECT max(e.at) FROM engagement_events e"
        f" WHERE e.notification_id = notifications.id AND e.type IN ({types}))"
        for name, types in _LAST.items()
    ]
    op.execute(f"UPDATE notifications SET {', '.join(flags + last)}")
    for name in _FIRST:
        op.add_column("deliveries", sa.Column(name, sa.DateTime(timezone=True), nullable=True))
    first = [
        f"{name} = (SELECT min(e.at) FROM engagement_events e"
        " WHERE e.notification_id = deliveries.notification_id AND e.type IN"
        f" ({types}) AND (e.channel = deliveries.channel OR e.channel IS NULL))"
        for name, types in _FIRST.items()
    ]
    op.execute(f"UPDATE deliveries SET {', '.join(first)}")


def downgrade() -> None:
    with op.batch_alter_table("deliveries") as batch:
        for name in reversed(_FIRST):
            batch.drop_column(name)
    with op.batch_alter_table("notifications") as batch:
        for name in [*_LAST, *_FLAGS][::-1]:
            batch.drop_column(name)
