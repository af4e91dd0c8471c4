"""Activities of NotificationWorkflow: thin adapters from the workflow to `tidings.*`.

One class holds the long-lived dependencies (store, senders) built once by the worker; its bound
methods are the registered activities. Provider errors are classified here, where the adapter meets
the provider: permanent -> non-retryable ApplicationError; rate limited -> retry after the
provider's delay; transient -> retryable ApplicationError, so the workflow's retry policy applies.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.io import DeliverInput, DeliverResult, PlanInput, PlanResult, RecordInput
from tidings import frequency, rendering, routing
from tidings.channels.base import (
    ChannelSender,
    Delivery,
    PermanentChannelError,
    RateLimitedError,
    TransientChannelError,
)
from tidings.frequency import CapDecision, FrequencyCaps
from tidings.models import Channel, EngagementEvent, Priority, Template, User
from tidings.store import LedgerEntry, Store

# Error types: wire contracts between these activities and the workflow's retry policies.
PERMANENT = "PermanentDeliveryError"
TRANSIENT = "TransientDeliveryError"
RATE_LIMITED = "RateLimited"
NOT_FOUND = "NotFound"
TEMPLATE = "TemplateError"


def ledger_key(notification_id: str, channel: Channel) -> str:
    """The send's idempotency key: business data only, identical on every attempt."""
    return f"{notification_id}:{channel.value}"


class NotificationActivities:
    def __init__(
        self,
        store: Store,
        senders: Mapping[Channel, ChannelSender],
        caps: FrequencyCaps | None = None,
    ) -> None:
        self._store = store
        self._senders = dict(senders)
        self._caps = caps or FrequencyCaps()

    @activity.defn(name="record_notification")
    async def record_notification(self, input: RecordInput) -> None:
        await self._store.upsert_notification(
            notification_id=input.notification_id,
            user_id=input.user_id,
            template_id=input.template_id,
            template_version=input.template_version,
            priority=input.priority,
            status=input.status,
            send_at=input.send_at,
            reason=input.reason,
            channels=input.channels,
        )

    async def _user_and_template(
        self, user_id: str, template_id: str, version: int
    ) -> tuple[User, Template]:
        """Both exist at trigger time; either may have been deleted while the run waited,
        which no retry can mend."""
        user = await self._store.get_user(user_id)
        if user is None:
            raise ApplicationError(
                f"user {user_id!r} no longer exists", type=NOT_FOUND, non_retryable=True
            )
        template = await self._store.get_template(template_id, version)
        if template is None:
            raise ApplicationError(
                f"template {template_id!r} version {version} not found",
                type=NOT_FOUND,
                non_retryable=True,
            )
        return user, template

    @activity.defn(name="record_engagement")
    async def record_engagement(self, event: EngagementEvent) -> bool:
        return await self._store.record_engagement(event)

    @activity.defn(name="plan_delivery")
    async def plan_delivery(self, input: PlanInput) -> PlanResult:
        """Read the user's current preferences (at send time, not at trigger time) and decide
        the channels and whether quiet hours push the send later."""
        user, template = await self._user_and_template(
            input.user_id, input.template_id, input.template_version
        )
        preferences = await self._store.get_preferences(input.user_id)
        devices = await self._store.list_devices(input.user_id)
        decision = routing.choose_channels(
            template=template,
            user=user,
            preferences=preferences,
            priority=input.priority,
            requested=input.requested_channels,
            has_devices=bool(devices),
        )
        # Only channels this worker fleet can deliver are planned; the rest are suppressed with a
        # reason rather than failing, so a deployment without (say) SMS still sends email.
        channels = [c for c in decision.channels if c in self._senders]
        suppressed = dict(decision.suppressed)
        for c in decision.channels:
            if c not in self._senders:
                suppressed[c] = f"no {c.value} provider is configured"
        fallback: list[Channel] = []
        if input.fallback_channels:
            usable = routing.choose_channels(
                template=template,
                user=user,
                preferences=preferences,
                priority=input.priority,
                requested=input.fallback_channels,
                has_devices=bool(devices),
            )
            fallback = [
                c for c in usable.channels if c in self._senders and c not in decision.channels
            ]
        send_at = routing.send_time(
            now=input.not_before,
            scheduled_at=None,
            timezone=user.timezone,
            quiet_hours=preferences.quiet_hours,
            priority=input.priority,
        )
        deferred_reason = None
        if send_at > input.not_before:
            local = send_at.astimezone(ZoneInfo(user.timezone))
            deferred_reason = f"quiet hours until {local:%H:%M} {user.timezone}"
        cap = await self._frequency_cap(input, template.category)
        if cap.defer_until is not None and cap.defer_until > send_at:
            send_at, deferred_reason = cap.defer_until, cap.reason
        elif not cap.allowed and cap.defer_until is None:
            suppressed.update({c: cap.reason or "frequency cap" for c in channels})
            channels, fallback = [], []
        return PlanResult(
            channels=channels,
            suppressed=suppressed,
            send_at=send_at,
            fallback=fallback,
            deferred_reason=deferred_reason,
        )

    async def _frequency_cap(self, input: PlanInput, category: str) -> CapDecision:
        if input.priority is Priority.CRITICAL or self._caps.limit_for(category) is None:
            return CapDecision(allowed=True)
        count, earliest = await self._store.recent_sends(
            user_id=input.user_id,
            category=category,
            since=input.not_before - frequency.WINDOW,
            exclude=input.notification_id,
        )
        return self._caps.decide(category=category, count=count, earliest=earliest)

    @activity.defn(name="deliver")
    async def deliver(self, input: DeliverInput) -> DeliverResult:
        key = ledger_key(input.notification_id, input.channel)
        # A retry after "provider accepted" but before "activity completed" finds the ledger entry
        # and does not send again.
        previous = await self._store.ledger_get(key)
        if previous is not None:
            return DeliverResult(
                status=previous.status,
                target=previous.target,
                provider_message_id=previous.provider_message_id,
                duplicate=True,
                attempt=activity.info().attempt,
            )
        if input.expires_at is not None and datetime.now(UTC) >= input.expires_at:
            raise ApplicationError(
                "expired before it could be delivered", type=PERMANENT, non_retryable=True
            )
        sender = self._senders.get(input.channel)
        if sender is None:
            raise ApplicationError(
                f"no {input.channel.value} provider is configured",
                type=PERMANENT,
                non_retryable=True,
            )
        user, template = await self._user_and_template(
            input.user_id, input.template_id, input.template_version
        )
        try:
            message = await rendering.render_async(
                template, input.channel, input.data, locale=user.locale
            )
        except rendering.TemplateError as e:
            raise ApplicationError(str(e), type=TEMPLATE, non_retryable=True) from e
        devices = await self._store.list_devices(user.id) if input.channel is Channel.PUSH else []
        delivery = Delivery(
            notification_id=input.notification_id,
            idempotency_key=key,
            user=user,
            message=message,
            priority=input.priority,
            expires_at=input.expires_at,
            devices=devices,
        )
        try:
            outcome = await sender.send(delivery)
        except PermanentChannelError as e:
            raise ApplicationError(e.reason, type=PERMANENT, non_retryable=True) from e
        except RateLimitedError as e:
            delay = timedelta(seconds=e.retry_after) if e.retry_after is not None else None
            raise ApplicationError(e.reason, type=RATE_LIMITED, next_retry_delay=delay) from e
        except TransientChannelError as e:
            raise ApplicationError(e.reason, type=TRANSIENT) from e
        await self._store.ledger_put(
            LedgerEntry(
                key=key,
                notification_id=input.notification_id,
                channel=input.channel,
                target=outcome.target,
                status=outcome.status,
                provider_message_id=outcome.provider_message_id,
                sent_at=datetime.now(UTC),
            )
        )
        return DeliverResult(
            status=outcome.status,
            target=outcome.target,
            provider_message_id=outcome.provider_message_id,
            attempt=activity.info().attempt,
        )
