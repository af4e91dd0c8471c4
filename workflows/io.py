"""Inputs and outputs of the workflows, their updates and signals (wire contracts)."""

from __future__ import annotations

from typing import Any

from pydantic import AwareDatetime, BaseModel, Field, field_validator

from tidings.experiments import (
    ArmCounts,
    Comparison,
    Decision,
    Ending,
    ExperimentConfig,
    Metric,
    Rule,
)
from tidings.models import (
    AttributeValue,
    Channel,
    EngagementType,
    NotificationRequest,
    Priority,
    Timestamp,
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
    # send_at="optimal": the latest send time, resolved by the client from the request's
    # optimal_within / optimal_latest (the request itself stays as the caller sent it).
    optimal_latest: AwareDatetime | None = None


class RescheduleInput(BaseModel):
    at: Timestamp


class CancelInput(BaseModel):
    reason: str = Field(default="cancelled by request", max_length=500)


class EngagementSignal(BaseModel):
    type: EngagementType
    channel: Channel | None = None
    at: Timestamp | None = None  # when the user acted; defaults to when the signal arrived
    metadata: dict[str, AttributeValue] = Field(default_factory=dict)
    event_id: str | None = Field(default=None, min_length=1, max_length=128)
    # True when the front door has written the event already (`Tidings.record_event`): the run
    # keeps it in its state but does not write it again. Defaults to False so that signals
    # sent before this field existed decode as they always did.
    recorded: bool = False

    @field_validator("metadata")
    @classmethod
    def _bounded(cls, v: dict[str, AttributeValue]) -> dict[str, AttributeValue]:
        return check_attributes(v, "metadata")


# --- ExperimentWorkflow --------------------------------------------------------------------------
# Plain BaseModel (unknown fields ignored): a newer client or worker may add a field mid-deploy.


class ExperimentState(BaseModel):
    """Counters, not per-user state: what one run hands the next at continue-as-new."""

    started_at: AwareDatetime
    enrolled: dict[str, int] = Field(default_factory=dict)  # first enrolments per arm
    duplicates: int = 0  # repeated enrolments answered with the first
    weights: list[float] | None = None  # bandit traffic shares, per variant in config order
    counts: dict[str, ArmCounts] = Field(default_factory=dict)  # as last read
    decision: Decision | None = None  # the last check's
    checks: int = 0
    runs: int = 1
    ending: Ending | None = None
    winner: str | None = None
    reason: str | None = None
    decided_at: AwareDatetime | None = None
    recorded: bool = False  # the ending is in the database
    last_check_at: AwareDatetime | None = None


class ExperimentInput(BaseModel):
    config: ExperimentConfig
    task_queue_base: str = "tidings"
    engagement_window_hours: float = 72.0  # of the notifications it starts
    # Continue-as-new at this many history events (or earlier when the server suggests it).
    event_budget: int = Field(default=5_000, ge=100)
    state: ExperimentState | None = None  # None on the first run


class EnrollInput(BaseModel):
    user_id: str
    data: dict[str, Any] = Field(default_factory=dict)  # merged over the variant's data


class Enrollment(BaseModel):
    experiment_id: str
    user_id: str
    variant: str  # a variant's name, or "holdout": nothing is sent
    notification_id: str | None = None
    duplicate: bool = False  # the user was enrolled already: this is that first enrolment


class StopInput(BaseModel):
    reason: str = Field(default="stopped by hand", max_length=500)


class ExperimentResults(BaseModel):
    experiment_id: str
    status: str  # running | decided (promoting the winner) | finished
    rule: Rule
    metric: Metric
    alpha: float
    started_at: AwareDatetime
    ending: Ending | None = None
    winner: str | None = None
    reason: str | None = None
    decided_at: AwareDatetime | None = None
    enrolled: dict[str, int] = Field(default_factory=dict)
    duplicates: int = 0
    counts: dict[str, ArmCounts] = Field(default_factory=dict)
    comparisons: list[Comparison] = Field(default_factory=list)
    probability_best: dict[str, float] = Field(default_factory=dict)
    weights: dict[str, float] = Field(default_factory=dict)
    checks: int = 0
    runs: int = 1
    last_check_at: AwareDatetime | None = None
