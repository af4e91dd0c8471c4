"""Inputs and outputs of BroadcastWorkflow, its query and its updates (wire contracts)."""

from __future__ import annotations

from typing import Any

from pydantic import AwareDatetime, BaseModel, Field

from tidings.broadcast_models import Audience, BroadcastCounters
from tidings.models import Channel, Priority


class BroadcastState(BaseModel):
    """What one run hands the next at continue-as-new: the cursor and the counters, never
    per-recipient state."""

    cursor: str = ""  # the last user id of the last page planned
    pages: int = 0
    counters: BroadcastCounters = Field(default_factory=BroadcastCounters)
    paused: bool = False
    runs: int = 0
    started_at: AwareDatetime | None = None


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


class BroadcastProgress(BaseModel):
    broadcast_id: str
    status: str  # running | paused | cancelling | cancelled | completed | failed
    pages: int
    cursor: str
    counters: BroadcastCounters
    runs: int = 0
    started_at: AwareDatetime | None = None
    reason: str | None = None


class PauseInput(BaseModel):
    pass


class ResumeInput(BaseModel):
    pass


class CancelBroadcastInput(BaseModel):
    reason: str = Field(default="cancelled by request", max_length=500)
