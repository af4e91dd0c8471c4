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

from tidings import rendering, tracking, unsubscribe
from tidings.channels.base import (
    ChannelSender,
    OutgoingMessage,
    PermanentChannelError,
    ProviderAcceptance,
    SelfRecordingSender,
)
from tidings.errors import NotFound
from tidings.models import Channel, ChannelResult, NotificationStatus, Priority, RenderedMessage
from tidings.planning import load_template
from tidings.settings import Settings
from tidings.store import LedgerEntry, Store
from tidings.store.notifications import SendRecord


def ledger_key(notification_id: str, channel: Channel) -> str:
    """The send's idempotency key: business data only, identical on every attempt."""
    return f"{notification_id}:{channel.value}"


# The data fields a push takes as where a tap leads, first found wins.
LINK_FIELDS = ("url", "link")


def _link(data: Mapping[str, Any]) -> str | None:
    for name in LINK_FIELDS:
        value = data.get(name)
        if isinstance(value, str) and value:
            return value
    return None


def _track(
    settings: Settings,
    base_url: str,
    request: SendRequest,
    message: RenderedMessage,
    link: str | None,
) -> tuple[RenderedMessage, str | None]:
    """The message (and push link) as they go out with tracking on: email gets click links in
    both parts and an open pixel; SMS and Slack their text's URLs as click links; push its
    link. Webhook and in-app are sent as rendered (the app reports what the user did)."""
    nid, channel = request.notification_id, request.channel
    if channel is Channel.EMAIL:
        return tracking.track_email(settings, base_url, nid, message), link
    if channel in (Channel.SMS, Channel.SLACK):
        return tracking.track_links(settings, base_url, nid, message), link
    if link is not None:
        link = tracking.track_url(settings, base_url, nid, channel, link)
    return rendering.tracking_free(message), link


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
    # The instant the send happens on the run's clock (the activity's scheduled time); the
    # greeting and time of day are for it. None: the `now` given to `send`.
    render_at: datetime | None = None
    # Set (to the attempt's number): the channel's delivery row is written with the ledger
    # entry, in its transaction. None: the ledger entry alone (the caller records the channel).
    record_attempt: int | None = None
    # With `record_attempt`: that transaction also writes the notification's final status when
    # this channel is the last to land (`Store.record_send`), so the run needs no final record.
    finish: bool = False


@dataclass(frozen=True)
class Sent:
    """The provider's acceptance, and whether it came from the ledger rather than a new send."""

    acceptance: ProviderAcceptance
    duplicate: bool = False
    # The notification's final status, when this send's transaction wrote it (or found it
    # written); None when it did not, or was not asked to.
    final_status: NotificationStatus | None = None


async def send(
    store: Store,
    senders: Mapping[Channel, ChannelSender],
    request: SendRequest,
    *,
    now: Callable[[], datetime] = _utcnow,
    settings: Settings | None = None,
) -> Sent:
    """Send `request` once. With `settings` whose public_base_url is set, links become signed
    click links to that URL's `/t/` (see `_track`), unless the template says `tracking: false`;
    and a non-CRITICAL email carries a one-click unsubscribe URL, which templates read as
    `unsubscribe_url`."""
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
        final = None
        if request.finish and request.record_attempt is not None:
            # The attempt that sent wrote the row; it may have died before the run heard of
            # it, and the final status may be written by now (or be this retry's to write).
            final = await store.finish_if_last(request.notification_id)
        return Sent(acceptance, duplicate=True, final_status=final)
    if request.expires_at is not None and now() >= request.expires_at:
        raise PermanentChannelError("expired before it could be delivered")
    sender = senders.get(request.channel)
    if sender is None:
        raise PermanentChannelError(f"no {request.channel.value} provider is configured")
    user = state.user
    if user is None:
        raise NotFound("user", request.user_id)
    template = await load_template(store, request.template_id, request.template_version)
    unsubscribe_url = (
        unsubscribe.unsubscribe_url(settings, user.id, template.category, priority=request.priority)
        if settings is not None
        else None
    )
    # The unsubscribe URL is never itself tracked; a caller's `unsubscribe_url` is overridden.
    data = {
        **request.data,
        rendering.UNSUBSCRIBE_VARIABLE: tracking.mark_untracked(unsubscribe_url or ""),
    }
    message = await rendering.render_async(
        template,
        request.channel,
        data,
        locale=user.locale,
        user=user,
        at=request.render_at or now(),  # the greeting is for the moment it is sent
        keep_marks=True,
    )
    base_url = settings.public_base_url if settings is not None else None
    link = _link(request.data) if request.channel is Channel.PUSH else None
    if template.tracking and base_url and settings is not None:
        message, link = _track(settings, base_url, request, message, link)
    else:
        message = rendering.tracking_free(message)
    outgoing = OutgoingMessage(
        notification_id=request.notification_id,
        idempotency_key=key,
        user=user,
        message=message,
        priority=request.priority,
        expires_at=request.expires_at,
        devices=state.devices,
        link=link,
        unsubscribe_url=unsubscribe_url if request.channel is Channel.EMAIL else None,
        category=template.category,
    )

    def record(acceptance: ProviderAcceptance) -> SendRecord:
        return _send_record(request, key, acceptance, now())

    if isinstance(sender, SelfRecordingSender):
        # In-app: the item, its ledger entry and its row in one transaction.
        acceptance, recorded = await sender.send_recorded(outgoing, record)
        return Sent(acceptance, final_status=recorded.final_status)
    acceptance = await sender.send(outgoing)
    made = record(acceptance)
    if made.result is None:
        await store.ledger_put(made.entry)
        return Sent(acceptance)
    recorded = await store.record_send(made.entry, made.result, finish=made.finish)
    return Sent(acceptance, final_status=recorded.final_status)


def _send_record(
    request: SendRequest, key: str, acceptance: ProviderAcceptance, sent_at: datetime
) -> SendRecord:
    """The ledger entry of an accepted send and, with `record_attempt`, its delivery row."""
    entry = LedgerEntry(
        key=key,
        notification_id=request.notification_id,
        channel=request.channel,
        target=acceptance.target,
        status=acceptance.status,
        provider_message_id=acceptance.provider_message_id,
        sent_at=sent_at,
    )
    if request.record_attempt is None:
        return SendRecord(entry)
    result = ChannelResult(
        channel=request.channel,
        status=acceptance.status,
        target=acceptance.target,
        provider_message_id=acceptance.provider_message_id,
        attempts=request.record_attempt,
        # On the run's clock (the engagement window is counted from it): the attempt's
        # scheduled time. Runs before LEAN_RECORDS_PATCH overwrote it with the instant the
        # run heard back; newer ones leave this row as it is.
        at=request.render_at or entry.sent_at,
    )
    return SendRecord(entry, result, finish=request.finish)
