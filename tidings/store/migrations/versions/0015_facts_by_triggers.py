"""Facts kept by the database: triggers maintain the notifications' and deliveries' facts
(migration 0014) incrementally, the deliveries carry their notification's creation time, each
user's latest engagement has a row of its own (`user_engagement`), and covering indexes serve
the analytics' range scans without reading the tables. Backfilled here.

Before this, every delivery or event write ran two recounting UPDATEs from the application
(about 10 of the ~52 statements of a notification); the triggers do the same work inside the
write's own statement, so the application sends nothing for it.

Revision ID: 0015
Revises: 0014
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | None = None
depends_on: str | None = None

_time = sa.DateTime(timezone=True)

# The later of two timestamps, NULL counting as "none" (SQLite's max() would return NULL, and
# SQLite has no greatest()); the same text runs on both backends. Timestamps compare correctly
# as SQLite's fixed-width UTC text.
_LATER = "CASE WHEN {a} IS NULL OR {b} > {a} THEN {b} ELSE {a} END"
_EARLIER = "CASE WHEN {a} IS NULL OR {b} < {a} THEN {b} ELSE {a} END"

_OPENED = "('opened', 'clicked')"


def _keep(column: str, types: str, pick: str) -> str:
    """`column = pick(column, NEW.at)` when the new event is of `types`, else unchanged."""
    return (
        f"{column} = CASE WHEN NEW.type IN {types}"
        f" THEN {pick.format(a=column, b='NEW.at')} ELSE {column} END"
    )


# An event: the notification's latest times, its deliveries' first times (through the event's
# channel, or every channel for an event through none) and its user's latest times. Events
# are never updated or deleted, so a new one can only move these forward (or back, for
# `first_*`): no recount.
_EVENT = [
    "UPDATE notifications SET "
    + ", ".join(
        [
            _keep("last_opened_at", _OPENED, _LATER),
            _keep("last_clicked_at", "('clicked')", _LATER),
            _keep("last_converted_at", "('converted')", _LATER),
        ]
    )
    + " WHERE id = NEW.notification_id",
    "UPDATE deliveries SET "
    + ", ".join(
        [
            _keep("first_opened_at", _OPENED, _EARLIER),
            _keep("first_clicked_at", "('clicked')", _EARLIER),
            _keep("first_converted_at", "('converted')", _EARLIER),
        ]
    )
    + " WHERE notification_id = NEW.notification_id"
    " AND (NEW.channel IS NULL OR channel = NEW.channel)",
    "INSERT INTO user_engagement (user_id, last_opened_at, last_clicked_at, last_converted_at)"
    " SELECT n.user_id,"
    f" CASE WHEN NEW.type IN {_OPENED} THEN NEW.at END,"
    " CASE WHEN NEW.type = 'clicked' THEN NEW.at END,"
    " CASE WHEN NEW.type = 'converted' THEN NEW.at END"
    " FROM notifications n WHERE n.id = NEW.notification_id"
    " ON CONFLICT (user_id) DO UPDATE SET "
    + ", ".join(
        f"{c} = " + _LATER.format(a=f"user_engagement.{c}", b=f"excluded.{c}")
        for c in ("last_opened_at", "last_clicked_at", "last_converted_at")
    ),
]
_EVENT_TYPES = "('opened', 'clicked', 'converted')"

# A delivery written (inserted, or its status changed): the notification's four flags,
# recounted over its few deliveries (a receipt can move one from sent to failed), written
# only when one changes.
_FLAGS = {
    "any_sent": "'sent', 'delivered'",
    "any_delivered": "'delivered'",
    "any_failed": "'failed'",
    "any_suppressed": "'suppressed'",
}


def _flag(statuses: str) -> str:
    return (
        "EXISTS (SELECT 1 FROM deliveries d WHERE d.notification_id = NEW.notification_id"
        f" AND d.status IN ({statuses}))"
    )


_DELIVERY_FLAGS = (
    "UPDATE notifications SET "
    + ", ".join(f"{name} = {_flag(s)}" for name, s in _FLAGS.items())
    + " WHERE id = NEW.notification_id AND ("
    + " OR ".join(f"{name} <> {_flag(s)}" for name, s in _FLAGS.items())
    + ")"
)

# A new delivery: its notification's creation time, and the first events through its channel
# (or none) already recorded (an event can arrive before the delivery's row).
_FIRST = {
    "first_opened_at": _OPENED,
    "first_clicked_at": "('clicked')",
    "first_converted_at": "('converted')",
}


def _first(types: str, channel: str) -> str:
    return (
        "(SELECT min(e.at) FROM engagement_events e WHERE e.notification_id = NEW.notification_id"
        f" AND e.type IN {types} AND (e.channel = {channel} OR e.channel IS NULL))"
    )


_CREATED = "(SELECT n.created_at FROM notifications n WHERE n.id = NEW.notification_id)"

# A notification moved to another user (never done by Tidings itself, which writes a
# notification's user once; kept exact anyway): both users' latest times, recounted.
_RECOUNT_USERS = [
    "DELETE FROM user_engagement WHERE user_id IN (OLD.user_id, NEW.user_id)",
    "INSERT INTO user_engagement (user_id, last_opened_at, last_clicked_at, last_converted_at)"
    " SELECT user_id, max(last_opened_at), max(last_clicked_at), max(last_converted_at)"
    " FROM notifications WHERE user_id IN (OLD.user_id, NEW.user_id) GROUP BY user_id"
    " HAVING max(last_opened_at) IS NOT NULL OR max(last_converted_at) IS NOT NULL",
]

_TRIGGERS = [
    "tidings_event_facts",
    "tidings_delivery_insert_facts",
    "tidings_delivery_status_facts",
    "tidings_delivery_first_facts",
    "tidings_notification_user_facts",
]


def _sqlite() -> None:
    op.execute(
        "CREATE TRIGGER tidings_event_facts AFTER INSERT ON engagement_events"
        f" FOR EACH ROW WHEN NEW.type IN {_EVENT_TYPES} BEGIN {'; '.join(_EVENT)}; END"
    )
    op.execute(
        "CREATE TRIGGER tidings_delivery_insert_facts AFTER INSERT ON deliveries"
        f" FOR EACH ROW BEGIN {_DELIVERY_FLAGS}; END"
    )
    op.execute(
        "CREATE TRIGGER tidings_delivery_status_facts AFTER UPDATE OF status ON deliveries"
        f" FOR EACH ROW WHEN OLD.status <> NEW.status BEGIN {_DELIVERY_FLAGS}; END"
    )
    first = ", ".join(f"{name} = {_first(t, 'NEW.channel')}" for name, t in _FIRST.items())
    op.execute(
        "CREATE TRIGGER tidings_delivery_first_facts AFTER INSERT ON deliveries FOR EACH ROW"
        f" BEGIN UPDATE deliveries SET created_at = {_CREATED}, {first}"
        " WHERE notification_id = NEW.notification_id AND channel = NEW.channel; END"
    )
    op.execute(
        "CREATE TRIGGER tidings_notification_user_facts AFTER UPDATE OF user_id ON notifications"
        " FOR EACH ROW WHEN OLD.user_id <> NEW.user_id"
        f" BEGIN {'; '.join(_RECOUNT_USERS)}; END"
    )


def _pg_function(name: str, body: list[str], result: str = "NULL") -> None:
    statements = "".join(f" {s};" for s in body)
    op.execute(
        f"CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS"
        f" $$ BEGIN{statements} RETURN {result}; END $$"
    )


def _postgresql() -> None:
    _pg_function("tidings_event_facts", _EVENT)
    op.execute(
        "CREATE TRIGGER tidings_event_facts AFTER INSERT ON engagement_events FOR EACH ROW"
        f" WHEN (NEW.type IN {_EVENT_TYPES}) EXECUTE FUNCTION tidings_event_facts()"
    )
    _pg_function("tidings_delivery_insert_facts", [_DELIVERY_FLAGS])
    op.execute(
        "CREATE TRIGGER tidings_delivery_insert_facts AFTER INSERT ON deliveries FOR EACH ROW"
        " EXECUTE FUNCTION tidings_delivery_insert_facts()"
    )
    op.execute(
        "CREATE TRIGGER tidings_delivery_status_facts AFTER UPDATE OF status ON deliveries"
        " FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status)"
        " EXECUTE FUNCTION tidings_delivery_insert_facts()"
    )
    # Before the row is written: the values go in with it, no second version of the row.
    fill = [f"NEW.created_at := {_CREATED}"] + [
        f"NEW.{name} := {_first(t, 'NEW.channel')}" for name, t in _FIRST.items()
    ]
    _pg_function("tidings_delivery_first_facts", fill, "NEW")
    op.execute(
        "CREATE TRIGGER tidings_delivery_first_facts BEFORE INSERT ON deliveries FOR EACH ROW"
        " EXECUTE FUNCTION tidings_delivery_first_facts()"
    )
    _pg_function("tidings_notification_user_facts", _RECOUNT_USERS)
    op.execute(
        "CREATE TRIGGER tidings_notification_user_facts AFTER UPDATE OF user_id ON notifications"
        " FOR EACH ROW WHEN (OLD.user_id IS DISTINCT FROM NEW.user_id)"
        " EXECUTE FUNCTION tidings_notification_user_facts()"
    )


# The analytics' range scans read only these columns, so the scans never touch the tables:
# a day's notifications by creation time with the metrics' filters and facts; a day's
# deliveries likewise, each notification's together (failovers compare siblings, in index
# order); an A/B arm's notifications by time.
COHORT = [
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
DELIVERY_COHORT = [
    "created_at",
    "notification_id",
    "channel",
    "status",
    "attempts",
    "at",
    "first_opened_at",
    "first_clicked_at",
    "first_converted_at",
]


def upgrade() -> None:
    op.add_column("deliveries", sa.Column("created_at", _time, nullable=True))
    op.create_table(
        "user_engagement",
        sa.Column("user_id", sa.String(128), nullable=False),
        sa.Column("last_opened_at", _time, nullable=True),
        sa.Column("last_clicked_at", _time, nullable=True),
        sa.Column("last_converted_at", _time, nullable=True),
        sa.PrimaryKeyConstraint("user_id", name="pk_user_engagement"),
    )
    # Backfill before the triggers exist (they would only repeat it row by row).
    op.execute(
        "UPDATE deliveries SET created_at = (SELECT n.created_at FROM notifications n"
        " WHERE n.id = deliveries.notification_id)"
    )
    op.execute(
        "INSERT INTO user_engagement (user_id, last_opened_at, last_clicked_at, last_converted_at)"
        " SELECT user_id, max(last_opened_at), max(last_clicked_at), max(last_converted_at)"
        " FROM notifications GROUP BY user_id"
        " HAVING max(last_opened_at) IS NOT NULL OR max(last_converted_at) IS NOT NULL"
    )
    op.drop_index("ix_notifications_created_at", "notifications")
    op.create_index("ix_notifications_cohort", "notifications", COHORT)
    op.drop_index("ix_notifications_experiment_id_variant", "notifications")
    op.create_index(
        "ix_notifications_experiment_id_variant_created_at",
        "notifications",
        ["experiment_id", "variant", "created_at"],
    )
    op.create_index("ix_deliveries_cohort", "deliveries", DELIVERY_COHORT)
    # A prefix-compatible superset of (user_id, created_at): the engagement-rate segment
    # groups a window's sent notifications per user reading the index alone.
    op.drop_index("ix_notifications_user_id_created_at", "notifications")
    op.create_index(
        "ix_notifications_user_id_created_at_status_last_opened_at",
        "notifications",
        ["user_id", "created_at", "status", "last_opened_at"],
    )
    if op.get_bind().dialect.name == "postgresql":
        _postgresql()
    else:
        _sqlite()


def downgrade() -> None:
    postgresql = op.get_bind().dialect.name == "postgresql"
    tables = {
        "tidings_event_facts": "engagement_events",
        "tidings_delivery_insert_facts": "deliveries",
        "tidings_delivery_status_facts": "deliveries",
        "tidings_delivery_first_facts": "deliveries",
        "tidings_notification_user_facts": "notifications",
    }
    for name in _TRIGGERS:
        op.execute(f"DROP TRIGGER {name}" + (f" ON {tables[name]}" if postgresql else ""))
    if postgresql:
        for name in _TRIGGERS:
            if name != "tidings_delivery_status_facts":  # shares the insert trigger's function
                op.execute(f"DROP FUNCTION {name}()")
    op.drop_index("ix_notifications_user_id_created_at_status_last_opened_at", "notifications")
    op.create_index(
        "ix_notifications_user_id_created_at", "notifications", ["user_id", "created_at"]
    )
    op.drop_index("ix_deliveries_cohort", "deliveries")
    op.drop_index("ix_notifications_experiment_id_variant_created_at", "notifications")
    op.create_index(
        "ix_notifications_experiment_id_variant", "notifications", ["experiment_id", "variant"]
    )
    op.drop_index("ix_notifications_cohort", "notifications")
    op.create_index("ix_notifications_created_at", "notifications", ["created_at"])
    op.drop_table("user_engagement")
    with op.batch_alter_table("deliveries") as batch:
        batch.drop_column("created_at")
