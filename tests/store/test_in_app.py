from __future__ import annotations

import pytest

from tidings.channels.base import OutgoingMessage, PermanentChannelError
from tidings.channels.in_app import InAppSender
from tidings.models import Channel, DeliveryStatus, RenderedMessage, User
from tidings.store import Store


def delivery(
    user: User, notification_id: str = "n-1", channel: Channel = Channel.IN_APP
) -> OutgoingMessage:
    return OutgoingMessage(
        notification_id=notification_id,
        idempotency_key=f"{notification_id}:in_app",
        user=user,
        message=RenderedMessage(channel=channel, subject="Welcome", text="Glad you're here"),
    )


async def test_send_puts_one_item_in_the_users_inbox(store: Store, user: User) -> None:
    sender = InAppSender(store)
    assert sender.channel is Channel.IN_APP
    outcome = await sender.send(delivery(user))
    assert outcome.status is DeliveryStatus.DELIVERED
    assert outcome.target == f"inbox:{user.id}"
    [item] = await store.list_inbox(user.id)
    assert (item.title, item.body, item.notification_id) == ("Welcome", "Glad you're here", "n-1")
    assert outcome.provider_message_id == str(item.id)

    # A retried send finds the same item instead of adding another.
    again = await sender.send(delivery(user))
    assert again == outcome
    assert len(await store.list_inbox(user.id)) == 1


async def test_send_refuses_a_message_for_another_channel(store: Store, user: User) -> None:
    with pytest.raises(PermanentChannelError, match="in_app"):
        await InAppSender(store).send(delivery(user, channel=Channel.EMAIL))
    assert await store.list_inbox(user.id) == []


async def test_send_refuses_a_notification_already_in_another_inbox(
    store: Store, user: User
) -> None:
    other = await store.upsert_user(User(id="bob"))
    await InAppSender(store).send(delivery(user))
    with pytest.raises(PermanentChannelError, match="another user"):
        await InAppSender(store).send(delivery(other))
    assert await store.list_inbox(other.id) == []
