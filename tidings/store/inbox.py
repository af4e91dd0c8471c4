"""The in-app inbox: what the in-app channel delivers and the user reads in the app.

Every change to a user's items (a new item, a mark) appends a row to `inbox_events` in the same
transaction, so the inbox stream can replay exactly what happened after a client's Last-Event-ID.
On PostgreSQL the transaction also NOTIFYs (delivered at commit) so API processes other than the
writer wake at once; in this process, `inbox_wake.poke` wakes streams after the commit.
Per-user writes are serialised (advisory lock on PostgreSQL; SQLite has one writer), so one
user's event ids grow in commit order and a stream that has seen id N never later finds an
id below N appear.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import (
    ColumnElement,
    Select,
    String,
    and_,
    bindparam,
    delete,
    func,
    literal,
    literal_column,
    select,
    update,
)
from sqlalchemy import cast as cast_
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from tidings.inbox import (
    EVENT_RETENTION_DAYS,
    MAX_PAGE,
    EventKind,
    InboxChange,
    InboxCounts,
    InboxEvent,
    InboxPage,
    InboxState,
    encode_cursor,
)
from tidings.models import InboxItem
from tidings.store import inbox_wake
from tidings.store.base import StoreBase, check_limit, utcnow
from tidings.store.tables import (
    InboxEventRow,
    InboxRow,
    NotificationRow,
    TemplateRow,
    UserRow,
)

# LISTEN/NOTIFY channel: per schema, so stores in different schemas (tests) do not wake each
# other. The listener computes the same name (tidings.store.inbox_wake).
NOTIFY_CHANNEL_SQL = "'tidings_inbox_' || current_schema()"
# One inbox event in this many prunes its user's rows past the retention (see `_append`).
PRUNE_EVERY = 16


def _item(row: InboxRow) -> InboxItem:
    return InboxItem(
        id=row.id,
        user_id=row.user_id,
        notification_id=row.notification_id,
        title=row.title,
        body=row.body,
        created_at=row.created_at,
        read_at=row.read_at,
        seen_at=row.seen_at,
        archived_at=row.archived_at,
        category=row.category,
    )


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


def _unset(state: InboxState) -> ColumnElement[bool]:
    """Items this mark would change."""
    if state is InboxState.SEEN:
        return InboxRow.seen_at.is_(None)
    if state is InboxState.READ:
        return InboxRow.read_at.is_(None)
    if state is InboxState.ARCHIVED:
        return InboxRow.archived_at.is_(None)
    return InboxRow.archived_at.is_not(None)


def _values(state: InboxState, at: datetime) -> dict[str, Any]:
    if state is InboxState.SEEN:
        return {"seen_at": at}
    if state is InboxState.READ:  # reading shows it: read implies seen
        return {"read_at": at, "seen_at": func.coalesce(InboxRow.seen_at, at)}
    if state is InboxState.ARCHIVED:
        return {"archived_at": at}
    return {"archived_at": None}


class InboxMixin(StoreBase):
    async def add_inbox_item(
        self,
        *,
        user_id: str,
        notification_id: str,
        title: str,
        body: str,
        category: str | None = None,
    ) -> InboxItem:
        """One item per notification: adding it again returns the item already there, so a
        retried in-app send shows the user one message, not two. `category` defaults to the
        category of the notification's template."""
        async with self._write_conn() as conn:
            await self._lock_user(conn, user_id)
            if category is None:
                category = await conn.scalar(
                    select(TemplateRow.category)
                    .join(
                        NotificationRow,
                        and_(
                            NotificationRow.template_id == TemplateRow.id,
                            NotificationRow.template_version == TemplateRow.version,
                        ),
                    )
                    .where(NotificationRow.id == notification_id)
                )
            values = {
                "user_id": user_id,
                "notification_id": notification_id,
                "title": title,
                "body": body,
                "category": category,
                "created_at": utcnow(),
            }
            # The new row comes back from the insert itself; only a repeat reads the row there.
            new = (await conn.execute(self._inbox_insert(), values)).one_or_none()
            inserted = new is not None
            if new is None:
                new = (await conn.execute(self._inbox_by_notification(), values)).one_or_none()
            if new is None:  # only if the row vanished between two statements of one transaction
                raise RuntimeError(f"inbox item for notification {notification_id} not stored")
            if new.user_id != user_id:
                raise ValueError(
                    f"notification_id: {notification_id} already has an inbox item for another user"
                )
            item = _item(cast(InboxRow, new))
            if inserted:
                await self._append_item(conn, item)
        if inserted:
            inbox_wake.poke(user_id)
        return item

    async def inbox_page(
        self,
        user_id: str,
        *,
        unread: bool | None = None,
        archived: bool | None = False,
        category: str | None = None,
        before: int | None = None,
        limit: int = 50,
    ) -> InboxPage:
        """Newest first, after the item id `before` (a decoded cursor). `archived`: False (the
        default) leaves archived items out, True lists only them, None lists both."""
        check_limit(limit)
        limit = min(limit, MAX_PAGE)
        stmt = select(InboxRow).where(InboxRow.user_id == user_id)
        if unread is not None:
            stmt = stmt.where(
                InboxRow.read_at.is_(None) if unread else InboxRow.read_at.is_not(None)
            )
        if archived is not None:
            stmt = stmt.where(
                InboxRow.archived_at.is_not(None) if archived else InboxRow.archived_at.is_(None)
            )
        if category is not None:
            stmt = stmt.where(InboxRow.category == category)
        if before is not None:
            stmt = stmt.where(InboxRow.id < before)
        stmt = stmt.order_by(InboxRow.id.desc()).limit(limit + 1)
        async with self._read() as session:
            rows = list((await session.scalars(stmt)).all())
            counts = await self._inbox_counts(session, user_id)
        more = len(rows) > limit
        items = [_item(row) for row in rows[:limit]]
        cursor = encode_cursor(items[-1].id) if more and items else None
        return InboxPage(items=items, counts=counts, next_cursor=cursor)

    async def list_inbox(
        self, user_id: str, *, unread_only: bool = False, limit: int = 50
    ) -> list[InboxItem]:
        """Newest first, archived items included (the list before inbox states)."""
        page = await self.inbox_page(
            user_id, unread=True if unread_only else None, archived=None, limit=limit
        )
        return page.items

    async def inbox_counts(self, user_id: str) -> InboxCounts:
        async with self._read() as session:
            return await self._inbox_counts(session, user_id)

    async def mark_inbox(
        self, user_id: str, state: InboxState, item_ids: Sequence[int] | None = None
    ) -> InboxChange | None:
        """Set `state` on these of the user's items (None: on all of them; for seen and read,
        the archived ones are left alone). Items that already have the state keep their first
        time. None when an id given is not one of this user's items (nothing is changed)."""
        at = utcnow()
        async with self._write() as session:
            await self._lock_user(session, user_id)
            scope = select(InboxRow.id, InboxRow.notification_id).where(InboxRow.user_id == user_id)
            if item_ids is not None:
                scope = scope.where(InboxRow.id.in_(item_ids))
                found = (await session.execute(scope)).all()
                if len(found) != len(set(item_ids)):
                    return None
            elif state in (InboxState.SEEN, InboxState.READ):
                scope = scope.where(InboxRow.archived_at.is_(None))
            changing = await session.execute(scope.where(_unset(state)).order_by(InboxRow.id))
            rows = [(int(r.id), str(r.notification_id)) for r in changing.all()]
            ids = [r[0] for r in rows]
            if ids:
                await session.execute(
                    update(InboxRow)
                    .where(InboxRow.id.in_(ids))
                    .values(**_values(state, at))
                    .execution_options(synchronize_session=False)
                )
            counts = await self._inbox_counts(session, user_id)
            if ids:
                payload = {
                    "state": state.value,
                    "ids": ids,
                    "at": at.isoformat(),
                    "counts": counts.model_dump(),
                }
                await self._append(session, user_id, EventKind.STATE, payload)
        if ids:
            inbox_wake.poke(user_id)
        return InboxChange(
            state=state, ids=ids, notification_ids=[r[1] for r in rows], counts=counts
        )

    async def mark_read(self, user_id: str, item_id: int) -> bool:
        """Mark one of this user's items read (keeping the first read time if it already was);
        False if the user has no such item."""
        return await self.mark_inbox(user_id, InboxState.READ, [item_id]) is not None

    async def mark_all_read(self, user_id: str) -> int:
        change = await self.mark_inbox(user_id, InboxState.READ)
        return len(change.ids) if change is not None else 0

    async def inbox_item_for(self, notification_id: str) -> InboxItem | None:
        stmt = select(InboxRow).where(InboxRow.notification_id == notification_id)
        async with self._read() as session:
            row = await session.scalar(stmt)
        return _item(row) if row is not None else None

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

    # Every in-app send runs these: built once per store, values bound by name (as the
    # notification upserts are, see `NotificationsMixin._notification_upsert`).

    def _inbox_insert(self) -> Any:
        def build() -> Any:
            table = InboxRow.__table__
            stmt = (
                self._insert(cast(Any, table))
                .on_conflict_do_nothing(index_elements=["notification_id"])
                .returning(*table.columns)
            )
            return stmt

        return self._statement("inbox_insert", build)

    def _inbox_by_notification(self) -> Any:
        def build() -> Any:
            table = InboxRow.__table__
            stmt = select(*table.columns).where(
                table.c.notification_id == bindparam("notification_id")
            )
            return stmt

        return self._statement("inbox_select", build)

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

    async def _lock_user(self, session: AsyncSession | AsyncConnection, user_id: str) -> None:
        await self._serialise(session, f"inbox:{user_id}")

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
