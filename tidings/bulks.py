"""Bulks accepted durably: what a bulk is once accepted, and the contracts of its fan-out.

A bulk above the inline threshold is not started recipient by recipient inside the call: its
recipients are checked, their idempotency keys claimed and their notification rows written in
one transaction, and one `BulkStartWorkflow` (`bulk/<id>`) starts their NotificationWorkflows a
page at a time. The call returns as soon as the transaction commits and the fan-out is started,
so acceptance costs the database, not one Temporal start per recipient.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, Field

# Bulks of at most this many recipients to start are started inline, as before (one call, no
# fan-out workflow): below it the fan-out's own start and pages cost more than they save.
DEFAULT_INLINE_MAX = 100
# Recipients per fan-out activity: a page's rows are read in one query and its starts heartbeat
# as they go. 100,000 recipients are 200 pages; the run continues as new every PAGES_PER_RUN.
PAGE_SIZE = 500
PAGES_PER_RUN = 20
# Starts in flight at once inside one page: enough to hide the round trip to the server, few
# enough not to queue thousands of RPCs in the worker.
START_CONCURRENCY = 64


def bulk_workflow_id(bulk_id: str) -> str:
    return f"bulk/{bulk_id}"


def bulk_queue(base: str) -> str:
    """The fan-outs' own task queue: their pages of starts never wait behind notification
    workflow tasks, and a deployment can run them in processes of their own."""
    return f"{base}-bulk"


class BulkStatus(StrEnum):
    ACCEPTED = "accepted"  # committed; the fan-out has not started a page yet
    STARTING = "starting"  # the fan-out is starting the recipients' runs
    STARTED = "started"  # every accepted recipient's run has been started
    FAILED = "failed"  # the fan-out could not be started: claims and rows were released


class BulkRecord(BaseModel):
    """A bulk as recorded: `total` recipients accepted, `started` of them with a run so far."""

    bulk_id: str
    template_id: str
    total: int
    started: int
    status: BulkStatus
    reason: str | None = None
    created_at: datetime
    updated_at: datetime


class BulkStartInput(BaseModel):
    """The fan-out's input, carried across continue-as-new with the position reached."""

    bulk_id: str
    next_position: int = 0
    page_size: int = Field(default=PAGE_SIZE, ge=1)
    pages_per_run: int = Field(default=PAGES_PER_RUN, ge=1)
    concurrency: int = Field(default=START_CONCURRENCY, ge=1)
    runs: int = 0  # continue-as-new count, for the Web UI


class BulkPageInput(BaseModel):
    bulk_id: str
    from_position: int
    limit: int
    concurrency: int = START_CONCURRENCY


class BulkPageOutput(BaseModel):
    next_position: int
    started: int  # runs started (or found existing) by this page
    done: bool  # no recipient left at or after next_position


__all__ = [
    "DEFAULT_INLINE_MAX",
    "PAGES_PER_RUN",
    "PAGE_SIZE",
    "START_CONCURRENCY",
    "BulkPageInput",
    "BulkPageOutput",
    "BulkRecord",
    "BulkStartInput",
    "BulkStatus",
    "bulk_queue",
    "bulk_workflow_id",
]
