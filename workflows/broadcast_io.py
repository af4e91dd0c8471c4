"""Inputs and outputs of BroadcastWorkflow, its query and its updates (wire contracts)."""

from __future__ import annotations

from typing import Any

from pydantic import AwareDatetime, BaseModel, Field

from tidings.broadcast_models import Audience, BroadcastCounters, Phase
from tidings.models import Channel, Priority


class RolloutVariant(BaseModel):
    """One arm of a broadcast's experiment, resolved by the front door: what the rest of the
    audience is sent if it wins."""

    name: str
    template_id: str
    template_version: int
    data: dict[str, Any] = Field(default_factory=dict)  # the broadcast's, with the arm's on top
    channels: list[Channel] | None = None


class BroadcastExperiment(BaseModel):
    """The experiment a broadcast runs on a share of its audience before the rollout."""

    experiment_id: str
    share: float  # of the audience, by a hash of broadcast and user id
    control: str  # the fallback when nothing wins
    variants: list[RolloutVariant]
    check_every_seconds: float  # how often the experiment decides, so how often to look
    max_duration_seconds: float  # the experiment's; then the fallback

    def variant(self, name: str | None) -> RolloutVariant:
        wanted = name or self.control
        return next(
            (v for v in self.variants if v.name == wanted),
            next(v for v in self.variants if v.name == self.control),
        )


class SampleState(BaseModel):
    """The experiment's part of the state carried across continue-as-new: a cursor and
    counters, never the sampled ids (the enrolments table holds those)."""

    phase: Phase = Phase.TESTING
    cursor: str = ""  # the last user id read while enrolling the sample
    pages: int = 0
    sampled: int = 0  # users in the test share
    enrolled: dict[str, int] = Field(default_factory=dict)  # per variant
    closed: bool = False  # the experiment ended before the whole sample was enrolled
    waiting_since: AwareDatetime | None = None
    polls: int = 0
    ending: str | None = None  # winner | futility | max_duration | stopped | timeout
    variant: str | None = None  # what the rollout sends
    reason: str | None = None


class BroadcastState(BaseModel):
    """What one run hands the next at continue-as-new: the cursor and the counters, never
    per-recipient state."""

    cursor: str = ""  # the last user id of the last page planned
    pages: int = 0
    counters: BroadcastCounters = Field(default_factory=BroadcastCounters)
    paused: bool = False
    runs: int = 0
    started_at: AwareDatetime | None = None
    test: SampleState | None = None  # set when the broadcast has an experiment


class BroadcastInput(BaseModel):
    broadcast_id: str
    template_id: str
    template_version: int
    audience: Audience
    data: dict[str, Any] = Field(default_factory=dict)
    channels: list[Channel] | None = None
    priority: Priority = Priority.MEDIUM
    page_size: int = 500
    pages_per_run: int = 50  # continue-as-new after this many pages (or when suggested)
    concurrency: int = 20  # sends in flight per batch
    task_queue_base: str = "tidings"
    state: BroadcastState | None = None
    experiment: BroadcastExperiment | None = None


class BroadcastProgress(BaseModel):
    broadcast_id: str
    status: str  # running | paused | cancelling | cancelled | completed | failed
    pages: int
    cursor: str
    counters: BroadcastCounters
    runs: int = 0
    started_at: AwareDatetime | None = None
    reason: str | None = None
    # With an experiment: testing | waiting | rollout, the words the Web UI shows, the test.
    phase: Phase | None = None
    detail: str | None = None
    experiment_id: str | None = None
    variant: str | None = None  # what the rollout sends, once decided
    enrolled: dict[str, int] = Field(default_factory=dict)


class PauseInput(BaseModel):
    pass


class ResumeInput(BaseModel):
    pass


class CancelBroadcastInput(BaseModel):
    reason: str = Field(default="cancelled by request", max_length=500)
