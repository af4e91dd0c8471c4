"""Request and response shapes of the HTTP API (starter/http/routes/).

Bodies reuse the domain models from `tidings.models`; where the path carries an id, the body's
copy of it is optional and must match.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator, model_validator
from pydantic.json_schema import SkipJsonSchema

from starter.client import MAX_BULK
from starter.client_bulk_models import Recipient, RecipientOutcome
from tidings import inbox_tokens
from tidings.models import (
    AttributeValue,
    Channel,
    Device,
    EngagementType,
    Identifier,
    Model,
    NotificationRequest,
    NotificationStatus,
    Preferences,
    Timestamp,
    User,
    check_attributes,
)

ErrorType = Literal[
    "invalid_request",
    "unauthorized",
    "forbidden",
    "not_found",
    "conflict",
    "unavailable",
    "internal",
]


class Error(BaseModel):
    type: ErrorType
    field: str | None = None
    reason: str
    message: str


class ErrorBody(BaseModel):
    error: Error


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorBody, "description": "No API key, or not a valid one"},
    403: {"model": ErrorBody, "description": "The API key lacks the scope this route needs"},
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


class BulkRequest(NotificationRequest):
    """One notification per recipient: `user_ids` (or `recipients`, each with its own data or
    key) instead of `user_id`, every other field (and its validation) inherited from the single
    request, so a field added there is accepted here too (a copy had already lost `fallback`
    and `escalate_after_minutes`)."""

    user_ids: list[Identifier] | None = Field(default=None, min_length=1, max_length=MAX_BULK)
    recipients: list[Recipient] | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_BULK,
        description="instead of user_ids: each recipient's data is merged over the shared"
        " data, and its own idempotency_key replaces the derived `<key>.<user_id>`",
    )
    atomic: bool = Field(
        default=False,
        description="all or nothing: if any recipient is rejected, start none (422)",
    )
    # Not part of a bulk body: hidden from the schema, refused when given.
    user_id: SkipJsonSchema[Identifier | None] = Field(default=None, exclude=True)  # type: ignore[assignment]

    @model_validator(mode="after")
    def _recipients_once(self) -> BulkRequest:
        if self.user_id is not None:
            raise ValueError("user_id: a bulk request names its users in user_ids")
        if (self.user_ids is None) == (self.recipients is None):
            raise ValueError("user_ids: give user_ids or recipients (exactly one of them)")
        return self

    def recipient_list(self) -> list[str] | list[Recipient]:
        return self.user_ids if self.user_ids is not None else list(self.recipients or [])

    def shared_fields(self) -> dict[str, Any]:
        """The fields every recipient's request shares, for Tidings.notify_many."""
        return self.model_dump(
            exclude={"user_ids", "recipients", "atomic", "user_id", "template_id"}
        )


class BulkOutcome(RecipientOutcome):
    status_url: str | None = None  # for a started or existing notification


class BulkAccepted(BaseModel):
    """Always 202, whatever the mix: each recipient's own outcome, in the order given."""

    started: int
    accepted: int = Field(
        default=0,
        description="recipients of a bulk accepted durably: their notifications are recorded"
        " and the bulk's fan-out starts their runs (see bulk_url for how far it is)",
    )
    existed: int
    rejected: int
    failed: int
    bulk_id: str | None = Field(
        default=None, description="set when the bulk was accepted durably (large bulks)"
    )
    bulk_url: str | None = None
    results: list[BulkOutcome]


class CancelBody(Model):
    reason: str = Field(default="cancelled by request", min_length=1, max_length=500)


class RescheduleBody(Model):
    at: Timestamp


class EngagementBody(Model):
    type: EngagementType
    channel: Channel | None = None
    metadata: dict[str, AttributeValue] = Field(default_factory=dict)
    # Your id for this event; without one an event counts once per type and channel.
    event_id: str | None = Field(default=None, min_length=1, max_length=128)

    @field_validator("metadata")
    @classmethod
    def _bounded(cls, v: dict[str, AttributeValue]) -> dict[str, AttributeValue]:
        return check_attributes(v, "metadata")


class EngagementAccepted(BaseModel):
    notification_id: str
    type: EngagementType


class InboxTokenBody(Model):
    ttl_seconds: int = Field(
        default=int(inbox_tokens.DEFAULT_TTL.total_seconds()),
        ge=1,
        le=int(inbox_tokens.MAX_TTL.total_seconds()),
        description="How long the token opens the inbox",
    )


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
