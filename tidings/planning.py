"""What a notification does at send time: its channels, its fallback order, whether quiet hours or a
frequency cap push it later, and why each other channel is left out.

`plan` is pure (no I/O, no clock: the caller passes the instant), so every branch of the policy is
unit-tested without a database. `plan_from_store` does the reads the policy needs and raises
`NotFound` when the user or the template version has gone since the trigger, which no retry mends.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from zoneinfo import ZoneInfo

from tidings import channel_choice, frequency, routing, send_time
from tidings.channel_choice import ChannelEngagement
from tidings.errors import NotFound
from tidings.frequency import CapDecision, FrequencyCaps
from tidings.models import (
    Channel,
    ChannelResult,
    DeliveryStatus,
    NotificationStatus,
    Preferences,
    Priority,
    Template,
    User,
)
from tidings.store import Store


@dataclass(frozen=True)
class PlanRequest:
    """What the workflow knows when it asks for a plan."""

    notification_id: str
    user_id: str
    template_id: str
    template_version: int
    priority: Priority
    not_before: datetime  # max(now, scheduled time), decided by the caller
    requested_channels: list[Channel] | None = None
    fallback_channels: list[Channel] = field(default_factory=list)
    # Send-time optimisation: look for the user's best hour in [not_before, optimal_latest].
    optimal_latest: datetime | None = None


@dataclass(frozen=True)
class RecentSends:
    """The user's sends in the template's category within the cap window."""

    count: int
    earliest: datetime | None = None


@dataclass(frozen=True)
class Plan:
    channels: list[Channel]
    suppressed: dict[Channel, str]
    send_at: datetime  # later than not_before when quiet hours or a cap defer the send
    fallback: list[Channel] = field(default_factory=list)  # usable fallback channels, in order
    deferred_reason: str | None = None  # why send_at is later than not_before
    send_time_reason: str | None = None  # the optimal send time chosen, and from what
    channel_reason: str | None = None  # why the channels are in this order


def counts_against_cap(caps: FrequencyCaps, priority: Priority, category: str) -> bool:
    """Whether the cap applies at all, so the caller reads recent sends only when it does."""
    return priority is not Priority.CRITICAL and caps.limit_for(category) is not None


def plan(
    *,
    request: PlanRequest,
    user: User,
    template: Template,
    preferences: Preferences,
    has_devices: bool,
    configured: Collection[Channel],
    caps: FrequencyCaps,
    recent: RecentSends | None,
    send_time_model: send_time.EngagementModel | None = None,
    engagement: Mapping[Channel, ChannelEngagement] | None = None,
) -> Plan:
    """Decide the plan. `configured` are the channels this worker fleet has a sender for;
    `recent` is None when the cap does not apply (see `counts_against_cap`). With
    `request.optimal_latest` and a `send_time_model`, the send time is the user's best hour in
    the window, then quiet hours and caps apply to it; with `engagement` (read only when
    `recommends_channels`), the channels are ordered by it (`tidings.channel_choice`)."""

    def choose(requested: list[Channel] | None) -> routing.RoutingDecision:
        return routing.choose_channels(
            template=template,
            user=user,
            preferences=preferences,
            priority=request.priority,
            requested=requested,
            has_devices=has_devices,
        )

    decision = choose(request.requested_channels)
    # Only channels this worker fleet can deliver are planned; the rest are suppressed with a
    # reason rather than failing, so a deployment without (say) SMS still sends email.
    channels = [c for c in decision.channels if c in configured]
    channel_reason = None
    if request.requested_channels is None and len(channels) > 1:
        if channel_choice.states_preference(preferences, template):
            channel_reason = "template order: the user has set channel preferences"
        elif engagement is not None:
            channels, channel_reason = channel_choice.recommend(channels, engagement)
    suppressed = dict(decision.suppressed)
    for c in decision.channels:
        if c not in configured:
            suppressed[c] = f"no {c.value} provider is configured"
    fallback: list[Channel] = []
    if request.fallback_channels:
        usable = choose(request.fallback_channels)
        fallback = [c for c in usable.channels if c in configured and c not in decision.channels]

    base, send_time_reason = request.not_before, None
    if request.optimal_latest is not None and send_time_model is not None:
        choice = send_time.choose(
            send_time_model,
            timezone=user.timezone,
            start=request.not_before,
            latest=request.optimal_latest,
            user_id=user.id,
        )
        base, send_time_reason = choice.at, choice.reason
    # The optimal time goes through quiet hours like any other: they defer it, never the
    # reverse.
    send_at = routing.send_time(
        now=base,
        scheduled_at=None,
        timezone=user.timezone,
        quiet_hours=preferences.quiet_hours,
        priority=request.priority,
    )
    deferred_reason = send_time_reason if base > request.not_before else None
    if send_at > base:
        local = send_at.astimezone(ZoneInfo(user.timezone))
        deferred_reason = f"quiet hours until {local:%H:%M} {user.timezone}"

    cap = (
        caps.decide(category=template.category, count=recent.count, earliest=recent.earliest)
        if recent is not None and counts_against_cap(caps, request.priority, template.category)
        else CapDecision(allowed=True)
    )
    if cap.defer_until is not None and cap.defer_until > send_at:
        send_at, deferred_reason = cap.defer_until, cap.reason
    elif not cap.allowed and cap.defer_until is None:
        suppressed.update({c: cap.reason or "frequency cap" for c in channels})
        channels, fallback = [], []
    return Plan(
        channels=channels,
        suppressed=suppressed,
        send_at=send_at,
        fallback=fallback,
        deferred_reason=deferred_reason,
        send_time_reason=send_time_reason,
        channel_reason=channel_reason,
    )


def recommends_channels(
    request: PlanRequest, template: Template, preferences: Preferences | None
) -> bool:
    """Channels are ordered by engagement when the request names none and the user states no
    preference for this template's channels (None: preferences not read yet, so the answer is
    whether they could)."""
    return (
        request.requested_channels is None
        and len(template.channels) > 1
        and (preferences is None or not channel_choice.states_preference(preferences, template))
    )


async def load_template(store: Store, template_id: str, version: int) -> Template:
    """The pinned version: it existed at trigger time, but may have been deleted while the run
    waited (the send protocol in `tidings.delivery` reads it the same way)."""
    template = await store.get_template(template_id, version)
    if template is None:
        raise NotFound("template", f"{template_id} version {version}")
    return template


async def plan_from_store(
    store: Store, request: PlanRequest, *, configured: Collection[Channel], caps: FrequencyCaps
) -> Plan:
    """Read the user's current preferences (at send time, not at trigger time) and plan."""
    # The template's pinned version is in memory; knowing it first lets the one read of the
    # user, preferences and devices also take the channel engagement a recommendation needs.
    template = await store.get_template(request.template_id, request.template_version)
    may_recommend = template is not None and recommends_channels(request, template, None)
    engaged_since = request.not_before - channel_choice.HISTORY if may_recommend else None
    state = await store.recipient_state(
        request.user_id, preferences=True, devices=True, engagement_since=engaged_since
    )
    if state.user is None:
        raise NotFound("user", request.user_id)
    user, preferences, devices = state.user, state.preferences, state.devices
    assert preferences is not None
    if template is None:  # deleted while the run waited: read again, to say so
        template = await load_template(store, request.template_id, request.template_version)
    recent = None
    if counts_against_cap(caps, request.priority, template.category):
        count, earliest = await store.recent_sends(
            user_id=request.user_id,
            category=template.category,
            since=request.not_before - frequency.WINDOW,
            exclude=request.notification_id,
        )
        recent = RecentSends(count, earliest)
    model = None
    if request.optimal_latest is not None:
        since = request.not_before - send_time.HISTORY
        own = await store.engagement_hours(user.id, since=since)
        model = send_time.smooth(
            send_time.local_histogram(own, user.timezone),
            await store.population_histogram(since=since),
        )
    engagement = None
    if recommends_channels(request, template, preferences) and state.channel_engagement is not None:
        engagement = {
            c: ChannelEngagement(sends, engaged)
            for c, (sends, engaged) in state.channel_engagement.items()
        }
    return plan(
        request=request,
        user=user,
        template=template,
        preferences=preferences,
        has_devices=bool(devices),
        configured=configured,
        caps=caps,
        recent=recent,
        send_time_model=model,
        engagement=engagement,
    )


@dataclass(frozen=True)
class StatusRecord:
    """What the plan's own status record carries besides the plan (see `plan_and_record`)."""

    send_at: datetime | None = None  # the run's send time so far; None keeps the recorded one
    experiment_id: str | None = None
    variant: str | None = None


def sends_now(request: PlanRequest, planned: Plan) -> bool:
    """Whether the plan sends at once (the run goes on to deliver) rather than deferring."""
    return planned.send_at <= request.not_before


async def plan_and_record(
    store: Store,
    request: PlanRequest,
    *,
    configured: Collection[Channel],
    caps: FrequencyCaps,
    record: StatusRecord,
) -> Plan:
    """Plan, then record what the plan decided, as the run would have in a status record of its
    own: SENDING with a `sending` row per planned channel and a `suppressed` row per left-out
    one, or SCHEDULED with the deferred send time and its reason. Nothing is written when the
    plan fails (the run records the failure)."""
    planned = await plan_from_store(store, request, configured=configured, caps=caps)
    if sends_now(request, planned):
        status, send_at, reason = NotificationStatus.SENDING, record.send_at, None
        channels = [
            ChannelResult(channel=c, status=DeliveryStatus.SUPPRESSED, reason=r)
            for c, r in planned.suppressed.items()
        ] + [ChannelResult(channel=c, status=DeliveryStatus.SENDING) for c in planned.channels]
    else:
        status, send_at = NotificationStatus.SCHEDULED, planned.send_at
        reason, channels = planned.deferred_reason, []
    await store.upsert_notification(
        notification_id=request.notification_id,
        user_id=request.user_id,
        template_id=request.template_id,
        template_version=request.template_version,
        priority=request.priority,
        status=status,
        send_at=send_at,
        reason=reason,
        channels=channels,
        experiment_id=record.experiment_id,
        variant=record.variant,
    )
    return planned
