"""The database tables, one declarative class each.

Enums are stored as their string values and dict fields as JSON (JSONB on PostgreSQL). Every
timestamp goes through `UTCDateTime`, so what comes back is always an aware UTC datetime whatever
the backend. The schema itself is created by the Alembic migrations beside this module; a test
checks that the two agree.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Text,
    UniqueConstraint,
    false,
    true,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

# Explicit constraint names keep migrations reproducible across backends.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# SQLite makes only an INTEGER PRIMARY KEY an auto-incrementing rowid alias.
BigId = BigInteger().with_variant(Integer(), "sqlite")
JSONValue = JSON(none_as_null=True).with_variant(JSONB(none_as_null=True), "postgresql")


class UTCDateTime(TypeDecorator[datetime]):
    """Aware datetimes in, aware UTC datetimes out. SQLite keeps no offset, so values are
    converted to UTC before they are written and tagged as UTC when they are read."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(
                f"naive datetime {value.isoformat()}: timestamps must be timezone-aware"
            )
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class UserRow(Base):
    __tablename__ = "users"

    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    email: Mapped[str | None] = mapped_column(String(320))
    phone: Mapped[str | None] = mapped_column(String(32))
    timezone: Mapped[str] = mapped_column(String(64))
    locale: Mapped[str] = mapped_column(String(35))
    webhook_url: Mapped[str | None] = mapped_column(Text)
    webhook_urls: Mapped[list[str]] = mapped_column(JSONValue, server_default="[]")
    slack_webhook_url: Mapped[str | None] = mapped_column(Text)
    slack_user_id: Mapped[str | None] = mapped_column(String(32))
    attributes: Mapped[dict[str, Any]] = mapped_column(JSONValue)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class DeviceRow(Base):
    """Keyed by a digest of the token: tokens may be up to 4 KiB, more than a PostgreSQL
    b-tree entry holds."""

    __tablename__ = "devices"

    platform: Mapped[str] = mapped_column(String(16), primary_key=True)
    token_sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    token: Mapped[str] = mapped_column(Text)
    user_id: Mapped[str] = mapped_column(
        String(128), ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    label: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class PreferencesRow(Base):
    __tablename__ = "preferences"

    user_id: Mapped[str] = mapped_column(
        String(128), ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    channels: Mapped[dict[str, Any]] = mapped_column(JSONValue)
    categories: Mapped[dict[str, Any]] = mapped_column(JSONValue)
    templates: Mapped[dict[str, Any]] = mapped_column(JSONValue)
    quiet_hours: Mapped[dict[str, Any] | None] = mapped_column(JSONValue)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class TemplateRow(Base):
    """One row per version; rows are never updated, so a running notification's pinned
    version stays readable."""

    __tablename__ = "templates"

    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    category: Mapped[str] = mapped_column(String(128))
    channels: Mapped[list[str]] = mapped_column(JSONValue)
    default_priority: Mapped[str] = mapped_column(String(16))
    content: Mapped[dict[str, Any]] = mapped_column(JSONValue)
    locales: Mapped[dict[str, Any]] = mapped_column(JSONValue)
    sample_data: Mapped[dict[str, Any]] = mapped_column(JSONValue)
    fallback: Mapped[list[str]] = mapped_column(JSONValue, server_default="[]")
    tracking: Mapped[bool] = mapped_column(Boolean, server_default=true())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class NotificationRow(Base):
    """The read model of a notification. No foreign keys to users or templates: a notification
    for a user who vanished must still be recordable, with its failure reason."""

    __tablename__ = "notifications"
    __table_args__ = (
        Index(None, "user_id", "created_at", "status", "last_opened_at"),
        Index(None, "experiment_id", "variant", "created_at"),
        Index(None, "template_id", "created_at"),
        # Covering: a period's notifications with the analytics' filters and facts, read
        # without the table (migration 0015; `status` was in it from 0020 to 0021).
        Index(
            "ix_notifications_cohort",
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
        ),
    )

    id: Mapped[str] = mapped_column(String, primary_key=True)
    user_id: Mapped[str] = mapped_column(String(128))
    template_id: Mapped[str] = mapped_column(String(128))
    template_version: Mapped[int] = mapped_column(Integer)
    priority: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16))
    send_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    reason: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # Set when the notification is an A/B test's: which test and which arm (never changed).
    experiment_id: Mapped[str | None] = mapped_column(String(64))
    variant: Mapped[str | None] = mapped_column(String(128))
    # Facts kept by triggers on every delivery or event write (tidings/store/facts.py), read by
    # analytics and engagement segments instead of joining deliveries and events.
    any_sent: Mapped[bool] = mapped_column(Boolean, server_default=false(), default=False)
    any_delivered: Mapped[bool] = mapped_column(Boolean, server_default=false(), default=False)
    any_failed: Mapped[bool] = mapped_column(Boolean, server_default=false(), default=False)
    any_suppressed: Mapped[bool] = mapped_column(Boolean, server_default=false(), default=False)
    last_opened_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_clicked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_converted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    # Loaded explicitly with selectinload; lazy="raise" turns an accidental lazy load (which
    # cannot work under asyncio) into an immediate error.
    deliveries: Mapped[list[DeliveryRow]] = relationship(
        order_by=lambda: DeliveryRow.channel, lazy="raise", viewonly=True
    )
    engagement: Mapped[list[EngagementRow]] = relationship(
        order_by=lambda: [EngagementRow.at, EngagementRow.id], lazy="raise", viewonly=True
    )


class DeliveryRow(Base):
    __tablename__ = "deliveries"
    __table_args__ = (
        Index(None, "channel", "status"),
        # Covering: a period's deliveries with what channel and provider figures read.
        Index(
            "ix_deliveries_cohort",
            "created_at",
            "notification_id",
            "channel",
            "status",
            "attempts",
            "at",
            "first_opened_at",
            "first_clicked_at",
            "first_converted_at",
        ),
    )

    notification_id: Mapped[str] = mapped_column(
        String, ForeignKey("notifications.id", ondelete="CASCADE"), primary_key=True
    )
    channel: Mapped[str] = mapped_column(String(16), primary_key=True)
    status: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(Text)
    target: Mapped[str | None] = mapped_column(Text)
    provider_message_id: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer)
    at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # Facts kept by triggers (tidings/store/facts.py): the first open (or click), click and
    # conversion through this channel or through none, and the notification's creation time.
    first_opened_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    first_clicked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    first_converted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class UserEngagementRow(Base):
    """Each user's latest open (or click), click and conversion over all their notifications,
    kept by a trigger on events (tidings/store/facts.py): "opened in the last 30 days" is one
    row per user. No row: never engaged."""

    __tablename__ = "user_engagement"

    user_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    last_opened_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_clicked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_converted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class UserSentDayRow(Base):
    """Per user and UTC day of creation (days since 1970-01-01): the user's notifications of
    that day whose status is `sent`, and how many of them were opened or clicked
    (`last_opened_at` set). Kept by triggers on `notifications` (migration 0019): counting the
    segment rule `engagement.rate` reads a window's whole days here. No row: nothing sent."""

    __tablename__ = "user_sent_days"
    __table_args__ = (
        # The key carries the counts on PostgreSQL too (an index-only scan: without them the
        # grouping read the table row of every key entry, 3-4x slower than the notifications'
        # own index); on SQLite the table is its key's B-tree.
        PrimaryKeyConstraint("user_id", "day", postgresql_include=["sent", "opened"]),
        {"sqlite_with_rowid": False},
    )

    user_id: Mapped[str] = mapped_column(String(128))
    day: Mapped[int] = mapped_column(Integer)  # days since 1970-01-01, UTC
    sent: Mapped[int] = mapped_column(Integer)
    opened: Mapped[int] = mapped_column(Integer)


class ConversionRow(Base):
    """Per notification, channel (`""`: an event through none) and currency (`""`: none), the
    sum of its `converted` events' `value` (NULL while none had one), kept by a trigger on
    events (migration 0017): the conversion value without reading the events."""

    __tablename__ = "conversions"
    __table_args__ = {"sqlite_with_rowid": False}

    notification_id: Mapped[str] = mapped_column(
        String, ForeignKey("notifications.id", ondelete="CASCADE"), primary_key=True
    )
    channel: Mapped[str] = mapped_column(String(16), primary_key=True)
    currency: Mapped[str] = mapped_column(String(16), primary_key=True)
    value: Mapped[float | None] = mapped_column(Float)


class EngagementRow(Base):
    __tablename__ = "engagement_events"
    # One row per event: repeats (a re-fetched pixel, a retried signal) are the same event.
    __table_args__ = (
        UniqueConstraint("notification_id", "dedupe_key"),
        # Analytics: which notifications had an event of a type, and when (tidings.analytics).
        Index(None, "notification_id", "type", "at"),
        Index(None, "at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    notification_id: Mapped[str] = mapped_column(
        String, ForeignKey("notifications.id", ondelete="CASCADE")
    )
    type: Mapped[str] = mapped_column(String(16))
    channel: Mapped[str | None] = mapped_column(String(16))
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    dedupe_key: Mapped[str] = mapped_column(String(160))
    # `metadata` is reserved on declarative classes, hence the attribute name.
    meta: Mapped[dict[str, Any]] = mapped_column("metadata", JSONValue)


class LedgerRow(Base):
    __tablename__ = "send_ledger"
    # Receipts name the provider's message id; the ledger has it before the read model does.
    __table_args__ = (Index(None, "channel", "provider_message_id"),)

    key: Mapped[str] = mapped_column(String, primary_key=True)
    notification_id: Mapped[str] = mapped_column(String, index=True)
    channel: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16))
    target: Mapped[str] = mapped_column(Text)
    provider_message_id: Mapped[str | None] = mapped_column(Text)
    sent_at: Mapped[datetime] = mapped_column(UTCDateTime)


class InboxRow(Base):
    __tablename__ = "inbox_items"
    __table_args__ = (Index(None, "user_id", "id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    user_id: Mapped[str] = mapped_column(String(128))
    notification_id: Mapped[str] = mapped_column(String, unique=True)
    title: Mapped[str] = mapped_column(Text)
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    read_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    seen_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    archived_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The notification's template category when the in-app channel stored it (None before 0009).
    category: Mapped[str | None] = mapped_column(String(128))


class InboxEventRow(Base):
    """What changed in one user's inbox, in order: the inbox stream replays rows after the
    client's Last-Event-ID and waits for more. Written in the transaction of the change."""

    __tablename__ = "inbox_events"
    __table_args__ = (Index(None, "user_id", "id"), Index(None, "created_at"))

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    user_id: Mapped[str] = mapped_column(String(128))
    kind: Mapped[str] = mapped_column(String(16))  # "item" | "state"
    payload: Mapped[dict[str, Any]] = mapped_column(JSONValue)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class IdempotencyKeyRow(Base):
    """Which request an idempotency key was first used for: a repeat with the same request is
    the same notification, one with a different request is a conflict (`tidings.idempotency`)."""

    __tablename__ = "idempotency_keys"

    key: Mapped[str] = mapped_column(String, primary_key=True)
    fingerprint: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class ExperimentRow(Base):
    """One A/B test: its configuration as created, and its outcome once the workflow ends
    (so results and the list outlive the workflow's retention)."""

    __tablename__ = "experiments"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    config: Mapped[dict[str, Any]] = mapped_column(JSONValue)
    status: Mapped[str] = mapped_column(String(16))  # running | finished
    ending: Mapped[str | None] = mapped_column(String(16))
    winner: Mapped[str | None] = mapped_column(String(128))
    reason: Mapped[str | None] = mapped_column(Text)
    outcome: Mapped[dict[str, Any] | None] = mapped_column(JSONValue)  # the figures decided on
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class EnrolmentRow(Base):
    """The first enrolment of a user in a test wins: the primary key makes a repeat return
    the first (holdout users included, who have no notification)."""

    __tablename__ = "experiment_enrolments"

    experiment_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("experiments.id", ondelete="CASCADE"), primary_key=True
    )
    user_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    variant: Mapped[str] = mapped_column(String(128))
    notification_id: Mapped[str | None] = mapped_column(String)
    claim_id: Mapped[str] = mapped_column(String(128))  # the update that enrolled the user
    enrolled_at: Mapped[datetime] = mapped_column(UTCDateTime)


class ApiKeyRow(Base):
    """An API key by its public id; only the SHA-256 of the key is kept (`tidings.api_keys`)."""

    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(128))
    scopes: Mapped[list[str]] = mapped_column(JSONValue)
    digest: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class SegmentRow(Base):
    """A saved audience: its rules as checked by `tidings.segments` (evaluated at each use)."""

    __tablename__ = "segments"

    name: Mapped[str] = mapped_column(String(128), primary_key=True)
    rules: Mapped[dict[str, Any]] = mapped_column(JSONValue)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class BroadcastRow(Base):
    """One broadcast: what it sends and to whom, and its counters as the workflow last recorded
    them (absolute values, so a repeated write after a retry changes nothing)."""

    __tablename__ = "broadcasts"
    __table_args__ = (Index(None, "created_at"),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    template_id: Mapped[str] = mapped_column(String(128))
    template_version: Mapped[int] = mapped_column(Integer)
    audience: Mapped[dict[str, Any]] = mapped_column(JSONValue)
    channels: Mapped[list[str] | None] = mapped_column(JSONValue)
    priority: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16))  # running | paused | cancelled | completed
    counters: Mapped[dict[str, Any]] = mapped_column(JSONValue)
    pages: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # An experiment on a share of the audience first (migration 0016): its id, and the phase.
    experiment_id: Mapped[str | None] = mapped_column(String(64))
    phase: Mapped[str | None] = mapped_column(String(200))


class BroadcastRecipientRow(Base):
    """One recipient's send on one channel. The row is claimed before the send; a retried
    batch skips rows that reached a final status."""

    __tablename__ = "broadcast_recipients"
    # (user_id, updated_at): frequency caps count a user's recent broadcast sends.
    __table_args__ = (Index(None, "broadcast_id", "status"), Index(None, "user_id", "updated_at"))

    broadcast_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("broadcasts.id", ondelete="CASCADE"), primary_key=True
    )
    user_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    channel: Mapped[str] = mapped_column(String(16), primary_key=True)
    status: Mapped[str] = mapped_column(String(16))
    batch: Mapped[int] = mapped_column(Integer)
    target: Mapped[str | None] = mapped_column(Text)
    provider_message_id: Mapped[str | None] = mapped_column(Text)
    error: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class DigestRow(Base):
    """A registered digest definition by its key (`tidings.digests.DigestDefinition` as JSON)."""

    __tablename__ = "digests"

    key: Mapped[str] = mapped_column(String(128), primary_key=True)
    config: Mapped[dict[str, Any]] = mapped_column(JSONValue)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class DigestEventRow(Base):
    """One event of a user's digest. `batch` is NULL until the digest's workflow seals the batch
    it goes out in; the unique key makes a repeated event id count once."""

    __tablename__ = "digest_events"
    __table_args__ = (
        UniqueConstraint("user_id", "digest_key", "event_id"),
        Index(None, "user_id", "digest_key", "batch"),
    )

    seq: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    user_id: Mapped[str] = mapped_column(String(128))
    digest_key: Mapped[str] = mapped_column(String(128))
    event_id: Mapped[str] = mapped_column(String(128))
    data: Mapped[dict[str, Any]] = mapped_column(JSONValue)
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime)
    batch: Mapped[int | None] = mapped_column(Integer)
