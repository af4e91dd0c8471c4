"""Analytics: what the figures mean, the filters they take and the shapes they come back in.

The SQL is in `tidings.store.analytics` (one aggregate query per figure, never a loop over rows);
this module holds the definitions, shared by the store, the client, the CLI and HTTP.

A period is a cohort: the notifications CREATED in [start, end), with every event they ever got
(an open recorded after `end` still counts for a notification sent inside the period; an event of
a notification created before `start` never does). Each rate counts notifications, not events:

- sent: notifications with at least one delivery sent or delivered (reached a provider or the
  endpoint); delivered: at least one delivery delivered (a receipt, an inbox row, a webhook 2xx);
- failed: at least one delivery failed and none sent or delivered; suppressed: at least one
  delivery suppressed and none sent, delivered or failed;
- delivery rate = sent / (sent + failed);
- open rate = SENT notifications with at least one opened OR clicked event (a click implies an
  open) / sent; click rate = sent ones with at least one clicked event / sent; conversion rate =
  sent ones with at least one converted event / sent (events of a notification never sent, a
  stray signal, count nowhere);
- conversion value: the sum of `value` over every converted event, per `currency`.

With a channel filter, deliveries of that channel only, and events of that channel or of none.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import AwareDatetime, Field, ValidationInfo, field_validator

from tidings.models import Channel, Identifier, Model


class Bucket(StrEnum):
    DAY = "day"
    HOUR = "hour"


class RankBy(StrEnum):
    DELIVERY_RATE = "delivery_rate"
    OPEN_RATE = "open_rate"
    CLICK_RATE = "click_rate"
    CONVERSION_RATE = "conversion_rate"


# Longest period one query may cover: keeps a typo (year 2206) from scanning everything.
MAX_PERIOD = timedelta(days=400)


class Period(Model):
    start: AwareDatetime
    end: AwareDatetime

    @field_validator("end")
    @classmethod
    def _ordered(cls, end: datetime, info: ValidationInfo) -> datetime:
        start = info.data.get("start")
        if start is None:
            return end
        if end <= start:
            raise ValueError("end must be after start")
        if end - start > MAX_PERIOD:
            raise ValueError(f"a period covers at most {MAX_PERIOD.days} days")
        return end


class MetricsFilter(Model):
    """Which notifications of the period count; every field left out means any."""

    template_id: Identifier | None = None
    template_version: int | None = Field(default=None, ge=1)
    channel: Channel | None = None
    category: Identifier | None = None
    experiment_id: str | None = Field(default=None, max_length=64)
    variant: str | None = Field(default=None, max_length=128)
    user_id: Identifier | None = None
    segment: Identifier | None = None

    @field_validator("template_version", "variant")
    @classmethod
    def _needs_parent(cls, value: Any, info: ValidationInfo) -> Any:
        parent = "template_id" if info.field_name == "template_version" else "experiment_id"
        if value is not None and info.data.get(parent) is None:
            raise ValueError(f"give {parent} too")
        return value


def rate(part: int, whole: int) -> float | None:
    return None if whole == 0 else part / whole


class Counts(Model):
    notifications: int = 0
    sent: int = 0
    delivered: int = 0
    failed: int = 0
    suppressed: int = 0
    opened: int = 0
    clicked: int = 0
    converted: int = 0

    @property
    def delivery_rate(self) -> float | None:
        return rate(self.sent, self.sent + self.failed)

    @property
    def open_rate(self) -> float | None:
        return rate(self.opened, self.sent)

    @property
    def click_rate(self) -> float | None:
        return rate(self.clicked, self.sent)

    @property
    def conversion_rate(self) -> float | None:
        return rate(self.converted, self.sent)

    def rates(self) -> dict[str, float | None]:
        return {
            "delivery_rate": self.delivery_rate,
            "open_rate": self.open_rate,
            "click_rate": self.click_rate,
            "conversion_rate": self.conversion_rate,
        }


class SeriesPoint(Model):
    at: AwareDatetime  # the bucket's start, UTC
    counts: Counts


class Metrics(Model):
    period: Period
    filter: MetricsFilter
    counts: Counts
    rates: dict[str, float | None]
    conversion_value: dict[str, float]  # per ISO currency; "" for conversions without one
    bucket: Bucket
    series: list[SeriesPoint]


class TemplateRank(Model):
    template_id: str
    counts: Counts
    rates: dict[str, float | None]


class ChannelPerformance(Model):
    channel: Channel
    attempted: int  # deliveries sent, delivered or failed
    sent: int
    delivered: int
    failed: int
    delivery_rate: float | None
    opened: int  # notifications opened through this channel (events of this channel or of none)
    open_rate: float | None
    median_seconds_to_open: float | None  # delivery time to the first open or click


class ProviderPerformance(Model):
    """Per channel: the read model does not record which provider (SMTP relay, Twilio account)
    took a delivery, only the channel, its attempts and its outcome."""

    channel: Channel
    deliveries: int
    failed: int
    failure_rate: float | None
    retries: int  # attempts beyond the first, summed
    failovers_from: int  # failed here while another channel of the notification got through
    failovers_to: int  # got through here while another channel of the notification failed


class ChannelEngagement(Model):
    channel: Channel
    sent: int
    opened: int
    clicked: int
    converted: int
    open_rate: float | None
    click_rate: float | None


class EngagementProfile(Model):
    user_id: str
    timezone: str
    notifications: int
    engaged: int  # notifications with at least one opened, clicked or converted event
    channels: list[ChannelEngagement]
    preferred_channel: Channel | None
    # Engagement events per local (weekday, hour): weekday 0 = Monday, in the user's timezone.
    hours_of_week: dict[str, int]
    best_hours: list[str]  # the three busiest "weekday-hour" keys, busiest first
    last_engagement: AwareDatetime | None


QUARTER_HOUR = 900  # seconds: every timezone offset in use is a multiple of 15 minutes


def hours_of_week(buckets: list[tuple[int, int]], timezone: str) -> dict[str, int]:
    """Engagement counted per local weekday and hour, from counts per UTC quarter-hour bucket
    (bucket = epoch seconds // 900). Each bucket is converted with the offset in force at its own
    date, so a DST change moves events by their real local hour, and a +05:30 or +05:45 offset is
    exact too. Keys are "<weekday>-<hour>", weekday 0 = Monday."""
    zone = ZoneInfo(timezone)
    counts: dict[str, int] = {}
    for bucket, n in buckets:
        local = datetime.fromtimestamp(bucket * QUARTER_HOUR, UTC).astimezone(zone)
        key = f"{local.weekday()}-{local.hour}"
        counts[key] = counts.get(key, 0) + n
    return dict(sorted(counts.items(), key=lambda kv: tuple(int(p) for p in kv[0].split("-"))))


def best_hours(counts: dict[str, int], top: int = 3) -> list[str]:
    return [k for k, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:top]]


def preferred_channel(channels: list[ChannelEngagement]) -> Channel | None:
    """The channel with the highest open rate among those that sent anything; ties go to the one
    with more opens, then to the channel's name. None when nothing was ever opened."""
    opened = [c for c in channels if c.opened > 0 and c.open_rate is not None]
    if not opened:
        return None
    return min(opened, key=lambda c: (-(c.open_rate or 0.0), -c.opened, c.channel.value)).channel
