"""Conversions kept by the database: `conversions` holds, per notification, channel (`""` for
an event through none) and currency (`""` without one), the sum of the `value` of its
`converted` events, kept by a trigger on events and backfilled here.

Before this, every metrics query fetched the period's converted notifications' events from the
table for their JSON `metadata` (about 8,500 a day at the bench's scale); now it reads one short
row per converted notification and currency, through this table's key.

Revision ID: 0017
Revises: 0016
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | None = None
depends_on: str | None = None

# `value` as a float when it is a JSON number and `currency` when it is a JSON string, else
# NULL / "": the same tests as tidings.store.portable.json_number / json_string, so the sums
# equal what the analytics computed from the events before.
_JSON = {
    "sqlite": (
        "CASE WHEN json_type({m}, '$.\"value\"') IN ('integer', 'real')"
        " THEN json_extract({m}, '$.\"value\"') END",
        "CASE WHEN json_type({m}, '$.\"currency\"') = 'text'"
        " THEN json_extract({m}, '$.\"currency\"') ELSE '' END",
    ),
    "postgresql": (
        "CASE WHEN jsonb_typeof({m} -> 'value') = 'number'"
        " THEN CAST({m} ->> 'value' AS DOUBLE PRECISION) END",
        "CASE WHEN jsonb_typeof({m} -> 'currency') = 'string' THEN {m} ->> 'currency' ELSE '' END",
    ),
}

# A sum that stays NULL while every value is NULL (a conversion without a value), as sum() does.
_ADD = (
    "value = CASE WHEN excluded.value IS NULL THEN conversions.value"
    " WHEN conversions.value IS NULL THEN excluded.value"
    " ELSE conversions.value + excluded.value END"
)


def _upsert(dialect: str) -> str:
    value, currency = (s.format(m="NEW.metadata") for s in _JSON[dialect])
    return (
        "INSERT INTO conversions (notification_id, channel, currency, value)"
        f" VALUES (NEW.notification_id, COALESCE(NEW.channel, ''), {currency}, {value})"
        f" ON CONFLICT (notification_id, channel, currency) DO UPDATE SET {_ADD}"
    )


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    op.create_table(
        "conversions",
        sa.Column(
            "notification_id",
            sa.String(),
            sa.ForeignKey("notifications.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("channel", sa.String(16), nullable=False),
        sa.Column("currency", sa.String(16), nullable=False),
        sa.Column("value", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("notification_id", "channel", "currency", name="pk_conversions"),
        # On SQLite the table is its key's B-tree: a lookup by notification reads the value
        # next to the key, no second read.
        sqlite_with_rowid=False,
    )
    value, currency = (s.format(m="metadata") for s in _JSON[dialect])
    # Backfill before the trigger exists (it would only repeat it row by row).
    op.execute(
        "INSERT INTO conversions (notification_id, channel, currency, value)"
        f" SELECT notification_id, COALESCE(channel, ''), {currency}, sum({value})"
        " FROM engagement_events WHERE type = 'converted'"
        f" GROUP BY notification_id, COALESCE(channel, ''), {currency}"
    )
    if dialect == "postgresql":
        op.execute(
            "CREATE FUNCTION tidings_conversion_facts() RETURNS trigger LANGUAGE plpgsql AS"
            f" $$ BEGIN {_upsert(dialect)}; RETURN NULL; END $$"
        )
        op.execute(
            "CREATE TRIGGER tidings_conversion_facts AFTER INSERT ON engagement_events"
            " FOR EACH ROW WHEN (NEW.type = 'converted')"
            " EXECUTE FUNCTION tidings_conversion_facts()"
        )
    else:
        op.execute(
            "CREATE TRIGGER tidings_conversion_facts AFTER INSERT ON engagement_events"
            f" FOR EACH ROW WHEN NEW.type = 'converted' BEGIN {_upsert(dialect)}; END"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER tidings_conversion_facts ON engagement_events")
        op.execute("DROP FUNCTION tidings_conversion_facts()")
    else:
        op.execute("DROP TRIGGER tidings_conversion_facts")
    op.drop_table("conversions")
