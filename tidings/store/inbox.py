"""The in-app inbox: what the in-app channel delivers and the user reads in the app."""

from __future__ import annotations

from sqlalchemy import func, literal, select, update

from tidings.models import InboxItem
from tidings.store.base import StoreBase, check_limit, rowcount, utcnow
from tidings.store.tables import InboxRow, UTCDateTime


def _item(row: InboxRow) -> InboxItem:
    return InboxItem(
        id=row.id,
        user_id=row.user_id,
        notification_id=row.notification_id,
        title=row.title,
        body=row.body,
        created_at=row.created_at,
        read_at=row.read_at,
    )


class InboxMixin(StoreBase):
    async def add_inbox_item(
        self, *, user_id: str, notification_id: str, title: str, body: str
    ) -> InboxItem:
        """One item per notification: adding it again returns the item already there, so a
        retried in-app send shows the user one message, not two."""
        stmt = self._insert(InboxRow).values(
            user_id=user_id,
            notification_id=notification_id,
            title=title,
            body=body,
            created_at=utcnow(),
        )
        stmt = stmt.on_conflict_do_nothing(index_elements=["notification_id"])
        async with self._write() as session:
            await session.execute(stmt)
            row = await session.scalar(
                select(InboxRow).where(InboxRow.notification_id == notification_id)
            )
            if row is None:  # only if the row vanished between two statements of one transaction
                raise RuntimeError(f"inbox item for notification {notification_id} not stored")
            if row.user_id != user_id:
                raise ValueError(
                    f"notification_id: {notification_id} already has an inbox item for another user"
                )
            return _item(row)

    async def list_inbox(
        self, user_id: str, *, unread_only: bool = False, limit: int = 50
    ) -> list[InboxItem]:
        """Newest first."""
        check_limit(limit)
        stmt = (
            select(InboxRow)
            .where(InboxRow.user_id == user_id)
            .order_by(InboxRow.id.desc())
            .limit(limit)
        )
        if unread_only:
            stmt = stmt.where(InboxRow.read_at.is_(None))
        async with self._read() as session:
            return [_item(row) for row in (await session.scalars(stmt)).all()]

    async def mark_read(self, user_id: str, item_id: int) -> bool:
        """Mark one of this user's items read (keeping the first read time if it already was);
        False if the user has no such item."""
        stmt = (
            update(InboxRow)
            .where(InboxRow.id == item_id, InboxRow.user_id == user_id)
            .values(read_at=func.coalesce(InboxRow.read_at, literal(utcnow(), UTCDateTime())))
            .execution_options(synchronize_session=False)
        )
        async with self._write() as session:
            return rowcount(await session.execute(stmt)) == 1

    async def mark_all_read(self, user_id: str) -> int:
        stmt = (
            update(InboxRow)
            .where(InboxRow.user_id == user_id, InboxRow.read_at.is_(None))
            .values(read_at=utcnow())
            .execution_options(synchronize_session=False)
        )
        async with self._write() as session:
            return rowcount(await session.execute(stmt))
