"""Builders shared by the channel tests."""

from __future__ import annotations

from typing import Any

from tidings.channels.base import OutgoingMessage
from tidings.models import Channel, RenderedMessage, User
from tidings.settings import Settings
from tidings.targets import LOOPBACK


def make_settings(**overrides: Any) -> Settings:
    # No .env file: tests must not depend on a developer's local configuration.
    # The receivers and emulators listen on loopback: allowed unless a test says otherwise.
    values: dict[str, Any] = {"webhook_allowed_networks": list(LOOPBACK), **overrides}
    return Settings(_env_file=None, environment="test", **values)


def make_delivery(
    *,
    notification_id: str = "n-1",
    channel: Channel = Channel.EMAIL,
    user: User | None = None,
    subject: str = "Your order shipped",
    text: str = "Order 42 is on its way.",
    html: str | None = "<p>Order <b>42</b> is on its way.</p>",
) -> OutgoingMessage:
    return OutgoingMessage(
        notification_id=notification_id,
        idempotency_key=f"{notification_id}:{channel.value}",
        user=user or User(id="u-1", email="jane@example.com"),
        message=RenderedMessage(channel=channel, subject=subject, text=text, html=html),
    )
