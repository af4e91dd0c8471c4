"""The inbox's event log: what the inbox stream replays, and the counts each event carries.

Every change to a user's items (a new item, a mark) appends a row to `inbox_events` in the same
transaction, so the inbox stream can replay exactly what happened after a client's Last-Event-ID.
On PostgreSQL the transaction also NOTIFYs (delivered at commit) so API processes other than the
writer wake at once; in this process, `inbox_wake.poke` wakes streams after the commit.
Per-user writes are serialised (`InboxMixin._lock_user`), so one user's event ids grow in commit
order and a stream that has seen id N never later finds an id below N appear.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import (
    Select,
    String,
    bindparam,
    delete,
    func,
    literal,
    literal_column,
    select,
)
from sqlalchemy import cast as cast_
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from tidings.inbox import (
    EVENT_RETENTION_DAYS,
    EventKind,
    InboxCounts,
    InboxEvent,
)
from tidings.models import InboxItem
from tidings.store import inbox_wake
from tidings.store.base import StoreBase, check_limit, utcnow
from tidings.store.tables import InboxEventRow, InboxRow, UserRow

# LISTEN/NOTIFY channel: per schema, so stores in different schemas (tests) do not wake each
# other. The listener computes the same name (tidings.store.inbox_wake).
NOTIFY_CHANNEL_SQL = "'tidings_inbox_' || current_schema()"
# One inbox event in this many prunes its user's rows past the retention (see `_append`).
PRUNE_EVERY = 16


def _event(row: InboxEventRow) -> InboxEvent:
    return InboxEvent(
        id=row.id, kind=EventKind(row.kind), payload=row.payload, created_at=row.created_at
    )


def _counts(user_id: Any) -> Select[int, int]:
    """The user's unseen and unread items, archived ones left out."""
    return select(
        func.count().filter(InboxRow.seen_at.is_(None)).label("unseen"),
        func.count().filter(InboxRow.read_at.is_(None)).label("unread"),
    ).where(InboxRow.user_id == user_id, InboxRow.archived_at.is_(None))


class InboxEventsMixin(StoreBase):
    async def inbox_events(
        self, user_id: str, *, after: int = 0, limit: int = 500
    ) -> list[InboxEvent]:
        """The user's inbox events with an id above `after`, oldest first."""
        check_limit(limit)
        stmt = (
            select(InboxEventRow)
            .where(InboxEventRow.user_id == user_id, InboxEventRow.id > after)
            .order_by(InboxEventRow.id)
            .limit(limit)
        )
        async with self._read() as session:
            return [_event(row) for row in (await session.scalars(stmt)).all()]

    async def last_inbox_event_id(self, user_id: str) -> int:
        stmt = select(func.max(InboxEventRow.id)).where(InboxEventRow.user_id == user_id)
        async with self._read() as session:
            return int(await session.scalar(stmt) or 0)

    async def inbox_stream_start(self, user_id: str) -> tuple[int, InboxCounts] | None:
        """Where a new stream starts: the user's last event id and counts, read with one
        connection (many streams connect at once after a deploy); None if there is no such
        user."""
        last = select(func.max(InboxEventRow.id)).where(InboxEventRow.user_id == user_id)
        async with self._read() as session:
            if await session.get(UserRow, user_id) is None:
                return None
            return int(await session.scalar(last) or 0), await self._inbox_counts(session, user_id)

    async def inbox_events_since(self, after: int, *, limit: int = 10_000) -> list[tuple[int, str]]:
        """(id, user id) of every user's events above `after`: how the SQLite poller finds
        whom to wake. SQLite commits writers one at a time, so ids appear in order there."""
        stmt = (
            select(InboxEventRow.id, InboxEventRow.user_id)
            .where(InboxEventRow.id > after)
            .order_by(InboxEventRow.id)
            .limit(limit)
        )
        async with self._read() as session:
            return [(int(i), str(u)) for i, u in (await session.execute(stmt)).all()]

    async def inbox_events_since_start(self) -> int:
        """The highest event id of any user (where the SQLite poller starts)."""
        async with self._read() as session:
            return int(await session.scalar(select(func.max(InboxEventRow.id))) or 0)

    async def inbox_waker(self) -> inbox_wake.InboxWaker:
        """This store's waker for inbox streams, started on first use, closed with the store."""
        waker: inbox_wake.InboxWaker | None = getattr(self, "_inbox_waker", None)
        if waker is None:
            waker = inbox_wake.InboxWaker(self)
            self._inbox_waker: inbox_wake.InboxWaker | None = waker
        await waker.start()
        return waker

    async def _close_inbox_waker(self) -> None:
        waker: inbox_wake.InboxWaker | None = getattr(self, "_inbox_waker", None)
        if waker is not None:
            self._inbox_waker = None
            await waker.close()

    async def prune_inbox_events(self, older_than: datetime) -> int:
        stmt = delete(InboxEventRow).where(InboxEventRow.created_at < older_than)
        async with self._write() as session:
            result = await session.execute(stmt)
        return int(getattr(result, "rowcount", 0) or 0)

    # Every inbox write runs these: built once per store, values bound by name (as the
    # notification upserts are, see `NotificationsMixin._notification_upsert`).

    def _inbox_event_insert(self) -> Any:
        def build() -> Any:
            table = InboxEventRow.__table__
            stmt = self._insert(cast(Any, table)).returning(*self._event_returning())
            return stmt

        return self._statement("inbox_event", build)

    def _item_event_insert(self) -> Any:
        """A new item's event with the user's counts, counted by the insert itself (after the
        item's own insert, in the same transaction): the item is bound as JSON text."""

        def build() -> Any:
            events = InboxEventRow.__table__
            user_id = bindparam("user_id", type_=String)
            counts = _counts(user_id).subquery("counts")
            json_object, item = self._json_object, bindparam("item", type_=String)
            if self.engine.dialect.name == "postgresql":
                item_json: Any = cast_(item, JSONB)
            else:
                item_json = func.json(item)
            payload = json_object(
                "item",
                item_json,
                "counts",
                json_object("unseen", counts.c.unseen, "unread", counts.c.unread),
            )
            created_at = bindparam("created_at", type_=events.c.created_at.type)
            kind = literal(EventKind.ITEM.value)
            source = select(user_id, kind, payload, created_at).select_from(counts)
            columns = ["user_id", "kind", "payload", "created_at"]
            stmt = (
                self._insert(cast(Any, events))
                .from_select(columns, source)
                .returning(*self._event_returning())
            )
            return stmt

        return self._statement("item_event", build)

    def _json_object(self, *pairs: Any) -> Any:
        if self.engine.dialect.name == "postgresql":
            return func.jsonb_build_object(*pairs)
        return func.json_object(*pairs)

    def _event_returning(self) -> tuple[Any, ...]:
        """The new event's id and, on PostgreSQL, its NOTIFY (delivered at commit), in the
        insert's RETURNING rather than a statement of its own."""
        table = InboxEventRow.__table__
        if self.engine.dialect.name != "postgresql":
            return (table.c.id,)
        channel: Any = literal_column(NOTIFY_CHANNEL_SQL)
        return (table.c.id, func.pg_notify(channel, table.c.user_id))

    async def _inbox_counts(self, session: AsyncSession, user_id: str) -> InboxCounts:
        row = (await session.execute(_counts(user_id))).one()
        return InboxCounts(unseen=int(row[0] or 0), unread=int(row[1] or 0))

    async def _append(
        self, session: AsyncSession, user_id: str, kind: EventKind, payload: dict[str, Any]
    ) -> None:
        now = utcnow()
        conn = await session.connection()
        values = {"user_id": user_id, "kind": kind.value, "payload": payload, "created_at": now}
        event_id = (await conn.execute(self._inbox_event_insert(), values)).scalar_one()
        await self._prune(conn, user_id, event_id, now)

    async def _append_item(self, conn: AsyncConnection, item: InboxItem) -> None:
        now = utcnow()
        values = {"user_id": item.user_id, "item": item.model_dump_json(), "created_at": now}
        event_id = (await conn.execute(self._item_event_insert(), values)).scalar_one()
        await self._prune(conn, item.user_id, event_id, now)

    async def _prune(
        self, conn: AsyncConnection, user_id: str, event_id: int, now: datetime
    ) -> None:
        # The user's own old rows go as new ones come, on one append in PRUNE_EVERY: the log
        # stays bounded per user without a sweeper (`prune_inbox_events` clears users who went
        # quiet), and the other appends skip a statement.
        if event_id % PRUNE_EVERY == 0:
            await conn.execute(
                delete(InboxEventRow).where(
                    InboxEventRow.user_id == user_id,
                    InboxEventRow.created_at < now - timedelta(days=EVENT_RETENTION_DAYS),
                )
            )
