"""Pieces shared by the FCM and APNs clients and the push sender that dispatches between them."""

from __future__ import annotations

import hashlib
import json
from typing import Any, Protocol

from tidings.channels.base import OutgoingMessage, PermanentChannelError

# Both FCM and APNs refuse a notification payload over 4 KiB.
MAX_PUSH_PAYLOAD_BYTES = 4096


class InvalidTokenError(PermanentChannelError):
    """The provider says this device token is dead (app uninstalled, token rotated or
    malformed): the token is removed and the user's other devices still get the message."""


class PushClient(Protocol):
    name: str

    async def send_to(self, delivery: OutgoingMessage, token: str) -> str:
        """Send to one device; returns the provider's message id or raises a ChannelError."""
        ...

    async def aclose(self) -> None: ...


def data_payload(delivery: OutgoingMessage) -> dict[str, str]:
    """What the app gets beside the visible notification (strings only, as FCM requires):
    `tidings_notification_id` to report `opened` with (`POST /v1/notifications/{id}/events`),
    and `url`, where a tap should lead (a tracked link when tracking is on). The older
    `notification_id` key stays for apps that read it."""
    data = {
        "notification_id": delivery.notification_id,
        "tidings_notification_id": delivery.notification_id,
        "priority": delivery.priority.value,
    }
    if delivery.link:
        data["url"] = delivery.link
    return data


def mask_token(token: str) -> str:
    return token[:6] + "…"


def check_payload_size(provider: str, payload: dict[str, Any]) -> None:
    size = len(json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode())
    if size > MAX_PUSH_PAYLOAD_BYTES:
        raise PermanentChannelError(
            f"{provider} payload is {size} bytes; the limit is {MAX_PUSH_PAYLOAD_BYTES}"
            " (shorten the push title/body)"
        )


def collapse_id(notification_id: str, limit: int = 64) -> str:
    """A per-notification id short enough for the provider: a duplicate send of the same
    notification then replaces the one on screen instead of showing twice."""
    if len(notification_id.encode()) <= limit:
        return notification_id
    return "sha256-" + hashlib.sha256(notification_id.encode()).hexdigest()[: limit - 7]
