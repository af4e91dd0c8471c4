"""The in-app channel: the message becomes an item in the user's inbox, in our own database.

Delivery is immediate and final (DELIVERED), and idempotent on the notification id, so a retried
activity leaves one inbox item, not two. `send_recorded` writes the send ledger's entry and the
delivery row in the item's own transaction (see `tidings.store.inbox_send`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from sqlalchemy.exc import SQLAlchemyError

from tidings.channels.base import (
    OutgoingMessage,
    PermanentChannelError,
    ProviderAcceptance,
    TransientChannelError,
)
from tidings.models import Channel, DeliveryStatus, InboxItem
from tidings.store import Store
from tidings.store.notifications import RecordedSend, SendRecord


def _check(delivery: OutgoingMessage) -> None:
    if delivery.message.channel is not Channel.IN_APP:
        raise PermanentChannelError(
            f"message.channel is {delivery.message.channel.value};"
            " the in-app sender takes in_app only"
        )


def _acceptance(item: InboxItem) -> ProviderAcceptance:
    return ProviderAcceptance(
        status=DeliveryStatus.DELIVERED,
        target=f"inbox:{item.user_id}",
        provider_message_id=str(item.id),
    )


@contextmanager
def _classified() -> Iterator[None]:
    try:
        yield
    except ValueError as e:
        raise PermanentChannelError(str(e)) from e
    except SQLAlchemyError as e:
        # A database that is down or locked may well be back on the next attempt.
        raise TransientChannelError(f"inbox write failed: {type(e).__name__}") from e


class InAppSender:
    channel: Channel = Channel.IN_APP

    def __init__(self, store: Store) -> None:
        self._store = store

    async def send(self, delivery: OutgoingMessage) -> ProviderAcceptance:
        _check(delivery)
        message = delivery.message
        with _classified():
            item = await self._store.add_inbox_item(
                user_id=delivery.user.id,
                notification_id=delivery.notification_id,
                title=message.subject,
                body=message.text,
                category=delivery.category,
            )
        return _acceptance(item)

    async def send_recorded(
        self, delivery: OutgoingMessage, record: Callable[[ProviderAcceptance], SendRecord]
    ) -> tuple[ProviderAcceptance, RecordedSend]:
        _check(delivery)
        message = delivery.message
        with _classified():
            item, recorded = await self._store.deliver_inbox_item(
                user_id=delivery.user.id,
                notification_id=delivery.notification_id,
                title=message.subject,
                body=message.text,
                category=delivery.category,
                record=lambda item: record(_acceptance(item)),
            )
        return _acceptance(item), recorded
