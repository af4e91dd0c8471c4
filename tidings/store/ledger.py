"""The send ledger: a record, written right after a provider accepted a message, that lets a
retried delivery activity see the send already happened and not send twice."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pydantic import AwareDatetime, Field

from tidings.models import Channel, DeliveryStatus, Model
from tidings.store.base import StoreBase, Upsert, rowcount
from tidings.store.tables import LedgerRow


class LedgerEntry(Model):
    key: str = Field(min_length=1, max_length=1024)
    notification_id: str = Field(min_length=1)
    channel: Channel
    target: str
    provider_message_id: str | None = None
    status: DeliveryStatus = DeliveryStatus.SENT
    sent_at: AwareDatetime = Field(default_factory=lambda: datetime.now(UTC))


def _entry(row: LedgerRow) -> LedgerEntry:
    return LedgerEntry(
        key=row.key,
        notification_id=row.notification_id,
        channel=Channel(row.channel),
        target=row.target,
        provider_message_id=row.provider_message_id,
        status=DeliveryStatus(row.status),
        sent_at=row.sent_at,
    )


def _ledger_params(entry: LedgerEntry) -> dict[str, Any]:
    return {
        "key": entry.key,
        "notification_id": entry.notification_id,
        "channel": entry.channel.value,
        "status": entry.status.value,
        "target": entry.target,
        "provider_message_id": entry.provider_message_id,
        "sent_at": entry.sent_at,
    }


class LedgerMixin(StoreBase):
    async def ledger_get(self, key: str) -> LedgerEntry | None:
        async with self._read() as session:
            row = await session.get(LedgerRow, key)
            return None if row is None else _entry(row)

    async def ledger_put(self, entry: LedgerEntry) -> bool:
        """Insert the entry unless its key exists; False (and nothing changed) if it did."""
        async with self._write_conn() as conn:
            return rowcount(await conn.execute(self._ledger_insert(), _ledger_params(entry))) == 1

    def _ledger_insert(self) -> Upsert:
        """Built once per store, values bound by name: every send runs it (see
        `NotificationsMixin._notification_upsert`)."""

        def build() -> Upsert:
            return self._insert(LedgerRow).on_conflict_do_nothing(index_elements=["key"])

        return self._statement("ledger", build)
