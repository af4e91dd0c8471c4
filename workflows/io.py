"""Inputs and outputs of the workflows, their updates and signals (wire contracts)."""

from __future__ import annotations

from pydantic import AwareDatetime, BaseModel, Field, field_validator

from tidings.models import (
    AttributeValue,
    Channel,
    EngagementType,
    NotificationRequest,
    Priority,
    check_attributes,
)


class NotificationInput(BaseModel):
    notification_id: str
    request: NotificationRequest
    template_version: int  # pinned at trigger time for the life of the run
    priority: Priority
    engagement_window_hours: float = 72.0
    task_queue_base: str = "tidings"
    fallback: list[Channel] = Field(default_factory=list)  # resolved from request or template
    # Set by ExperimentWorkflow on the notifications it starts: the test and the arm.
    experiment_id: str | None = None
    variant: str | None = None


class RescheduleInput(BaseModel):
    at: AwareDatetime


class CancelInput(BaseModel):
    reason: str = Field(default="cancelled by request", max_length=500)


class EngagementSignal(BaseModel):
    type: EngagementType
    channel: Channel | None = None
    at: AwareDatetime | None = None  # when the user acted; defaults to when the signal arrived
    metadata: dict[str, AttributeValue] = Field(default_factory=dict)
    event_id: str | None = Field(default=None, min_length=1, max_length=128)

    @field_validator("metadata")
    @classmethod
    def _bounded(cls, v: dict[str, AttributeValue]) -> dict[str, AttributeValue]:
        return check_attributes(v, "metadata")
