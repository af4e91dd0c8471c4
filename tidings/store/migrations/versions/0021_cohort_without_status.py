"""`ix_notifications_cohort` without the notification's `status` again.

Migration 0020 put `status` in this covering index for the engagement rate's count on
PostgreSQL, which subtracted the part of the window's first day before its start. Windows now
start at a UTC midnight (tidings.store.segments), so the count reads whole days from
`user_sent_days` and nothing reads `status` through this index; every status change that moves
nothing else in it (`scheduled` to `sending`) would still rewrite its entry.

Revision ID: 0021
Revises: 0020
Create Date: 2026-11-30
"""

from __future__ import annotations

from alembic import op

revision: str = "0021"
down_revision: str | None = "0020"
branch_labels: str | None = None
depends_on: str | None = None

_WITHOUT = [
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
_WITH = [*_WITHOUT[:4], "status", *_WITHOUT[4:]]


def _recreate(columns: list[str]) -> None:
    op.drop_index("ix_notifications_cohort", "notifications")
    op.create_index("ix_notifications_cohort", "notifications", columns)


def upgrade() -> None:
    _recreate(_WITHOUT)


def downgrade() -> None:
    _recreate(_WITH)
