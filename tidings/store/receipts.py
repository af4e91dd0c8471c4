"""Applying delivery receipts to the read model."""

from __future__ import annotations

from sqlalchemy import select

from tidings.models import Channel, DeliveryResult, DeliveryStatus
from tidings.receipts import DeliveryReceipt
from tidings.store.base import StoreBase, utcnow
from tidings.store.tables import DeliveryRow


class ReceiptsMixin(StoreBase):
    async def find_by_provider_id(self, channel: Channel, provider_message_id: str) -> str | None:
        """The notification whose `channel` delivery the provider knows as this id."""
        stmt = select(DeliveryRow.notification_id).where(
            DeliveryRow.channel == channel.value,
            DeliveryRow.provider_message_id == provider_message_id,
        )
        async with self._read() as session:
            return await session.scalar(stmt.limit(1))

    async def apply_receipt(self, receipt: DeliveryReceipt) -> DeliveryResult | None:
        """Move the channel from SENT to the receipt's status. None when there is no such
        delivery or it is not SENT (already settled, failed, or never sent): nothing changes."""
        async with self._write() as session:
            row = await session.get(
                DeliveryRow, (receipt.notification_id, receipt.channel.value), with_for_update=True
            )
            if row is None or row.status != DeliveryStatus.SENT.value:
                return None
            row.status = receipt.status.value
            row.reason = receipt.reason
            row.updated_at = utcnow()
            await session.flush()
            return DeliveryResult(
                channel=receipt.channel,
                status=receipt.status,
                reason=receipt.reason,
                target=row.target,
                provider_message_id=row.provider_message_id,
                attempts=row.attempts,
                at=row.at,
            )
