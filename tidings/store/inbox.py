"""The in-app inbox: what the in-app channel delivers and the user reads in the app, the items'
states (seen, read, archived) and their counts.

Every change to a user's items appends an event in the same transaction (`inbox_events`, the log
the inbox stream replays). Per-user writes are serialised (advisory lock on PostgreSQL; SQLite
has one writer), so one user's event ids grow in commit order.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, cast

from sqlalchemy import (
    ColumnElement,
    and_,
    bindparam,
    func,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from tidings.inbox import (
    MAX_PAGE,
    EventKind,
    InboxChange,
    InboxCounts,
    InboxPage,
    InboxState,
    encode_cursor,
)
from tidings.models import InboxItem
from tidings.store import inbox_wake
from tidings.store.base import check_limit, utcnow
from tidings.store.inbox_events import InboxEventsMixin
from tidings.store.tables import (
    InboxRow,
    NotificationRow,
    TemplateRow,
)


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


class InboxMixin(InboxEventsMixin):
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
            item, inserted = await self._add_item(
                conn, user_id, notification_id, title, body, category
            )
        if inserted:
            inbox_wake.poke(user_id)
        return item

    async def _add_item(
        self,
        conn: AsyncConnection,
        user_id: str,
        notification_id: str,
        title: str,
        body: str,
        category: str | None,
    ) -> tuple[InboxItem, bool]:
        """`add_inbox_item` in the caller's write transaction: the item, and whether it is new
        (the caller pokes the user's streams after the commit)."""
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
        return item, inserted

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

    async def _lock_user(self, session: AsyncSession | AsyncConnection, user_id: str) -> None:
        await self._serialise(session, f"inbox:{user_id}")
