"""Pure routing policy: which channels a notification goes to, and when it may be sent.

No I/O and no clock: callers (workflows, via `workflow.now()`) pass the current instant, so the
same inputs always give the same answer and the functions are safe to call from workflow code.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from tidings.models import (
    Channel,
    ChannelResult,
    DeliveryStatus,
    NotificationStatus,
    Preferences,
    Priority,
    QuietHours,
    TemplateDefinition,
    User,
    is_aware,
)


@dataclass(frozen=True)
class RoutingDecision:
    channels: list[Channel]
    suppressed: dict[Channel, str] = field(default_factory=dict)


def _missing_address(channel: Channel, user: User, has_devices: bool) -> str | None:
    """What the user lacks to be reached on `channel`, or None when they can be."""
    if channel is Channel.EMAIL:
        return None if user.email else "email address"
    if channel is Channel.SMS:
        return None if user.phone else "phone number"
    if channel is Channel.PUSH:
        return None if has_devices else "registered device"
    if channel is Channel.WEBHOOK:
        return None if user.webhook_endpoints else "webhook URL"
    if channel is Channel.SLACK:
        if user.slack_webhook_url or user.slack_user_id:
            return None
        return "Slack webhook URL or Slack user id"
    return None  # IN_APP: the inbox always exists


def _opt_out_scope(
    channel: Channel, template: TemplateDefinition, preferences: Preferences
) -> str | None:
    """The scope of the switch that turns `channel` off, or None if it is on. The most specific
    switch that mentions the channel decides, even when it says "on"."""
    layers = (
        (preferences.templates.get(template.id, {}), f"template {template.id}"),
        (preferences.categories.get(template.category, {}), f"category {template.category}"),
        (preferences.channels, "all notifications"),
    )
    for switches, scope in layers:
        if channel in switches:
            return None if switches[channel] else scope
    return None


def choose_channels(
    *,
    template: TemplateDefinition,
    user: User,
    preferences: Preferences,
    priority: Priority,
    requested: list[Channel] | None,
    has_devices: bool,
) -> RoutingDecision:
    """Decide the channels to deliver on, and why each other candidate is suppressed.

    Candidates are `requested` when given, else the template's channels, in that order. Each is
    checked in turn: the template must support it, the user must have an address for it, and the
    user must not have switched it off (per template, else per category, else globally; a channel
    mentioned nowhere is on).

    Explicitly requested channels still honour the user's opt-outs: a caller naming a channel says
    where the message may go, not that the user's choice may be overridden. Only CRITICAL priority
    bypasses opt-outs (and then for every channel); it never conjures a missing address or a
    channel the template does not support.
    """
    candidates = list(dict.fromkeys(requested if requested is not None else template.channels))
    channels: list[Channel] = []
    suppressed: dict[Channel, str] = {}
    for channel in candidates:
        if channel not in template.channels:
            suppressed[channel] = f"template {template.id} does not support {channel}"
            continue
        missing = _missing_address(channel, user, has_devices)
        if missing is not None:
            suppressed[channel] = f"user has no {missing}"
            continue
        scope = _opt_out_scope(channel, template, preferences)
        if scope is not None and priority is not Priority.CRITICAL:
            suppressed[channel] = f"opted out of {channel} ({scope})"
            continue
        channels.append(channel)
    return RoutingDecision(channels=channels, suppressed=suppressed)


def _resolve(day: date, wall: time, zone: ZoneInfo) -> datetime:
    """The UTC instant at which the local clock in `zone` reads `wall` on `day`.

    An ambiguous wall time (the repeated hour when clocks go back) resolves to its first
    occurrence (fold=0). A wall time that does not exist (skipped when clocks go forward)
    resolves to the first valid instant after the gap, i.e. the transition itself.
    """
    naive = datetime.combine(day, wall)
    early = naive.replace(tzinfo=zone, fold=0).astimezone(UTC)
    if early.astimezone(zone).replace(tzinfo=None) == naive:
        return early
    # In a gap, fold=0 applies the offset from before the transition and fold=1 the one after,
    # so the transition instant lies in (late, early]. Transitions fall on whole seconds.
    late = naive.replace(tzinfo=zone, fold=1).astimezone(UTC)
    after = early.astimezone(zone).utcoffset()
    lo, hi = math.floor(late.timestamp()), math.ceil(early.timestamp())
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if datetime.fromtimestamp(mid, zone).utcoffset() == after:
            hi = mid
        else:
            lo = mid
    return datetime.fromtimestamp(hi, UTC)


def _windows(day: date, quiet: QuietHours, zone: ZoneInfo) -> tuple[datetime, datetime]:
    """The quiet window that starts on local date `day`, as [start, end) UTC instants."""
    end_day = day if quiet.start < quiet.end else day + timedelta(days=1)
    return _resolve(day, quiet.start, zone), _resolve(end_day, quiet.end, zone)


def _containing_end(at: datetime, quiet: QuietHours, zone: ZoneInfo) -> datetime | None:
    local_day = at.astimezone(zone).date()
    ends = [
        end
        # -1 and 0 suffice for every zone seen so far; the extra day each side is for a clock
        # that steps back across midnight, where local dates stop being monotonic.
        for offset in (-2, -1, 0, 1)
        for start, end in [_windows(local_day + timedelta(days=offset), quiet, zone)]
        if start <= at < end
    ]
    return max(ends, default=None)


def quiet_hours_end(
    *, at: datetime, timezone: str, quiet_hours: QuietHours | None
) -> datetime | None:
    """If `at` falls inside the user's daily quiet window, the UTC instant at which it ends.

    The window is [start, end) in the user's own IANA timezone: a message at exactly `start` is
    held, one at exactly `end` goes out. Each day's window is the interval between that day's
    `start` and the next `end` as real instants, so a window is never entered twice on the day
    clocks go back. Returns None when `at` is outside the window or there are no quiet hours.
    """
    if not is_aware(at):
        raise ValueError("at must be timezone-aware")
    if quiet_hours is None:
        return None
    zone = ZoneInfo(timezone)
    end = _containing_end(at, quiet_hours, zone)
    if end is None:
        return None
    # Only a window of nearly a day on a DST-shortened day can end where the next one starts;
    # follow the chain so the answer is never itself inside quiet hours.
    for _ in range(3):
        later = _containing_end(end, quiet_hours, zone)
        if later is None:
            break
        end = later
    return end


def send_time(
    *,
    now: datetime,
    scheduled_at: datetime | None,
    timezone: str,
    quiet_hours: QuietHours | None,
    priority: Priority,
) -> datetime:
    """When to send, in UTC: the later of `now` and `scheduled_at`, pushed to the end of the
    user's quiet hours if it falls inside them. CRITICAL ignores quiet hours. Quiet hours defer
    a notification; they never drop it."""
    if not is_aware(now):
        raise ValueError("now must be timezone-aware")
    if scheduled_at is not None and not is_aware(scheduled_at):
        raise ValueError("scheduled_at must be timezone-aware")
    base = max(now, scheduled_at) if scheduled_at is not None else now
    base = base.astimezone(UTC)
    if priority is Priority.CRITICAL:
        return base
    end = quiet_hours_end(at=base, timezone=timezone, quiet_hours=quiet_hours)
    return end if end is not None else base


def overall_status(results: list[ChannelResult]) -> NotificationStatus:
    """A notification's status from its channels' results.

    SENT if any channel was sent or delivered; else SENDING while any channel is still
    scheduled or sending; else FAILED if any failed; else CANCELLED if every channel was
    cancelled or expired and at least one was cancelled (an explicit cancel is the stronger
    fact); else EXPIRED if all expired; else SUPPRESSED (nothing was attempted, including no
    channels).
    """
    return status_of(r.status for r in results)


# `overall_status` as ordered rules: the first whose channel statuses some channel is in decides;
# no channel at all is SUPPRESSED. The store builds the same rules into the statement with which
# the last delivery writes the final status (`NotificationsMixin._finish_statement`), so the run
# and the database cannot drift apart.
STATUS_RULES: tuple[tuple[NotificationStatus, frozenset[DeliveryStatus]], ...] = (
    (NotificationStatus.SENT, frozenset({DeliveryStatus.SENT, DeliveryStatus.DELIVERED})),
    (NotificationStatus.SENDING, frozenset({DeliveryStatus.SCHEDULED, DeliveryStatus.SENDING})),
    (NotificationStatus.FAILED, frozenset({DeliveryStatus.FAILED})),
    (NotificationStatus.SUPPRESSED, frozenset({DeliveryStatus.SUPPRESSED})),
    (NotificationStatus.CANCELLED, frozenset({DeliveryStatus.CANCELLED})),
    (NotificationStatus.EXPIRED, frozenset({DeliveryStatus.EXPIRED})),
)
NO_CHANNELS_STATUS = NotificationStatus.SUPPRESSED


def status_of(channel_statuses: Iterable[DeliveryStatus]) -> NotificationStatus:
    """`overall_status` from the channels' statuses alone, by `STATUS_RULES`."""
    statuses = set(channel_statuses)
    for status, any_of in STATUS_RULES:
        if statuses & any_of:
            return status
    return NO_CHANNELS_STATUS
