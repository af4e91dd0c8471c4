"""An in-app delivery in ONE transaction: the inbox item, the send ledger's entry and the
channel's delivery row (and, when asked, the notification's final status).

The in-app channel's send is itself a write to this database, so nothing outside it has to
happen between the item and its record. Written as two transactions (the item, then the ledger
with the row), a crash between them left an item without its ledger entry, and each cost a BEGIN,
a commit and a turn in the writer queue, every statement several hops to aiosqlite's thread.
"""

from __future__ import annotations

from collections.abc import Callable

from tidings.models import InboxItem
from tidings.store import inbox_wake
from tidings.store.inbox import InboxMixin
from tidings.store.notifications import NotificationsMixin, RecordedSend, SendRecord


class InboxSendMixin(NotificationsMixin, InboxMixin):
    async def deliver_inbox_item(
        self,
        *,
        user_id: str,
        notification_id: str,
        title: str,
        body: str,
        category: str | None = None,
        record: Callable[[InboxItem], SendRecord],
    ) -> tuple[InboxItem, RecordedSend]:
        """`add_inbox_item`, then `record_send` of what `record` makes of the item (its id is
        the provider's message id), in one transaction: either all of it is written or none.
        An item already there (a retry) is returned as it is, and its ledger entry, if written
        before, left alone (`RecordedSend.new` is False)."""
        async with self._write_conn() as conn:
            item, inserted = await self._add_item(
                conn, user_id, notification_id, title, body, category
            )
            recorded = await self._record_send(conn, record(item))
        if inserted:
            inbox_wake.poke(user_id)
        return item, recorded
