"""The small interface every channel implements, and the typed errors it raises.

A sender is built once per process with its long-lived clients (httpx, SMTP settings, store) and
asked to `send` one rendered message to one user. It returns what the provider accepted or raises
one of the three errors below; it never swallows a failure. The activity layer maps the errors to
Temporal retry behaviour: permanent -> non-retryable, rate limited -> retry after the provider's
delay, transient -> retry with the channel's backoff.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from tidings.models import Channel, DeliveryStatus, Device, Priority, RenderedMessage, User

if TYPE_CHECKING:
    from tidings.store.notifications import RecordedSend, SendRecord


class ChannelError(Exception):
    """A send that did not happen. `reason` is safe to show and store (no secrets)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class PermanentChannelError(ChannelError):
    """Retrying cannot help: bad address, rejected credentials, 4xx other than 429."""


class TransientChannelError(ChannelError):
    """May succeed later: connection errors, timeouts, 5xx."""


class RateLimitedError(TransientChannelError):
    """The provider asked us to slow down; retry after `retry_after` seconds when it said so."""

    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.retry_after = retry_after


@dataclass(frozen=True)
class OutgoingMessage:
    """What a channel sender is handed: one rendered message for one user on one channel."""

    notification_id: str
    # Built from business data (notification id + channel), never from the attempt number, so
    # every retry of the same send carries the same key.
    idempotency_key: str
    user: User
    message: RenderedMessage
    priority: Priority = Priority.MEDIUM
    expires_at: datetime | None = None
    devices: list[Device] = field(default_factory=list)
    # Where tapping a push takes the user (the data's `url` or `link`, tracked when tracking is
    # on); None when there is none.
    link: str | None = None
    # The one-click unsubscribe URL (email's List-Unsubscribe); None for CRITICAL notifications.
    unsubscribe_url: str | None = None
    # The template's category, which the in-app item keeps (None: the store looks it up).
    category: str | None = None


@dataclass(frozen=True)
class ProviderAcceptance:
    """What the provider answered when it took the message (a refusal is an error instead)."""

    status: DeliveryStatus  # SENT (accepted by a relay) or DELIVERED (reached the endpoint)
    target: str  # masked address or endpoint for the record, e.g. "j***@example.com"
    provider_message_id: str | None = None


class ChannelSender(Protocol):
    channel: Channel

    async def send(self, delivery: OutgoingMessage) -> ProviderAcceptance: ...


@runtime_checkable
class SelfRecordingSender(ChannelSender, Protocol):
    """A sender whose send is itself a write to Tidings' own database (in-app): it also writes
    what `record` makes of its acceptance (the send ledger's entry, the delivery row) in that
    write's transaction, so there is no send without its record and no extra transaction."""

    async def send_recorded(
        self, delivery: OutgoingMessage, record: Callable[[ProviderAcceptance], SendRecord]
    ) -> tuple[ProviderAcceptance, RecordedSend]: ...


async def close_all(senders: Iterable[ChannelSender]) -> None:
    """Senders that own connections (APNs' HTTP/2 client, email's SMTP pool) close them."""
    for sender in senders:
        aclose = getattr(sender, "aclose", None)
        if aclose is not None:
            await aclose()


def mask_email(address: str) -> str:
    local, _, domain = address.partition("@")
    return f"{local[:1]}***@{domain}"
