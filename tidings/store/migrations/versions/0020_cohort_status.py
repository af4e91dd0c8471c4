"""`ix_notifications_cohort` carries the notification's `status`.

Counting the segment rule `engagement.rate` on PostgreSQL takes the window's whole days from
`user_sent_days` (migration 0019) and subtracts the part of the first day before the window's
start, read from the notifications created in it whose status is `sent`. Without the status in
this covering index, that part (about 15,000 notifications at the bench's scale) was fetched from
the table page by page; with it, the index alone answers.

Revision ID: 0020
Revises: 0019
Create Date: 2026-11-30
"""

from __future__ import annotations

from alembic import op

revision: str = "0020"
down_revision: str | None = "0019"
branch_labels: str | None = None
depends_on: str | None = None

_BEFORE = [
    "created_at",
    "template_id",
    "template_version",
    "user_id",
    "any_sent",
    "any_delivered",
    "any_failed",
    "any_suppressed",
    "last_opened_at",
    "last_clicked_at",
    "last_converted_at",
    "id",
]
_AFTER = [*_BEFORE[:4], "status", *_BEFORE[4:]]


def _recreate(columns: list[str]) -> None:
    op.drop_index("ix_notifications_cohort", "notifications")
    op.create_index("ix_notifications_cohort", "notifications", columns)


def upgrade() -> None:
    _recreate(_AFTER)


def downgrade() -> None:
    _recreate(_BEFORE)
