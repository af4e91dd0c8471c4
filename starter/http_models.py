"""Request and response shapes of the HTTP API (`starter.http`, `starter.http_api`).

Bodies reuse the domain models from `tidings.models`; where the path carries an id, the body's
copy of it is optional and must match.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator

from starter.client import MAX_BULK
from tidings.models import (
    AttributeValue,
    Channel,
    Device,
    EngagementType,
    Identifier,
    Model,
    NotificationStatus,
    Preferences,
    Priority,
    Timestamp,
    User,
    check_attributes,
    check_data_size,
)

ErrorType = Literal[
    "invalid_request", "unauthorized", "not_found", "conflict", "unavailable", "internal"
]


class Error(BaseModel):
    type: ErrorType
    field: str | None = None
    reason: str
    message: str


class ErrorBody(BaseModel):
    error: Error


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorBody, "description": "Not found"},
    422: {"model": ErrorBody, "description": "Invalid request: names the field and the reason"},
    503: {"model": ErrorBody, "description": "Temporal or the database is unreachable"},
}


CONFLICT_RESPONSE: dict[int | str, dict[str, Any]] = {
    409: {"model": ErrorBody, "description": "Not allowed in the notification's current state"}
}
KEY_REUSED_RESPONSE: dict[int | str, dict[str, Any]] = {
    409: {"model": ErrorBody, "description": "The idempotency key was used for another request"}
}


class UserBody(User):
    """A user as PUT takes it: the id comes from the path (repeat it, or leave it out)."""

    id: Identifier | None = None  # type: ignore[assignment]


class DeviceBody(Device):
    user_id: Identifier | None = None  # type: ignore[assignment]


class PreferencesBody(Preferences):
    user_id: Identifier | None = None  # type: ignore[assignment]


class Accepted(BaseModel):
    notification_id: str
    workflow_id: str
    status_url: str
    created: bool = Field(
        default=True,
        description="false when the idempotency key was used before with the same request:"
        " this is that notification, and nothing new was started",
    )


class BulkRequest(Model):
    """One notification per user; everything but `user_ids` is as in a single request."""

    user_ids: list[Identifier] = Field(min_length=1, max_length=MAX_BULK)
    template_id: Identifier
    data: dict[str, Any] = Field(default_factory=dict)
    channels: list[Channel] | None = None
    priority: Priority | None = None
    scheduled_at: Timestamp | None = None
    expires_at: Timestamp | None = None
    idempotency_key: Identifier | None = None
    engagement_window_hours: float | None = Field(default=None, gt=0, le=24 * 90)

    @field_validator("data")
    @classmethod
    def _bounded_data(cls, v: dict[str, Any]) -> dict[str, Any]:
        return check_data_size(v)


class BulkAccepted(BaseModel):
    notifications: list[Accepted]


class CancelBody(Model):
    reason: str = Field(default="cancelled by request", min_length=1, max_length=500)


class RescheduleBody(Model):
    at: Timestamp


class EngagementBody(Model):
    type: EngagementType
    channel: Channel | None = None
    metadata: dict[str, AttributeValue] = Field(default_factory=dict)

    @field_validator("metadata")
    @classmethod
    def _bounded(cls, v: dict[str, AttributeValue]) -> dict[str, AttributeValue]:
        return check_attributes(v, "metadata")


class EngagementAccepted(BaseModel):
    notification_id: str
    type: EngagementType


class MarkedRead(BaseModel):
    marked: int


class ChannelStatsView(BaseModel):
    sent: int
    delivered: int
    failed: int
    suppressed: int
    success_rate: float | None = Field(description="(sent + delivered) / attempted; null if none")


class StatsView(BaseModel):
    notifications: dict[NotificationStatus, int]
    channels: dict[Channel, ChannelStatsView]
    engagement: dict[EngagementType, int]
    success_rate: float | None


class Health(BaseModel):
    status: Literal["ok"]
    checks: dict[str, str]
