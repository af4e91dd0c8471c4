"""Broadcasts: one template to many users, planned and delivered a page at a time.

A broadcast never runs one workflow per recipient (the server's start rate bounds that near the
trivial-workflow ceiling). Instead `plan_page` applies each recipient's preferences, quiet hours
and frequency caps to a whole page with the same pure policy a single notification uses
(`tidings.planning.plan`), and `deliver_batch` sends the page's sendable recipients on one
channel with bounded concurrency, claiming each recipient in `broadcast_recipients` before the
send so a retried batch skips every recipient whose send was recorded.

Nothing here imports temporalio: the activities in `activities/broadcast.py` adapt it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from tidings import frequency, planning, rendering
from tidings.broadcast_models import (
    DONE,
    BroadcastCounters,
    Outcome,
    RecipientStatus,
    notification_id,
)
from tidings.channels.base import (
    ChannelSender,
    OutgoingMessage,
    PermanentChannelError,
    ProviderAcceptance,
)
from tidings.channels.in_app import InAppSender
from tidings.errors import NotFound
from tidings.frequency import FrequencyCaps
from tidings.models import Channel, Preferences, Priority, RenderedMessage, Template, User
from tidings.store import Store
from tidings.store.broadcast_audience import PageReads

DEFAULT_PAGE_SIZE = 500


@dataclass(frozen=True)
class PageRecipient:
    user: User
    preferences: Preferences
    has_devices: bool
    recent: planning.RecentSends | None


@dataclass
class PagePlan:
    sendable: dict[Channel, list[str]] = field(default_factory=dict)
    # user, the channels it will go on, until when, why
    deferred: list[tuple[str, list[Channel], datetime, str]] = field(default_factory=list)
    suppressed: list[tuple[str, Channel, str]] = field(default_factory=list)  # user, channel, why
    counters: BroadcastCounters = field(default_factory=BroadcastCounters)


def plan_page(
    *,
    broadcast_id: str,
    recipients: Sequence[PageRecipient],
    template: Template,
    channels: list[Channel] | None,
    priority: Priority,
    now: datetime,
    configured: Collection[Channel],
    caps: FrequencyCaps,
) -> PagePlan:
    """Plan a page with the single notification's policy, recipient by recipient (pure)."""
    result = PagePlan()
    counters = result.counters
    for r in recipients:
        counters.recipients += 1
        plan = planning.plan(
            request=planning.PlanRequest(
                notification_id=notification_id(broadcast_id, r.user.id),
                user_id=r.user.id,
                template_id=template.id,
                template_version=template.version,
                priority=priority,
                not_before=now,
                requested_channels=channels,
            ),
            user=r.user,
            template=template,
            preferences=r.preferences,
            has_devices=r.has_devices,
            configured=configured,
            caps=caps,
            recent=r.recent,
        )
        for channel, reason in plan.suppressed.items():
            counters.channel(channel).targeted += 1
            counters.channel(channel).suppressed += 1
            result.suppressed.append((r.user.id, channel, reason))
        if not plan.channels:
            continue
        if plan.send_at > now:
            for channel in plan.channels:
                counters.channel(channel).targeted += 1
                counters.channel(channel).deferred += 1
            result.deferred.append(
                (r.user.id, list(plan.channels), plan.send_at, plan.deferred_reason or "later")
            )
            continue
        for channel in plan.channels:
            counters.channel(channel).targeted += 1
            result.sendable.setdefault(channel, []).append(r.user.id)
    return result


def cap_window_start(now: datetime) -> datetime:
    return now - frequency.WINDOW


def _no_preferences(user_id: str) -> Preferences:
    """The defaults for a user without a preferences row, unvalidated: the id comes from the
    users table and validating it per recipient was a measurable share of planning a page."""
    return Preferences.model_construct(
        user_id=user_id, channels={}, categories={}, templates={}, quiet_hours=None
    )


def recipients_from(reads: PageReads, *, caps_apply: bool) -> list[PageRecipient]:
    """Join the page's bulk reads into one record per user, in id order."""
    return [
        PageRecipient(
            user=user,
            preferences=reads.preferences.get(user.id) or _no_preferences(user.id),
            has_devices=user.id in reads.with_devices,
            recent=planning.RecentSends(*reads.recent.get(user.id, (0, None)))
            if caps_apply
            else None,
        )
        for user in reads.users
    ]


class RateLimiter:
    """Paces sends to `per_second` inside one batch: the task queue's activity rate limit counts
    batches, not the messages in them."""

    def __init__(self, per_second: float | None) -> None:
        self._interval = 1.0 / per_second if per_second else 0.0
        self._next = time.monotonic()
        self._lock = asyncio.Lock()

    async def wait(self) -> None:
        if not self._interval:
            return
        async with self._lock:
            now = time.monotonic()
            delay = self._next - now
            self._next = max(now, self._next) + self._interval
        if delay > 0:
            await asyncio.sleep(delay)


async def send_one(
    *,
    broadcast_id: str,
    user: User,
    template: Template,
    channel: Channel,
    data: Mapping[str, Any],
    priority: Priority,
    sender: ChannelSender,
    devices: Callable[[str], Awaitable[list[Any]]],
) -> Outcome:
    """Render and send to one recipient; a failure is this recipient's outcome, never the
    batch's (transient errors included: the provider was already retried by the sender's own
    client, and one bad address must not hold up 499 good ones)."""
    nid = notification_id(broadcast_id, user.id)
    try:
        message = await rendering.render_async(template, channel, dict(data), locale=user.locale)
        acceptance: ProviderAcceptance = await sender.send(
            OutgoingMessage(
                notification_id=nid,
                idempotency_key=f"{nid}:{channel.value}",
                user=user,
                message=message,
                priority=priority,
                devices=await devices(user.id) if channel is Channel.PUSH else [],
            )
        )
    except (PermanentChannelError, rendering.TemplateError) as e:
        return Outcome(user.id, RecipientStatus.FAILED, error=str(e)[:500])
    except Exception as e:
        return Outcome(user.id, RecipientStatus.FAILED, error=f"{type(e).__name__}: {e}"[:500])
    status = (
        RecipientStatus.DELIVERED
        if acceptance.status.value == RecipientStatus.DELIVERED.value
        else RecipientStatus.SENT
    )
    return Outcome(
        user.id,
        status,
        target=acceptance.target,
        provider_message_id=acceptance.provider_message_id,
    )


async def send_all(
    items: Sequence[Callable[[], Awaitable[Outcome]]],
    *,
    concurrency: int,
    limiter: RateLimiter,
    on_done: Callable[[int, Outcome], Awaitable[None]],
) -> None:
    """Run the sends with at most `concurrency` in flight, reporting each as it lands."""
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(len(items)):
        queue.put_nowait(i)

    async def worker() -> None:
        while True:
            try:
                i = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            await limiter.wait()
            await on_done(i, await items[i]())

    # A TaskGroup, so a failure (a lost database) stops the other sends at once rather than
    # letting them go on unrecorded after the attempt has failed.
    async with asyncio.TaskGroup() as group:
        for _ in range(max(1, min(concurrency, len(items)))):
            group.create_task(worker())


@dataclass(frozen=True)
class BatchRequest:
    broadcast_id: str
    channel: Channel
    batch: int
    user_ids: Sequence[str]
    template_id: str
    template_version: int
    data: Mapping[str, Any]
    priority: Priority = Priority.MEDIUM
    concurrency: int = 20


@dataclass
class BatchResult:
    sent: int = 0
    failed: int = 0
    already_done: int = 0  # recorded by an earlier attempt: counted, not sent again

    def count(self, status: RecipientStatus) -> None:
        if status is RecipientStatus.FAILED:
            self.failed += 1
        elif status in DONE:
            self.sent += 1


class _Progress:
    """Outcomes buffered and written in one statement every `every` sends; after each write the
    caller hears the index below which every recipient is recorded."""

    def __init__(
        self,
        store: Store,
        request: BatchRequest,
        on_progress: Callable[[int], Awaitable[None]],
        every: int,
        done: list[bool],
    ) -> None:
        self._store, self._request, self._on_progress = store, request, on_progress
        self._every, self._done = every, done
        self._buffer: list[tuple[int, Outcome]] = []
        self._lock = asyncio.Lock()
        self._reached = 0

    def mark(self, index: int) -> None:
        """A recipient recorded by the caller itself."""
        self._done[index] = True

    async def add(self, index: int, outcome: Outcome) -> None:
        self._buffer.append((index, outcome))
        if len(self._buffer) >= self._every:
            await self.flush()

    async def flush(self) -> None:
        async with self._lock:
            pending, self._buffer = self._buffer, []
            if pending:
                r = self._request
                await self._store.record_recipients(
                    r.broadcast_id, r.channel, r.batch, [o for _, o in pending]
                )
                for i, _ in pending:
                    self._done[i] = True
            while self._reached < len(self._done) and self._done[self._reached]:
                self._reached += 1
            await self._on_progress(self._reached)


async def deliver_batch(
    store: Store,
    sender: ChannelSender,
    request: BatchRequest,
    *,
    limiter: RateLimiter,
    on_progress: Callable[[int], Awaitable[None]],
    flush_every: int = 100,
) -> BatchResult:
    """Send one page on one channel. Each recipient is claimed in `broadcast_recipients` before
    any send; a recipient an earlier attempt recorded as sent, delivered or failed is counted
    and skipped. A recipient still CLAIMED (the attempt died between the send and its record)
    is sent again under the same notification id: the same email Message-ID, the same inbox
    item (in-app is idempotent on it). That in-doubt window is at most `flush_every` sends."""
    result = BatchResult()
    statuses = await store.claim_recipients(
        request.broadcast_id, request.channel, request.batch, request.user_ids
    )
    template = await store.get_template(request.template_id, request.template_version)
    if template is None:
        raise NotFound("template", f"{request.template_id} version {request.template_version}")
    done = [False] * len(request.user_ids)
    todo: list[int] = []
    for i, user_id in enumerate(request.user_ids):
        status = statuses.get(user_id, RecipientStatus.CLAIMED)
        if status in DONE:
            done[i] = True
            result.already_done += 1
            result.count(status)
        elif status in (RecipientStatus.DEFERRED, RecipientStatus.SUPPRESSED):
            # A page planned twice (see BroadcastWorkflow._page) can find a recipient who was
            # handed to a notification of their own, or left out, the first time: not ours.
            done[i] = True
            result.already_done += 1
        else:
            todo.append(i)
    progress = _Progress(store, request, on_progress, flush_every, done)
    if isinstance(sender, InAppSender):
        locales = await store.user_locales([request.user_ids[i] for i in todo])
        await _deliver_in_app(
            store, request, template, locales, todo, progress, result, flush_every
        )
        return result
    users = await store.users_by_id([request.user_ids[i] for i in todo])

    def send(i: int) -> Callable[[], Awaitable[Outcome]]:
        user_id = request.user_ids[i]

        async def go() -> Outcome:
            user = users.get(user_id)
            if user is None:
                return Outcome(user_id, RecipientStatus.FAILED, error="user deleted")
            return await send_one(
                broadcast_id=request.broadcast_id,
                user=user,
                template=template,
                channel=request.channel,
                data=request.data,
                priority=request.priority,
                sender=sender,
                devices=store.list_devices,
            )

        return go

    async def landed(k: int, outcome: Outcome) -> None:
        result.count(outcome.status)
        await progress.add(todo[k], outcome)

    await send_all(
        [send(i) for i in todo], concurrency=request.concurrency, limiter=limiter, on_done=landed
    )
    await progress.flush()
    return result


async def _deliver_in_app(
    store: Store,
    request: BatchRequest,
    template: Template,
    locales: Mapping[str, str],
    todo: Sequence[int],
    progress: _Progress,
    result: BatchResult,
    chunk: int,
) -> None:
    """In-app is our own database: render each message, then write the inbox items and their
    records together, `chunk` at a time (one transaction instead of one per recipient)."""
    # The broadcast's data is the same for every recipient and the in-app message knows nothing
    # else of the user but the locale: render once per locale, not once per recipient.
    rendered: dict[str, RenderedMessage | rendering.TemplateError] = {}

    async def render(locale: str) -> RenderedMessage | rendering.TemplateError:
        if locale not in rendered:
            try:
                rendered[locale] = await rendering.render_async(
                    template, Channel.IN_APP, dict(request.data), locale=locale
                )
            except rendering.TemplateError as e:
                rendered[locale] = e
        return rendered[locale]

    for start in range(0, len(todo), chunk):
        items: list[tuple[str, str, str, str]] = []
        failed: list[tuple[int, Outcome]] = []
        indexes: dict[str, int] = {}
        for i in todo[start : start + chunk]:
            user_id = request.user_ids[i]
            locale = locales.get(user_id)
            if locale is None:
                failed.append((i, Outcome(user_id, RecipientStatus.FAILED, error="user deleted")))
                continue
            message = await render(locale)
            if isinstance(message, rendering.TemplateError):
                failed.append(
                    (i, Outcome(user_id, RecipientStatus.FAILED, error=str(message)[:500]))
                )
                continue
            nid = notification_id(request.broadcast_id, user_id)
            items.append((user_id, nid, message.subject, message.text))
            indexes[user_id] = i
        delivered = await store.deliver_in_app(request.broadcast_id, request.batch, items)
        for user_id in delivered:
            result.count(RecipientStatus.DELIVERED)
            progress.mark(indexes[user_id])
        for i, outcome in failed:
            result.count(outcome.status)
            await progress.add(i, outcome)
        await progress.flush()


@dataclass(frozen=True)
class DeferredRecipient:
    """A recipient who must wait (quiet hours, a frequency cap): their own notification."""

    notification_id: str
    user_id: str
    template_id: str
    template_version: int
    data: Mapping[str, Any]
    channels: list[Channel] | None
    priority: Priority
    broadcast_id: str
