"""The in-app channel: the message becomes an item in the user's inbox, in our own database.

Delivery is immediate and final (DELIVERED), and idempotent on the notification id, so a retried
activity leaves one inbox item, not two.
"""

from __future__ import annotations

from sqlalchemy.exc import SQLAlchemyError

from tidings.channels.base import (
    OutgoingMessage,
    PermanentChannelError,
    ProviderAcceptance,
    TransientChannelError,
)
from tidings.models import Channel, DeliveryStatus
from tidings.store import Store


class InAppSender:
    channel: Channel = Channel.IN_APP

    def __init__(self, store: Store) -> None:
        self._store = store

    async def send(self, delivery: OutgoingMessage) -> ProviderAcceptance:
        message = delivery.message
        if message.channel is not Channel.IN_APP:
            raise PermanentChannelError(
                f"message.channel is {message.channel.value}; the in-app sender takes in_app only"
            )
        try:
            item = await self._store.add_inbox_item(
                user_id=delivery.user.id,
                notification_id=delivery.notification_id,
                title=message.subject,
                body=message.text,
                category=delivery.category,
            )
        except ValueError as e:
            raise PermanentChannelError(str(e)) from e
        except SQLAlchemyError as e:
            # A database that is down or locked may well be back on the next attempt.
            raise TransientChannelError(f"inbox write failed: {type(e).__name__}") from e
        return ProviderAcceptance(
            status=DeliveryStatus.DELIVERED,
            target=f"inbox:{delivery.user.id}",
            provider_message_id=str(item.id),
        )
