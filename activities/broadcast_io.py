"""Inputs and outputs of the broadcast activities (wire contracts: unknown fields ignored)."""

from __future__ import annotations

from typing import Any

from pydantic import AwareDatetime, BaseModel, Field

from tidings.broadcast_models import Audience, BroadcastCounters
from tidings.models import Channel, Priority


class BroadcastSpec(BaseModel):
    """What every page of one broadcast sends."""

    broadcast_id: str
    template_id: str
    template_version: int
    data: dict[str, Any] = Field(default_factory=dict)
    channels: list[Channel] | None = None
    priority: Priority = Priority.MEDIUM


class PlanPageInput(BaseModel):
    spec: BroadcastSpec
    audience: Audience  # a list of ids arrives already cut to this page by the workflow
    after: str  # keyset cursor: the last user id of the previous page
    limit: int
    batch: int  # the page's number, recorded with each recipient
    now: AwareDatetime  # the workflow's clock: quiet hours and caps are judged at this instant
    # The rollout after an experiment: users enrolled in it (the test share) are not planned.
    exclude_enrolled_in: str | None = None


class PlanPageOutput(BaseModel):
    recipients: int = 0  # user ids on the page (existing users)
    last_user_id: str | None = None  # the next page starts after it; None: the audience is done
    counters: BroadcastCounters = Field(default_factory=BroadcastCounters)
    sendable: dict[Channel, list[str]] = Field(default_factory=dict)
    excluded: int = 0  # ids on the page left out because the experiment had them


class DeliverBatchInput(BaseModel):
    spec: BroadcastSpec
    channel: Channel
    batch: int
    user_ids: list[str]
    concurrency: int = 20


class DeliverBatchOutput(BaseModel):
    sent: int = 0
    failed: int = 0
    resumed_at: int = 0  # the heartbeat index this attempt started from (0: the first attempt)
    already_done: int = 0  # recipients a previous attempt had recorded: not sent again


class RecordBroadcastInput(BaseModel):
    broadcast_id: str
    status: str
    counters: BroadcastCounters
    pages: int
    phase: str | None = None  # with an experiment: what the broadcast is doing, in words
    experiment_id: str | None = None


class EnrolSampleInput(BaseModel):
    broadcast_id: str
    experiment_id: str
    share: float
    audience: Audience  # a list of ids arrives already cut to this page by the workflow
    after: str
    limit: int


class EnrolSampleOutput(BaseModel):
    read: int = 0  # ids on the page
    last_user_id: str | None = None  # None: the audience is done
    sampled: int = 0
    enrolled: dict[str, int] = Field(default_factory=dict)  # per variant, repeats included
    closed: bool = False  # the experiment refused: it has ended


class ExperimentOutcomeInput(BaseModel):
    experiment_id: str


class ExperimentOutcome(BaseModel):
    finished: bool = False
    ending: str | None = None
    winner: str | None = None
    reason: str | None = None


class CreateBroadcastInput(BaseModel):
    """The broadcasts row a scheduled firing starts its broadcast with (idempotent by id)."""

    broadcast_id: str
    template_id: str
    template_version: int
    audience: Audience
    channels: list[Channel] | None = None
    priority: Priority = Priority.MEDIUM
