"""The notification read model: one row per notification, one per channel delivery, and the
engagement events. Temporal holds the in-flight state; these rows are what the API, the inbox
and analytics read."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import bindparam, case, false, func, literal_column, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlalchemy.orm import selectinload

from tidings.models import (
    Channel,
    ChannelResult,
    ChannelStats,
    DeliveryStatus,
    EngagementEvent,
    EngagementType,
    NotificationResult,
    NotificationStatus,
    Priority,
    ServiceStats,
    event_id_from_key,
)
from tidings.routing import NO_CHANNELS_STATUS, STATUS_RULES
from tidings.store.base import IN_CHUNK, Upsert, check_limit, rowcount, utcnow
from tidings.store.ledger import LedgerEntry, LedgerMixin, _ledger_params
from tidings.store.tables import DeliveryRow, EngagementRow, NotificationRow

# Columns an upsert overwrites (every other one is written only by the first insert).
_NOTIFICATION_UPDATED = (
    "user_id",
    "template_id",
    "template_version",
    "priority",
    "status",
    "reason",
    "updated_at",
)
_DELIVERY_UPDATED = (
    "status",
    "reason",
    "target",
    "provider_message_id",
    "attempts",
    "at",
    "updated_at",
)

# A notification takes events once a channel may have delivered: SENDING too, because a fast
# click can come before the run has recorded SENT.
_TAKES_EVENTS = (NotificationStatus.SENDING, NotificationStatus.SENT)


@dataclass(frozen=True)
class RecordedEvent:
    """What `record_event` did: `new` is False for a repeat, and for a notification that is
    neither sending nor sent, which records nothing; `status` and `updated_at` are the
    notification's."""

    new: bool
    status: NotificationStatus
    updated_at: datetime
    # When the first channel was sent or delivered, on the run's own clock (None: none yet).
    delivered_at: datetime | None = None


@dataclass(frozen=True)
class RecordedSend:
    """What `record_send` did: `new` is False when the ledger had the send already;
    `final_status` is the notification's final status when this transaction wrote it (or found
    it written), None when it did not."""

    new: bool
    final_status: NotificationStatus | None = None


@dataclass(frozen=True)
class SendRecord:
    """What a send writes once it is made: the send ledger's entry and, unless `result` is None
    (the caller records the channel), the channel's delivery row; with `finish`, the
    notification's final status when this channel lands last (see `record_send`)."""

    entry: LedgerEntry
    result: ChannelResult | None = None
    finish: bool = False


# The delivery statuses ChannelStats counts, by field name.
_COUNTED = {
    DeliveryStatus.SENT: "sent",
    DeliveryStatus.DELIVERED: "delivered",
    DeliveryStatus.FAILED: "failed",
    DeliveryStatus.SUPPRESSED: "suppressed",
}


_SETTLED_BY_RECEIPT = [DeliveryStatus.DELIVERED.value, DeliveryStatus.FAILED.value]
_NOT_YET_SETTLED = [
    DeliveryStatus.SCHEDULED.value,
    DeliveryStatus.SENDING.value,
    DeliveryStatus.SENT.value,
]


_SENDING = NotificationStatus.SENDING.value


def _inline(values: list[str]) -> list[Any]:
    """Our own constants (no quotes in them) as SQL literals."""
    return [literal_column(f"'{v}'") for v in values]


def _delivery_params(notification_id: str, result: ChannelResult) -> dict[str, Any]:
    return {
        "notification_id": notification_id,
        "channel": Channel(result.channel).value,
        "status": DeliveryStatus(result.status).value,
        "reason": result.reason,
        "target": result.target,
        "provider_message_id": result.provider_message_id,
        "attempts": result.attempts,
        "at": result.at,
        "updated_at": utcnow(),
    }


def _delivery(row: DeliveryRow) -> ChannelResult:
    return ChannelResult(
        channel=Channel(row.channel),
        status=DeliveryStatus(row.status),
        reason=row.reason,
        target=row.target,
        provider_message_id=row.provider_message_id,
        attempts=row.attempts,
        at=row.at,
    )


_KNOWN_TYPES = frozenset(t.value for t in EngagementType)
_KNOWN_CHANNELS = frozenset(c.value for c in Channel)


def _known(row: EngagementRow) -> bool:
    """Whether this version can read the row. During a rolling deploy a newer process may
    record a type (or channel) that an older one has never heard of; the older one leaves
    such rows out of what it shows and counts rather than failing the whole read."""
    return row.type in _KNOWN_TYPES and (row.channel is None or row.channel in _KNOWN_CHANNELS)


def _engagement(row: EngagementRow) -> EngagementEvent:
    return EngagementEvent.model_validate(
        {
            "notification_id": row.notification_id,
            "type": row.type,
            "channel": row.channel,
            "at": row.at,
            "metadata": row.meta,
            "event_id": event_id_from_key(row.dedupe_key),
        }
    )


def _notification(row: NotificationRow) -> NotificationResult:
    return NotificationResult(
        notification_id=row.id,
        user_id=row.user_id,
        template_id=row.template_id,
        template_version=row.template_version,
        priority=Priority(row.priority),
        status=NotificationStatus(row.status),
        send_at=row.send_at,
        reason=row.reason,
        channels=[_delivery(d) for d in row.deliveries],
        engagement=[_engagement(e) for e in row.engagement if _known(e)],
    )


def _with_children() -> tuple[Any, ...]:
    return (selectinload(NotificationRow.deliveries), selectinload(NotificationRow.engagement))


class NotificationsMixin(LedgerMixin):
    async def upsert_notification(
        self,
        *,
        notification_id: str,
        user_id: str,
        template_id: str,
        template_version: int,
        priority: Priority,
        status: NotificationStatus,
        send_at: datetime | None = None,
        reason: str | None = None,
        channels: list[ChannelResult] | None = None,
        experiment_id: str | None = None,
        variant: str | None = None,
    ) -> None:
        """Insert or update the notification and, when `channels` is given, each channel's
        delivery row, all in one transaction. Every field is overwritten except `send_at`: None
        keeps the send time already recorded, since once known it stays a fact; and the A/B
        test and arm, which are set once, when the row is first written."""
        now = utcnow()
        params: dict[str, Any] = {
            "id": notification_id,
            "user_id": user_id,
            "template_id": template_id,
            "template_version": template_version,
            "priority": Priority(priority).value,
            "status": NotificationStatus(status).value,
            "reason": reason,
            "updated_at": now,
            "send_at": send_at,
            "created_at": now,
            "experiment_id": experiment_id,
            "variant": variant,
        }
        async with self._write_conn() as conn:
            await conn.execute(self._notification_upsert(), params)
            if channels:  # one executemany: the plan's record writes a row per channel
                rows = [_delivery_params(notification_id, result) for result in channels]
                await conn.execute(self._delivery_upsert(), rows)

    async def upsert_delivery(self, notification_id: str, result: ChannelResult) -> None:
        async with self._write() as session:
            await self._require_notification(session, notification_id)
            await self._put_delivery(await session.connection(), notification_id, result)

    async def record_send(
        self, entry: LedgerEntry, result: ChannelResult, *, finish: bool = False
    ) -> RecordedSend:
        """The send ledger's entry (see `ledger_put`) and the channel's delivery row, in one
        transaction: the channel is recorded the moment it lands, with no write of its own.
        `new` is False (and the delivery row left as it is) when the ledger had the key already.
        With `finish`, the same transaction also writes the notification's final status when
        this was the last of its channels to land (see `_finish_if_last`)."""
        async with self._write_conn() as conn:
            return await self._record_send(conn, SendRecord(entry, result, finish))

    async def _record_send(self, conn: AsyncConnection, record: SendRecord) -> RecordedSend:
        """`record_send` in the caller's transaction (the in-app item's, see
        `InboxSendMixin.deliver_inbox_item`)."""
        entry = record.entry
        new = rowcount(await conn.execute(self._ledger_insert(), _ledger_params(entry))) == 1
        if new and record.result is not None:
            await self._put_delivery(conn, entry.notification_id, record.result)
        final = None
        if record.finish and record.result is not None:
            final = await self._finish_if_last(conn, entry.notification_id)
        return RecordedSend(new=new, final_status=final)

    async def finish_if_last(self, notification_id: str) -> NotificationStatus | None:
        """`_finish_if_last` in a transaction of its own: a retried delivery that found its
        ledger entry (its row was written by the attempt that sent) asks this instead."""
        async with self._write_conn() as conn:
            return await self._finish_if_last(conn, notification_id)

    async def _finish_if_last(
        self, conn: AsyncConnection, notification_id: str
    ) -> NotificationStatus | None:
        """The notification's final status, written when none of its delivery rows is left
        `sending` (or `scheduled`): the status `overall_status` gives for those rows (its rules,
        `STATUS_RULES`, built into the statement), with no reason, as the run's own final
        record would write it. Only from `sending` (forward only: a run that recorded something
        else has the last word), or the same status again (a retry, or the other channel's
        delivery, wrote it already). One statement: every delivery of a notification runs it.
        Returns the status the row now has, or None when nothing was written: a channel still
        sending (on PostgreSQL two last deliveries running at once may each see the other's
        row so, and then neither writes), or a failed one, whose row only the run writes. The
        status written fires the engagement-rate rollup's triggers (migration 0019) as the
        run's own record would; the facts follow the delivery rows."""
        params = {"nid": notification_id, "updated_at": utcnow()}
        final = (await conn.execute(self._finish_statement(), params)).scalar_one_or_none()
        return None if final is None else NotificationStatus(final)

    def _finish_statement(self) -> Any:
        """Built once per store (see `_notification_upsert`): one pass over the notification's
        delivery rows (an aggregate per rule) feeds the update."""

        def build() -> Any:
            deliveries = cast(Any, DeliveryRow.__table__)

            def any_in(statuses: Iterable[DeliveryStatus]) -> Any:
                hit = deliveries.c.status.in_(_inline([s.value for s in statuses]))
                one: Any = literal_column("1")
                return func.max(case((hit, one), else_=literal_column("0"))) == one

            # A channel in SENDING's rule has not landed yet: the notification is not final,
            # and once none is, that rule no longer decides.
            in_flight = dict(STATUS_RULES)[NotificationStatus.SENDING]
            final = case(
                *[
                    (any_in(statuses), literal_column(f"'{status.value}'"))
                    for status, statuses in STATUS_RULES
                    if status is not NotificationStatus.SENDING
                ],
                else_=literal_column(f"'{NO_CHANNELS_STATUS.value}'"),
            )
            rows = (
                select(final.label("final"), any_in(in_flight).label("landing"))
                .where(deliveries.c.notification_id == bindparam("nid"))
                .subquery("rows")
            )
            table = cast(Any, NotificationRow.__table__)
            stmt = (
                table.update()
                .where(
                    table.c.id == bindparam("nid"),
                    rows.c.landing == false(),
                    or_(
                        table.c.status == literal_column(f"'{_SENDING}'"),
                        table.c.status == rows.c.final,
                    ),
                )
                .values(status=rows.c.final, reason=None, updated_at=bindparam("updated_at"))
                .returning(table.c.status)
            )
            return stmt

        return self._statement("finish", build)

    async def _put_delivery(
        self, conn: AsyncConnection, notification_id: str, result: ChannelResult
    ) -> None:
        # The analytics facts follow in the same statement (triggers: tidings/store/facts.py).
        await conn.execute(self._delivery_upsert(), _delivery_params(notification_id, result))

    # The two writes every notification makes several times, built once per store: a statement
    # built per call cost more CPU in SQLAlchemy (cache key, bound parameters) than running it.
    # Parameters are bound by name at execution, and every update takes the inserted values.

    def _notification_upsert(self) -> Upsert:
        def build() -> Upsert:
            stmt = self._insert(NotificationRow)
            updated: dict[str, Any] = {name: stmt.excluded[name] for name in _NOTIFICATION_UPDATED}
            # send_at: None keeps the send time already recorded; the A/B test and arm are
            # set once, when the row is first written.
            updated["send_at"] = func.coalesce(stmt.excluded.send_at, NotificationRow.send_at)
            stmt = stmt.on_conflict_do_update(index_elements=["id"], set_=updated)
            return stmt

        return self._statement("notification", build)

    def _delivery_upsert(self) -> Upsert:
        def build() -> Upsert:
            stmt = self._insert(DeliveryRow)
            updated = {name: stmt.excluded[name] for name in _DELIVERY_UPDATED}
            # Forward only: a provider's receipt may have settled the channel (delivered /
            # failed) before the workflow's own `sent` reached the database; that `sent` must
            # not undo it.
            # The statuses are written into the statement (an IN of bound values cannot run
            # as one executemany).
            settled = DeliveryRow.status.in_(_inline(_SETTLED_BY_RECEIPT))
            stmt = stmt.on_conflict_do_update(
                index_elements=["notification_id", "channel"],
                set_=updated,
                where=~(settled & stmt.excluded.status.in_(_inline(_NOT_YET_SETTLED))),
            )
            return stmt

        return self._statement("delivery", build)

    async def _require_notification(self, session: AsyncSession, notification_id: str) -> None:
        found = await session.scalar(
            select(NotificationRow.id).where(NotificationRow.id == notification_id)
        )
        if found is None:
            raise LookupError(f"notification {notification_id} not found")

    async def get_notification(self, notification_id: str) -> NotificationResult | None:
        stmt = (
            select(NotificationRow)
            .where(NotificationRow.id == notification_id)
            .options(*_with_children())
        )
        async with self._read() as session:
            row = await session.scalar(stmt)
            return None if row is None else _notification(row)

    async def list_notifications(
        self, *, user_id: str | None = None, limit: int = 50
    ) -> list[NotificationResult]:
        """Newest first, with channels and engagement (three queries, however many rows)."""
        check_limit(limit)
        stmt = (
            select(NotificationRow)
            .order_by(NotificationRow.created_at.desc(), NotificationRow.id.desc())
            .limit(limit)
            .options(*_with_children())
        )
        if user_id is not None:
            stmt = stmt.where(NotificationRow.user_id == user_id)
        async with self._read() as session:
            return [_notification(row) for row in (await session.scalars(stmt)).all()]

    @staticmethod
    def _first_delivery(notification_id: Any) -> Any:
        """When the notification was first sent or delivered (NULL: not yet), as a subquery."""
        return (
            select(func.min(DeliveryRow.at))
            .where(
                DeliveryRow.notification_id == notification_id,
                DeliveryRow.status.in_([DeliveryStatus.SENT.value, DeliveryStatus.DELIVERED.value]),
            )
            .scalar_subquery()
        )

    def _engagement_values(self, event: EngagementEvent) -> dict[str, Any]:
        return {
            "notification_id": event.notification_id,
            "type": EngagementType(event.type).value,
            "channel": None if event.channel is None else Channel(event.channel).value,
            "at": event.at or utcnow(),
            "dedupe_key": event.dedupe_key,
            "meta": event.metadata,
        }

    async def record_events(self, events: Sequence[EngagementEvent]) -> dict[str, RecordedEvent]:
        """`record_event` for many notifications (at most one event each) in one transaction:
        one read of their statuses and first deliveries and one multi-row INSERT per
        IN_CHUNK. Notifications that do not exist are left out of the answer."""
        found: dict[str, RecordedEvent] = {}
        async with self._write() as session:
            for start in range(0, len(events), IN_CHUNK):
                chunk = events[start : start + IN_CHUNK]
                rows = await session.execute(
                    select(
                        NotificationRow.id,
                        NotificationRow.status,
                        NotificationRow.updated_at,
                        self._first_delivery(NotificationRow.id).label("delivered_at"),
                    ).where(NotificationRow.id.in_([e.notification_id for e in chunk]))
                )
                known = {row.id: row for row in rows}
                taken = [
                    e
                    for e in chunk
                    if e.notification_id in known
                    and NotificationStatus(known[e.notification_id].status) in _TAKES_EVENTS
                ]
                inserted: set[str] = set()
                if taken:
                    stmt = (
                        self._insert(EngagementRow)
                        .values([self._engagement_values(e) for e in taken])
                        .on_conflict_do_nothing(index_elements=["notification_id", "dedupe_key"])
                        .returning(EngagementRow.notification_id)
                    )
                    inserted = set((await session.scalars(stmt)).all())
                for nid, row in known.items():
                    found[nid] = RecordedEvent(
                        new=nid in inserted,
                        status=NotificationStatus(row.status),
                        updated_at=row.updated_at,
                        delivered_at=row.delivered_at,
                    )
        return found

    def _insert_engagement(self, event: EngagementEvent) -> Upsert:
        """The event's row, inserted unless the same event (its dedupe key) is there already."""
        stmt = self._insert(EngagementRow).values(**self._engagement_values(event))
        return stmt.on_conflict_do_nothing(index_elements=["notification_id", "dedupe_key"])

    async def record_engagement(self, event: EngagementEvent) -> bool:
        """Record one engagement event; False (and nothing changed) when the same event was
        recorded already: the same event id, or without one the same type and channel."""
        stmt = self._insert_engagement(event)
        async with self._write() as session:
            await self._require_notification(session, event.notification_id)
            return rowcount(await session.execute(stmt)) == 1

    def _record_event_statements(self) -> tuple[Any, Any]:
        """The two statements of `record_event`, built once with bound parameters: building
        and hashing them per request cost more CPU than running them."""

        def build() -> tuple[Any, Any]:
            status = select(
                NotificationRow.status,
                NotificationRow.updated_at,
                self._first_delivery(bindparam("nid")).label("delivered_at"),
            ).where(NotificationRow.id == bindparam("nid"))
            insert = self._insert(cast(Any, EngagementRow.__table__)).on_conflict_do_nothing(
                index_elements=["notification_id", "dedupe_key"]
            )
            return status, insert

        return self._statement("record_event", build)

    async def record_event(self, event: EngagementEvent) -> RecordedEvent:
        """Record one engagement event reported through the front door, in one transaction:
        the notification's status and first delivery are read in one statement (LookupError
        when there is none) and the event row inserted unless the same event is there
        already. The caller decides from the answer whether the run may still take the
        event. Core statements on the session's connection: the ORM adds nothing here."""
        status_stmt, insert_stmt = self._record_event_statements()
        values = self._engagement_values(event)
        values["metadata"] = values.pop("meta")  # the column's name
        async with self._write() as session:
            conn = await session.connection()
            row = (await conn.execute(status_stmt, {"nid": event.notification_id})).one_or_none()
            if row is None:
                raise LookupError(f"notification {event.notification_id} not found")
            status = NotificationStatus(row.status)
            if status not in _TAKES_EVENTS:
                return RecordedEvent(new=False, status=status, updated_at=row.updated_at)
            new = (await conn.execute(insert_stmt, values)).rowcount == 1
            return RecordedEvent(
                new=new, status=status, updated_at=row.updated_at, delivered_at=row.delivered_at
            )

    async def has_engagement(self, notification_id: str, dedupe_key: str) -> bool:
        stmt = select(EngagementRow.id).where(
            EngagementRow.notification_id == notification_id,
            EngagementRow.dedupe_key == dedupe_key,
        )
        async with self._read() as session:
            return await session.scalar(stmt.limit(1)) is not None

    async def service_stats(self) -> ServiceStats:
        """Counts by status, channel and engagement type, aggregated by the database."""
        by_status = select(NotificationRow.status, func.count()).group_by(NotificationRow.status)
        by_channel = select(DeliveryRow.channel, DeliveryRow.status, func.count()).group_by(
            DeliveryRow.channel, DeliveryRow.status
        )
        by_type = select(EngagementRow.type, func.count()).group_by(EngagementRow.type)
        async with self._read() as session:
            statuses = (await session.execute(by_status)).all()
            deliveries = (await session.execute(by_channel)).all()
            types = (await session.execute(by_type)).all()
        channels: dict[Channel, ChannelStats] = {}
        for channel, status, count in deliveries:
            stats = channels.setdefault(Channel(channel), ChannelStats())
            field = _COUNTED.get(DeliveryStatus(status))
            if field is not None:
                setattr(stats, field, count)
        return ServiceStats(
            notifications={NotificationStatus(s): n for s, n in statuses},
            channels=channels,
            engagement={EngagementType(t): n for t, n in types if t in _KNOWN_TYPES},
        )
