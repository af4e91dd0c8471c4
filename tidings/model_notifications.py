"""Notifications: what app code asks for, each channel's and the whole notification's result, an
in-app inbox item, and the service's counts by status."""

from __future__ import annotations

from datetime import timedelta
from typing import Any, Literal

from pydantic import AwareDatetime, Field, field_validator, model_validator

from tidings.model_base import (
    MAX_OPTIMAL_WITHIN,
    Identifier,
    Model,
    Timestamp,
    check_data_size,
)
from tidings.model_engagement import EngagementEvent
from tidings.model_enums import (
    Channel,
    DeliveryStatus,
    EngagementType,
    NotificationStatus,
    Priority,
)


class NotificationRequest(Model):
    """What app code asks for. Checked against the store (user, template, rendering) by the
    client before any workflow starts."""

    user_id: Identifier
    template_id: Identifier
    data: dict[str, Any] = Field(default_factory=dict)
    channels: list[Channel] | None = None
    priority: Priority | None = None
    scheduled_at: Timestamp | None = None
    expires_at: Timestamp | None = None
    idempotency_key: Identifier | None = None
    engagement_window_hours: float | None = Field(default=None, gt=0, le=24 * 90)
    fallback: list[Channel] | None = None  # overrides the template's fallback order
    escalate_after_minutes: float | None = Field(default=None, gt=0, le=60 * 24 * 30)
    # "optimal": wait for the user's best hour (tidings.send_time) between the send time
    # (scheduled_at, else now) and optimal_latest, or that plus optimal_within (default 24 h).
    send_at: Literal["optimal"] | None = None
    optimal_within: timedelta | None = None
    optimal_latest: Timestamp | None = None

    @field_validator("optimal_within")
    @classmethod
    def _bounded_within(cls, v: timedelta | None) -> timedelta | None:
        if v is not None and not timedelta(0) < v <= MAX_OPTIMAL_WITHIN:
            raise ValueError(
                f"must be more than 0 and at most {MAX_OPTIMAL_WITHIN.days} days, got {v}"
            )
        return v

    @field_validator("data")
    @classmethod
    def _bounded_data(cls, v: dict[str, Any]) -> dict[str, Any]:
        return check_data_size(v)

    @field_validator("channels")
    @classmethod
    def _channels_not_empty(cls, v: list[Channel] | None) -> list[Channel] | None:
        if v is not None and not v:
            raise ValueError("give at least one channel, or leave channels out to use preferences")
        return list(dict.fromkeys(v)) if v else v

    @model_validator(mode="after")
    def _expiry_after_schedule(self) -> NotificationRequest:
        if self.expires_at and self.scheduled_at and self.expires_at <= self.scheduled_at:
            raise ValueError("expires_at must be after scheduled_at")
        if self.send_at is None and (self.optimal_within or self.optimal_latest):
            raise ValueError('optimal_within and optimal_latest need send_at="optimal"')
        if self.optimal_within is not None and self.optimal_latest is not None:
            raise ValueError("give optimal_within or optimal_latest, not both")
        return self


class ChannelResult(Model):
    """One channel of one notification, as the run and the read model record it."""

    channel: Channel
    status: DeliveryStatus
    reason: str | None = None
    target: str | None = None  # masked address or endpoint, never a full secret
    provider_message_id: str | None = None
    attempts: int = 0
    at: AwareDatetime | None = None


class NotificationResult(Model):
    notification_id: str
    user_id: str
    template_id: str
    template_version: int
    priority: Priority
    status: NotificationStatus
    send_at: AwareDatetime | None = None
    channels: list[ChannelResult] = Field(default_factory=list)
    engagement: list[EngagementEvent] = Field(default_factory=list)
    # Engagement signals that arrived outside the window or past the cap, and were not recorded.
    engagement_dropped: int = 0
    reason: str | None = None
    # send_at="optimal": the time chosen and from what (tidings.send_time).
    send_time_reason: str | None = None
    # Why the channels are in their order when the request named none (tidings.channel_choice).
    channel_reason: str | None = None


class InboxItem(Model):
    id: int
    user_id: str
    notification_id: str
    title: str
    body: str
    created_at: AwareDatetime
    read_at: AwareDatetime | None = None
    seen_at: AwareDatetime | None = None
    archived_at: AwareDatetime | None = None
    category: str | None = None  # the notification template's category


class ChannelStats(Model):
    sent: int = 0
    delivered: int = 0
    failed: int = 0
    suppressed: int = 0

    @property
    def success_rate(self) -> float | None:
        attempted = self.sent + self.delivered + self.failed
        return None if attempted == 0 else (self.sent + self.delivered) / attempted


class ServiceStats(Model):
    notifications: dict[NotificationStatus, int] = Field(default_factory=dict)
    channels: dict[Channel, ChannelStats] = Field(default_factory=dict)
    engagement: dict[EngagementType, int] = Field(default_factory=dict)

    @property
    def success_rate(self) -> float | None:
        total = ChannelStats(
            sent=sum(c.sent for c in self.channels.values()),
            delivered=sum(c.delivered for c in self.channels.values()),
            failed=sum(c.failed for c in self.channels.values()),
        )
        return total.success_rate
