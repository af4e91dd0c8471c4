"""The engagement rate's rollup: `user_sent_days` holds, per user and UTC day of creation, how
many of the user's notifications are `sent` and how many of those were opened or clicked (the
facts' `last_opened_at` set), kept by triggers on `notifications` and backfilled here.

Counting the segment rule `engagement.rate` over 30 days read every notification of the window
through (user_id, created_at, status, last_opened_at): a million index entries at the bench's
scale. The whole days of the window now come from this table, one short row per user and day;
only the window's first, partial day is read from the notifications (tidings.store.segments).

A notification contributes (1, opened) to its user's day while its status is `sent`. The
triggers apply the change of that contribution, and only when it changes: an insert as `sent`,
a status entering or leaving `sent`, the first open of a sent notification, a move to another
user or day, a delete. Every other write (a status rewritten with the same value, a second
open, a notification not sent) runs no statement.

Revision ID: 0019
Revises: 0018
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0019"
down_revision: str | None = "0018"
branch_labels: str | None = None
depends_on: str | None = None

# The UTC day of a creation time, as days since 1970-01-01 (an integer: a SQLite column
# declared DATE has NUMERIC affinity, and comparing its "YYYY-MM-DD" text converted the text to
# a number on every row read, 14% of the scan's instructions). SQLite keeps UTC timestamps as
# text; strftime reads its date part only (given the time, it rounds to the millisecond, and
# 23:59:59.9996 became the next day); on PostgreSQL, the difference of two dates is whole days.
_DAY = {
    "sqlite": "CAST(strftime('%s', substr({r}.created_at, 1, 10)) AS INTEGER) / 86400",
    "postgresql": "(CAST(({r}.created_at AT TIME ZONE 'UTC') AS DATE) - DATE '1970-01-01')",
}


def _opened(r: str) -> str:
    return f"CASE WHEN {r}.last_opened_at IS NULL THEN 0 ELSE 1 END"


def _add(day: str) -> str:
    """NEW's contribution added (a row for its day created when missing)."""
    return (
        "INSERT INTO user_sent_days (user_id, day, sent, opened)"
        f" SELECT NEW.user_id, {day.format(r='NEW')}, 1, {_opened('NEW')}"
        " WHERE NEW.status = 'sent'"
        " ON CONFLICT (user_id, day) DO UPDATE SET sent = user_sent_days.sent + 1,"
        " opened = user_sent_days.opened + excluded.opened"
    )


def _remove(day: str) -> list[str]:
    """OLD's contribution taken away, and its day's row dropped once it counts nothing (a row
    left at zero would only be read for nothing)."""
    where = f" WHERE user_id = OLD.user_id AND day = {day.format(r='OLD')}"
    return [
        f"UPDATE user_sent_days SET sent = sent - 1, opened = opened - {_opened('OLD')}{where}",
        f"DELETE FROM user_sent_days{where} AND sent = 0",
    ]


def _flip(day: str) -> str:
    """A sent notification's first open (or, never done by Tidings, an open taken away)."""
    return (
        "UPDATE user_sent_days SET opened = opened"
        " + CASE WHEN NEW.last_opened_at IS NULL THEN -1 ELSE 1 END"
        f" WHERE user_id = NEW.user_id AND day = {day.format(r='NEW')}"
    )


def _bodies(day: str) -> dict[str, list[str]]:
    return {"add": [_add(day)], "remove": _remove(day), "flip": [_flip(day)]}


# (trigger, event, body) and below, when each acts. A row sent before and after, for the same
# user and day, can only flip its open; any other update takes the contribution of a row sent
# before away and adds that of a row sent after (both, in either order, for a move to another
# user or day).
_MOVED = "UPDATE OF status, user_id, created_at"
_TRIGGERS = [
    ("insert", "INSERT", "add"),
    ("delete", "DELETE", "remove"),
    ("flip", "UPDATE OF last_opened_at", "flip"),
    ("leave", _MOVED, "remove"),
    ("enter", _MOVED, "add"),
]


def _when(day: str) -> dict[str, str]:
    same_place = (
        "OLD.status = 'sent' AND NEW.status = 'sent' AND OLD.user_id = NEW.user_id"
        f" AND {day.format(r='OLD')} = {day.format(r='NEW')}"
    )
    return {
        "insert": "NEW.status = 'sent'",
        "delete": "OLD.status = 'sent'",
        "flip": f"{same_place} AND (OLD.last_opened_at IS NULL) <> (NEW.last_opened_at IS NULL)",
        "leave": f"OLD.status = 'sent' AND NOT ({same_place})",
        "enter": f"NEW.status = 'sent' AND NOT ({same_place})",
    }


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    day = _DAY[dialect]
    op.create_table(
        "user_sent_days",
        sa.Column("user_id", sa.String(128), nullable=False),
        sa.Column("day", sa.Integer(), nullable=False),
        sa.Column("sent", sa.Integer(), nullable=False),
        sa.Column("opened", sa.Integer(), nullable=False),
        # The key carries the counts: on SQLite the table is its key's B-tree, on PostgreSQL
        # the key includes them, so a read in key order never visits the table.
        sa.PrimaryKeyConstraint(
            "user_id", "day", name="pk_user_sent_days", postgresql_include=["sent", "opened"]
        ),
        sqlite_with_rowid=False,
    )
    # Backfill before the triggers exist (they would only repeat it row by row).
    row_day = day.format(r="notifications")
    op.execute(
        "INSERT INTO user_sent_days (user_id, day, sent, opened)"
        f" SELECT user_id, {row_day}, count(*), count(last_opened_at) FROM notifications"
        f" WHERE status = 'sent' GROUP BY user_id, {row_day}"
    )
    bodies, when = _bodies(day), _when(day)
    if dialect == "postgresql":
        for body, statements in bodies.items():
            op.execute(
                f"CREATE FUNCTION tidings_sent_days_{body}() RETURNS trigger LANGUAGE plpgsql AS"
                f" $$ BEGIN {'; '.join(statements)}; RETURN NULL; END $$"
            )
    for kind, event, body in _TRIGGERS:
        name = f"tidings_sent_days_{kind}"
        if dialect == "postgresql":
            op.execute(
                f"CREATE TRIGGER {name} AFTER {event} ON notifications FOR EACH ROW"
                f" WHEN ({when[kind]}) EXECUTE FUNCTION tidings_sent_days_{body}()"
            )
        else:
            op.execute(
                f"CREATE TRIGGER {name} AFTER {event} ON notifications FOR EACH ROW"
                f" WHEN {when[kind]} BEGIN {'; '.join(bodies[body])}; END"
            )


def downgrade() -> None:
    postgresql = op.get_bind().dialect.name == "postgresql"
    for kind, _, _ in _TRIGGERS:
        on = " ON notifications" if postgresql else ""
        op.execute(f"DROP TRIGGER tidings_sent_days_{kind}{on}")
    if postgresql:
        for body in ("add", "remove", "flip"):
            op.execute(f"DROP FUNCTION tidings_sent_days_{body}()")
    op.drop_table("user_sent_days")
