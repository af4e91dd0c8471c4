"""Inputs and outputs of the activities: one pydantic model in, one out (wire contracts)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import AwareDatetime, BaseModel, Field

from tidings.experiments import ArmCounts
from tidings.models import Channel, ChannelResult, DeliveryStatus, NotificationStatus, Priority


class RecordInput(BaseModel):
    notification_id: str
    user_id: str
    template_id: str
    template_version: int
    priority: Priority
    status: NotificationStatus
    send_at: AwareDatetime | None = None
    reason: str | None = None
    channels: list[ChannelResult] = Field(default_factory=list)
    experiment_id: str | None = None  # the A/B test this notification is part of, if any
    variant: str | None = None


class RecordChannelInput(BaseModel):
    """One channel's result, recorded the moment it lands (the others may still be sending)."""

    notification_id: str
    result: ChannelResult


class PlanRecord(BaseModel):
    """What the plan's status record carries besides the plan: the run's current send time
    (None keeps the recorded one) and the A/B test and arm written with the first row."""

    send_at: AwareDatetime | None = None
    experiment_id: str | None = None
    variant: str | None = None


class PlanInput(BaseModel):
    notification_id: str
    user_id: str
    template_id: str
    template_version: int
    priority: Priority
    requested_channels: list[Channel] | None = None
    fallback_channels: list[Channel] = Field(default_factory=list)
    not_before: AwareDatetime  # max(now, scheduled time), decided by the workflow
    # send_at="optimal": choose the user's best hour in [not_before, optimal_latest].
    optimal_latest: AwareDatetime | None = None
    # Runs on the v7 path: the plan records what it decided (SENDING with each channel's row,
    # or SCHEDULED with the deferred time) in place of a status record of its own. The rest is
    # what that record carries that the plan does not know. Absent (older workflows): no write.
    record: PlanRecord | None = None
    # Runs on the v11 path: when the plan sends at once and in-app is one of its channels, the
    # same activity delivers in-app right after its record (one local activity less per run).
    # Absent (older workflows): the run sends in-app itself.
    in_app: DeliverInput | None = None


class PlanResult(BaseModel):
    channels: list[Channel] = Field(default_factory=list)
    suppressed: dict[Channel, str] = Field(default_factory=dict)
    send_at: AwareDatetime  # later than not_before when quiet hours defer the send
    fallback: list[Channel] = Field(default_factory=list)  # usable fallback channels, in order
    deferred_reason: str | None = None  # why send_at is later than not_before
    send_time_reason: str | None = None  # the optimal send time chosen, and from what
    channel_reason: str | None = None  # why the channels are in this order
    # In-app delivered by the plan (PlanInput.in_app); None: not asked, not planned, or the
    # attempt raised, and the run sends it by its own local activity as before.
    in_app: DeliverOutput | None = None


class DeliverInput(BaseModel):
    notification_id: str
    channel: Channel
    user_id: str
    template_id: str
    template_version: int
    data: dict[str, Any] = Field(default_factory=dict)
    priority: Priority = Priority.MEDIUM
    expires_at: AwareDatetime | None = None
    # Runs on the v7 path: the channel's delivery row is written with the ledger entry, in its
    # transaction, so the run needs no record of its own for a channel that got through.
    record: bool = False
    # Local sends (in-app): the run's clock when it scheduled the send. A local activity's
    # scheduled time is the worker host's clock, not the server's (they part on a time-skipping
    # test server, and by any skew in production); rows and renders follow the run's clock.
    scheduled_at: AwareDatetime | None = None
    # With `record` (runs on the v10 path, first round): the delivery's transaction also
    # writes the notification's final status when its channel is the last to land.
    finish: bool = False


class DeliverOutput(BaseModel):
    """The deliver activity's output (its wire name stays; only the Python name says its layer)."""

    status: DeliveryStatus
    target: str
    provider_message_id: str | None = None
    duplicate: bool = False  # the send ledger already had this send: nothing was sent again
    attempt: int = 0  # which attempt of the activity succeeded (1 = the first)
    # The notification's final status when the delivery's transaction wrote it (or found it
    # written, on a retry). An older worker's output has no such field: not written.
    final_status: NotificationStatus | None = None

    def channel_result(self, channel: Channel, at: datetime | None) -> ChannelResult:
        """The channel as its delivery row records it, landed at `at`."""
        return ChannelResult(
            channel=channel,
            status=self.status,
            target=self.target,
            provider_message_id=self.provider_message_id,
            attempts=self.attempt,
            at=at,
        )


class ClaimInput(BaseModel):
    experiment_id: str
    user_id: str
    variant: str
    notification_id: str | None = None
    claim_id: str  # the enrolment's update id: a retry of the same enrolment is still first


class CountsInput(BaseModel):
    experiment_id: str
    engagement_types: list[str]
    window_seconds: float


class CountsOutput(BaseModel):
    counts: dict[str, ArmCounts] = Field(default_factory=dict)


class FinishInput(BaseModel):
    experiment_id: str
    ending: str
    winner: str | None = None
    reason: str
    outcome: dict[str, Any] = Field(default_factory=dict)
