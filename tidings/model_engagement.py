"""Engagement: an event as recorded on a notification, an event as an app reports it, and what
makes two events the same event."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, field_validator, model_validator

from tidings.model_base import MAX_ATTRIBUTES, AttributeValue, Model, Timestamp, check_attributes
from tidings.model_enums import Channel, EngagementType

EventId = Annotated[str, Field(min_length=1, max_length=128)]


class EngagementEvent(Model):
    notification_id: str
    type: EngagementType
    channel: Channel | None = None
    at: Timestamp | None = None
    metadata: dict[str, AttributeValue] = Field(default_factory=dict)
    # The caller's id for this event, when it has one (several clicks on different links are
    # several events); without it an event counts once per notification, type and channel.
    event_id: EventId | None = None

    @property
    def dedupe_key(self) -> str:
        return engagement_key(self.type, self.channel, self.event_id)


class EngagementReport(Model):
    """One event as an app (or a tracked link) reports it: `POST /v1/notifications/{id}/events`
    and `Tidings.record_event`. A conversion may carry what it was worth; `value` and `currency`
    are kept in the event's metadata under those names."""

    type: EngagementType
    channel: Channel | None = None
    at: Timestamp | None = None  # when the user acted; defaults to when it is recorded
    event_id: EventId | None = None
    value: float | None = Field(default=None, ge=0, le=1e12, allow_inf_nan=False)
    currency: str | None = Field(default=None, pattern=r"^[A-Z]{3}$")  # ISO 4217
    metadata: dict[str, AttributeValue] = Field(default_factory=dict)

    @field_validator("metadata")
    @classmethod
    def _bounded(cls, v: dict[str, AttributeValue]) -> dict[str, AttributeValue]:
        v = check_attributes(v, "metadata")
        if len(v) > MAX_ATTRIBUTES - 2:  # room for value and currency
            raise ValueError(f"metadata: at most {MAX_ATTRIBUTES - 2} entries")
        for name in ("value", "currency"):
            if name in v:
                raise ValueError(f"{name!r} is a field of its own, not metadata")
        return v

    @model_validator(mode="after")
    def _value_of_conversions(self) -> EngagementReport:
        if self.type is not EngagementType.CONVERTED and (
            self.value is not None or self.currency is not None
        ):
            raise ValueError("value and currency belong to converted events only")
        if self.currency is not None and self.value is None:
            raise ValueError("currency needs a value")
        return self

    def event(self, notification_id: str) -> EngagementEvent:
        metadata = dict(self.metadata)
        if self.value is not None:
            metadata["value"] = self.value
        if self.currency is not None:
            metadata["currency"] = self.currency
        return EngagementEvent(
            notification_id=notification_id,
            type=self.type,
            channel=self.channel,
            at=self.at,
            metadata=metadata,
            event_id=self.event_id,
        )


def engagement_key(type: EngagementType, channel: Channel | None, event_id: str | None) -> str:
    """What makes two engagement events the same event: repeats of one are recorded once."""
    if event_id is not None:
        return f"id:{event_id}"
    return f"{EngagementType(type).value}:{Channel(channel).value if channel else '-'}"


def event_id_from_key(key: str) -> str | None:
    return key.removeprefix("id:") if key.startswith("id:") else None
