"""Broadcasts' recipients: each recipient's send claimed before it happens, its outcome per
channel written after, and the in-app channel's inbox items written with their record."""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

from pydantic import BaseModel
from sqlalchemy import Table, func, select
from sqlalchemy.dialects import postgresql, sqlite

from tidings.broadcast_models import Outcome, RecipientStatus
from tidings.models import Channel
from tidings.store.base import StoreBase, Upsert, check_limit, utcnow
from tidings.store.tables import BroadcastRecipientRow, InboxRow


class RecipientRecord(BaseModel):
    user_id: str
    channel: Channel
    status: RecipientStatus
    batch: int
    target: str | None = None
    provider_message_id: str | None = None
    error: str | None = None


_RECIPIENTS = cast(Table, BroadcastRecipientRow.__table__)
_INBOX = cast(Table, InboxRow.__table__)


class BroadcastRecipientsMixin(StoreBase):
    def _insert_many(self, table: Table) -> Upsert:
        """A Core INSERT for executemany: compiled once and cached, where a multi-row VALUES
        built per call costs more to compile than to run."""
        if self.engine.dialect.name == "postgresql":
            return postgresql.insert(table)
        return sqlite.insert(table)

    def _upsert_recipients(self) -> Upsert:
        stmt = self._insert_many(_RECIPIENTS)
        return stmt.on_conflict_do_update(
            index_elements=["broadcast_id", "user_id", "channel"],
            set_={
                "status": stmt.excluded.status,
                "batch": stmt.excluded.batch,
                "target": stmt.excluded.target,
                "provider_message_id": stmt.excluded.provider_message_id,
                "error": stmt.excluded.error,
                "updated_at": stmt.excluded.updated_at,
            },
        )

    async def claim_recipients(
        self, broadcast_id: str, channel: Channel, batch: int, user_ids: Sequence[str]
    ) -> dict[str, RecipientStatus]:
        """Claim each recipient's send before it happens (a row in CLAIMED unless one exists)
        and return every recipient's status after the claim: a retried batch sends only those
        still CLAIMED."""
        if not user_ids:
            return {}
        now = utcnow()
        rows = [
            {
                "broadcast_id": broadcast_id,
                "user_id": u,
                "channel": channel.value,
                "status": RecipientStatus.CLAIMED.value,
                "batch": batch,
                "target": None,
                "provider_message_id": None,
                "error": None,
                "updated_at": now,
            }
            for u in user_ids
        ]
        stmt = self._insert_many(_RECIPIENTS).on_conflict_do_nothing(
            index_elements=["broadcast_id", "user_id", "channel"]
        )
        read = select(BroadcastRecipientRow.user_id, BroadcastRecipientRow.status).where(
            BroadcastRecipientRow.broadcast_id == broadcast_id,
            BroadcastRecipientRow.channel == channel.value,
            BroadcastRecipientRow.user_id.in_(list(user_ids)),
        )
        async with self._write() as session:
            await (await session.connection()).execute(stmt, rows)
            found = (await session.execute(read)).all()
        return {user_id: RecipientStatus(status) for user_id, status in found}

    async def record_recipients(
        self,
        broadcast_id: str,
        channel: Channel,
        batch: int,
        outcomes: Sequence[Outcome],
    ) -> None:
        """Write each recipient's outcome on `channel` (one statement for all of them)."""
        if not outcomes:
            return
        now = utcnow()
        rows = [
            {
                "broadcast_id": broadcast_id,
                "user_id": o.user_id,
                "channel": channel.value,
                "status": o.status.value,
                "batch": batch,
                "target": o.target,
                "provider_message_id": o.provider_message_id,
                "error": o.error,
                "updated_at": now,
            }
            for o in outcomes
        ]
        async with self._write() as session:
            await (await session.connection()).execute(self._upsert_recipients(), rows)

    async def broadcast_recipients(
        self, broadcast_id: str, *, after: tuple[str, str] = ("", ""), limit: int = 100
    ) -> list[RecipientRecord]:
        """Recipients' outcomes in (user, channel) order, a keyset page after `after`."""
        check_limit(limit)
        r = BroadcastRecipientRow
        user, channel = after
        stmt = (
            select(r)
            .where(
                r.broadcast_id == broadcast_id,
                (r.user_id > user) | ((r.user_id == user) & (r.channel > channel)),
            )
            .order_by(r.user_id, r.channel)
            .limit(limit)
        )
        async with self._read() as session:
            return [
                RecipientRecord(
                    user_id=row.user_id,
                    channel=Channel(row.channel),
                    status=RecipientStatus(row.status),
                    batch=row.batch,
                    target=row.target,
                    provider_message_id=row.provider_message_id,
                    error=row.error,
                )
                for row in await session.scalars(stmt)
            ]

    async def broadcast_status_counts(self, broadcast_id: str) -> dict[tuple[Channel, str], int]:
        r = BroadcastRecipientRow
        stmt = (
            select(r.channel, r.status, func.count())
            .where(r.broadcast_id == broadcast_id)
            .group_by(r.channel, r.status)
        )
        async with self._read() as session:
            rows = (await session.execute(stmt)).all()
        return {(Channel(c), s): int(n) for c, s, n in rows}

    async def deliver_in_app(
        self, broadcast_id: str, batch: int, items: Sequence[tuple[str, str, str, str]]
    ) -> dict[str, int]:
        """Put each (user, notification id, title, body) in the user's inbox and record the
        recipient DELIVERED, in one transaction: the in-app send and its record cannot part,
        so a retried batch has nothing in doubt. An item already there (keyed by notification
        id) is kept. Returns each user's inbox item id."""
        if not items:
            return {}
        now = utcnow()
        inbox_rows = [
            {
                "user_id": user_id,
                "notification_id": nid,
                "title": title,
                "body": body,
                "created_at": now,
                "read_at": None,
            }
            for user_id, nid, title, body in items
        ]
        insert_items = self._insert_many(_INBOX).on_conflict_do_nothing(
            index_elements=["notification_id"]
        )
        by_nid = {nid: user_id for user_id, nid, _, _ in items}
        read_ids = select(InboxRow.notification_id, InboxRow.id).where(
            InboxRow.notification_id.in_(list(by_nid))
        )
        async with self._write() as session:
            conn = await session.connection()
            await conn.execute(insert_items, inbox_rows)
            ids = {by_nid[nid]: item_id for nid, item_id in (await conn.execute(read_ids)).all()}
            await conn.execute(
                self._upsert_recipients(),
                [
                    {
                        "broadcast_id": broadcast_id,
                        "user_id": user_id,
                        "channel": Channel.IN_APP.value,
                        "status": RecipientStatus.DELIVERED.value,
                        "batch": batch,
                        "target": f"inbox:{user_id}",
                        "provider_message_id": str(item_id),
                        "error": None,
                        "updated_at": now,
                    }
                    for user_id, item_id in ids.items()
                ],
            )
        return ids
