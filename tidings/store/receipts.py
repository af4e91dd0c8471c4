"""Applying delivery receipts to the read model.

A receipt can beat the workflow: the provider accepts, calls back at once, and only then does
the deliver activity's result reach the database. So sends are found through the send ledger
(written the moment the provider accepted), and a receipt for a send the read model has not
caught up with settles the channel's row itself; the later `sent` does not undo it (see
`_put_delivery`).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from tidings.models import Channel, ChannelResult, DeliveryStatus
from tidings.receipts import DeliveryReceipt
from tidings.store.base import StoreBase, utcnow
from tidings.store.tables import DeliveryRow, LedgerRow

# Channel rows a receipt may settle: sent, or still on their way in the read model.
_OPEN = (DeliveryStatus.SCHEDULED.value, DeliveryStatus.SENDING.value, DeliveryStatus.SENT.value)


class ReceiptsMixin(StoreBase):
    async def find_by_provider_id(self, channel: Channel, provider_message_id: str) -> str | None:
        """The notification whose `channel` send the provider knows as this id."""
        stmt = select(LedgerRow.notification_id).where(
            LedgerRow.channel == channel.value,
            LedgerRow.provider_message_id == provider_message_id,
        )
        async with self._read() as session:
            return await session.scalar(stmt.limit(1))

    async def apply_receipt(self, receipt: DeliveryReceipt) -> ChannelResult | None:
        """Move the channel from SENT to the receipt's status. None when nothing was sent on
        that channel or it is settled already (delivered, failed): nothing changes."""
        key = (receipt.notification_id, receipt.channel.value)
        async with self._write() as session:
            row = await session.get(DeliveryRow, key, with_for_update=True)
            ledger = await session.scalar(
                select(LedgerRow).where(
                    LedgerRow.notification_id == receipt.notification_id,
                    LedgerRow.channel == receipt.channel.value,
                )
            )
            sent = row is not None and row.status == DeliveryStatus.SENT.value
            in_flight = ledger is not None and (row is None or row.status in _OPEN)
            if not (sent or in_flight):
                return None
            values: dict[str, Any] = {
                "status": receipt.status.value,
                "reason": receipt.reason,
                "updated_at": utcnow(),
            }
            if row is None:
                assert ledger is not None
                row = DeliveryRow(
                    notification_id=receipt.notification_id,
                    channel=receipt.channel.value,
                    target=ledger.target,
                    provider_message_id=ledger.provider_message_id,
                    attempts=0,
                    at=ledger.sent_at,
                    **values,
                )
                session.add(row)
            else:
                for name, value in values.items():
                    setattr(row, name, value)
                if ledger is not None:
                    row.target = row.target or ledger.target
                    row.provider_message_id = row.provider_message_id or ledger.provider_message_id
                    row.at = row.at or ledger.sent_at
            await session.flush()
            return ChannelResult(
                channel=receipt.channel,
                status=receipt.status,
                reason=receipt.reason,
                target=row.target,
                provider_message_id=row.provider_message_id,
                attempts=row.attempts,
                at=row.at,
            )
