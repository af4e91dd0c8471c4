"""The send protocol for one notification on one channel: ledger check, expiry check, sender
lookup, render, send, ledger write.

Failures are typed, never Temporal's: `NotFound` (the user or template has gone), `TemplateError`
(the data does not render), `PermanentChannelError` (expired, no provider, or refused for good),
`RateLimitedError` and `TransientChannelError` (try again later). The caller decides what each
means for retries; this module only promises that a send the ledger holds is never sent again.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from tidings import rendering, tracking
from tidings.channels.base import (
    ChannelSender,
    OutgoingMessage,
    PermanentChannelError,
    ProviderAcceptance,
)
from tidings.errors import NotFound
from tidings.models import Channel, Priority
from tidings.planning import load_template
from tidings.settings import Settings
from tidings.store import LedgerEntry, Store


def ledger_key(notification_id: str, channel: Channel) -> str:
    """The send's idempotency key: business data only, identical on every attempt."""
    return f"{notification_id}:{channel.value}"


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class SendRequest:
    notification_id: str
    channel: Channel
    user_id: str
    template_id: str
    template_version: int
    data: dict[str, Any] = field(default_factory=dict)
    priority: Priority = Priority.MEDIUM
    expires_at: datetime | None = None


@dataclass(frozen=True)
class Sent:
    """The provider's acceptance, and whether it came from the ledger rather than a new send."""

    acceptance: ProviderAcceptance
    duplicate: bool = False


async def send(
    store: Store,
    senders: Mapping[Channel, ChannelSender],
    request: SendRequest,
    *,
    now: Callable[[], datetime] = _utcnow,
    settings: Settings | None = None,
) -> Sent:
    """Send `request` once. With `settings` whose public_base_url is set, an email's links
    become signed click links to that URL's `/t/` and an open pixel is appended, unless the
    template says `tracking: false`."""
    key = ledger_key(request.notification_id, request.channel)
    # A retry after "provider accepted" but before the caller heard of it finds the ledger entry
    # and does not send again. The entry, the user and (for push) the devices: one read.
    push = request.channel is Channel.PUSH
    state = await store.recipient_state(request.user_id, devices=push, ledger_key=key)
    previous = state.ledger
    if previous is not None:
        acceptance = ProviderAcceptance(
            status=previous.status,
            target=previous.target,
            provider_message_id=previous.provider_message_id,
        )
        return Sent(acceptance, duplicate=True)
    if request.expires_at is not None and now() >= request.expires_at:
        raise PermanentChannelError("expired before it could be delivered")
    sender = senders.get(request.channel)
    if sender is None:
        raise PermanentChannelError(f"no {request.channel.value} provider is configured")
    user = state.user
    if user is None:
        raise NotFound("user", request.user_id)
    template = await load_template(store, request.template_id, request.template_version)
    message = await rendering.render_async(
        template, request.channel, request.data, locale=user.locale
    )
    base_url = settings.public_base_url if settings is not None else None
    tracked = request.channel is Channel.EMAIL and template.tracking
    if tracked and base_url and settings is not None:
        message = tracking.track_email(settings, base_url, request.notification_id, message)
    devices = state.devices
    acceptance = await sender.send(
        OutgoingMessage(
            notification_id=request.notification_id,
            idempotency_key=key,
            user=user,
            message=message,
            priority=request.priority,
            expires_at=request.expires_at,
            devices=devices,
        )
    )
    await store.ledger_put(
        LedgerEntry(
            key=key,
            notification_id=request.notification_id,
            channel=request.channel,
            target=acceptance.target,
            status=acceptance.status,
            provider_message_id=acceptance.provider_message_id,
            sent_at=now(),
        )
    )
    return Sent(acceptance)
