"""Wire contracts of DigestWorkflow and its activities, and the ids a digest uses.

Plain BaseModel (unknown fields ignored): a newer client or worker may add a field mid-deploy.
"""

from __future__ import annotations

from pydantic import AwareDatetime, BaseModel, Field

from tidings.digests import DigestDefinition
from workflows.broadcast_io import BroadcastInput
from workflows.io import NotificationInput


def digest_workflow_id(user_id: str, key: str) -> str:
    """One DigestWorkflow per user and key: every event of theirs signals this id."""
    return f"digest/{user_id}/{key}"


def digest_notification_id(user_id: str, key: str, batch: int) -> str:
    """The notification that sends batch `batch`: one per batch by construction, so a retried
    send finds the notification it started before and starts nothing."""
    return f"digest:{user_id}:{key}:{batch}"


class DigestState(BaseModel):
    """Counters, never per-event state: what one run hands the next at continue-as-new."""

    batch: int = 1  # the number the next sealed batch gets
    pending: int = 0  # events signalled since the last seal (a hint: the seal counts exactly)
    max_seq: int = 0  # the highest event row seq signalled or read: a lower one is a repeat
    received: int = 0  # new events signalled, all runs
    repeats: int = 0  # signals for an event seen before (a repeated event id), all runs
    batches_sent: int = 0
    events_sent: int = 0
    last_notification_id: str | None = None
    closes_at: AwareDatetime | None = None  # of the open window; None when none is open
    runs: int = 1


class DigestInput(BaseModel):
    user_id: str
    key: str
    task_queue_base: str = "tidings"
    # Continue-as-new at this many history events (or earlier when the server suggests it).
    event_budget: int = Field(default=2_000, ge=100)
    state: DigestState | None = None  # None on the first run


class DigestEventSignal(BaseModel):
    """An event was stored (`seq` is its row): sent by the front door after the write."""

    event_id: str
    seq: int


class FlushSignal(BaseModel):
    reason: str = "flushed by request"


class DigestStatus(BaseModel):
    user_id: str
    key: str
    running: bool = True
    pending: int = 0
    next_batch: int = 1
    batches_sent: int = 0
    events_sent: int = 0
    received: int = 0
    repeats: int = 0
    closes_at: AwareDatetime | None = None
    last_notification_id: str | None = None
    runs: int = 1


# --- activities ----------------------------------------------------------------------------------


class OpenDigestInput(BaseModel):
    user_id: str
    key: str


class OpenDigestOutput(BaseModel):
    definition: DigestDefinition
    timezone: str = "UTC"  # the user's, for a scheduled digest
    pending: int = 0
    max_seq: int = 0
    next_batch: int = 1


class SealInput(BaseModel):
    user_id: str
    key: str
    batch: int


class SealOutput(BaseModel):
    total: int  # events in the sealed batch


class SendDigestInput(BaseModel):
    user_id: str
    key: str
    batch: int
    task_queue_base: str = "tidings"


class SendDigestOutput(BaseModel):
    notification_id: str | None = None  # None when the batch was empty
    total: int = 0
    started: bool = True  # False: an earlier attempt had started it already


class FlushDigestInput(BaseModel):
    user_id: str
    key: str
    task_queue_base: str = "tidings"
    reason: str = "flushed by a schedule"


# --- ScheduledSendWorkflow (one firing of a recurring send) --------------------------------------


class ScheduledSendInput(BaseModel):
    schedule_id: str
    task_queue_base: str = "tidings"
    # Exactly one action: a notification prepared at creation (template version pinned; its
    # notification_id is replaced by one made of the schedule and the scheduled time) ...
    notification: NotificationInput | None = None
    # ... or a flush of one user's digest.
    digest_user_id: str | None = None
    digest_key: str | None = None
    # ... or a broadcast checked at creation (template version pinned; its broadcast_id is
    # replaced by one made of the schedule and the scheduled time).
    broadcast: BroadcastInput | None = None


class ScheduledSendResult(BaseModel):
    scheduled_at: AwareDatetime
    notification_id: str | None = None
    broadcast_id: str | None = None
    started: bool = True  # False: this scheduled time had been sent already
