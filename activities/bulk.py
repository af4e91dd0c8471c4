"""The fan-out of a bulk accepted durably: start the recipients' NotificationWorkflows a page at
a time, from the rows the accepting transaction wrote (`tidings.store.bulks`).

Each start has the recipient's deterministic workflow id with USE_EXISTING, and a run that has
finished already answers WorkflowAlreadyStartedError: both are the recipient started, so a page
retried after a crash starts nobody twice. The page heartbeats the position every chunk of
starts has reached and a retry resumes there.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

from temporalio import activity
from temporalio.exceptions import WorkflowAlreadyStartedError

from tidings.bulks import BulkPageInput, BulkPageOutput
from tidings.store import Store
from workflows.io import NotificationInput
from workflows.starts import start_notification as start_run

# Called with the position reached at each heartbeat (tests use it to fail a page half-way
# and watch the retry resume).
AfterChunk = Callable[[int], Awaitable[None]]


class BulkActivities:
    def __init__(self, store: Store, *, after_chunk: AfterChunk | None = None) -> None:
        self._store = store
        self._after_chunk = after_chunk

    @activity.defn(name="start_bulk_page")
    async def start_page(self, input: BulkPageInput) -> BulkPageOutput:
        details = activity.info().heartbeat_details
        resumed = max(input.from_position, int(details[0]) if details else 0)
        rows = await self._store.bulk_page(input.bulk_id, resumed, input.limit)
        if rows is None:  # released: its start failed at the client, which said so
            return BulkPageOutput(next_position=resumed, started=0, done=True)
        if not rows:  # nothing left at or after `resumed`
            await self._store.record_bulk_progress(input.bulk_id, resumed, done=True)
            return BulkPageOutput(next_position=resumed, started=0, done=True)
        reached = await self._start_all(rows, resumed, input.concurrency)
        done = len(rows) < input.limit
        await self._store.record_bulk_progress(input.bulk_id, reached, done=done)
        return BulkPageOutput(next_position=reached, started=len(rows), done=done)

    async def _start_all(
        self, rows: list[tuple[int, dict[str, Any]]], resumed: int, concurrency: int
    ) -> int:
        """Starts every row with `concurrency` starts in flight (a sliding window: one slow
        start does not hold the others back), heartbeating the position below which every
        row is started; returns the position after the last row."""
        slots = asyncio.Semaphore(concurrency)
        finished: set[int] = set()
        order = [position for position, _ in rows]
        state = {"next": 0, "reached": resumed, "beat": resumed}

        async def start(position: int, payload: dict[str, Any]) -> None:
            async with slots:
                await start_notification(payload)
            finished.add(position)
            advanced = False
            while state["next"] < len(order) and order[state["next"]] in finished:
                state["reached"] = order[state["next"]] + 1
                state["next"] += 1
                advanced = True
            # A heartbeat encodes its details: one per `concurrency` starts, not one per start.
            if advanced and state["reached"] - state["beat"] >= concurrency:
                state["beat"] = state["reached"]
                activity.heartbeat(state["reached"])
                if self._after_chunk is not None:
                    await self._after_chunk(state["reached"])

        await asyncio.gather(*(start(position, payload) for position, payload in rows))
        return state["reached"]


async def start_notification(payload: dict[str, Any]) -> None:
    """Start one recipient's run as the client starts any notification."""
    prepared = NotificationInput.model_validate(payload)
    # Finished already: an earlier attempt (or an earlier send with the same key) started it.
    with contextlib.suppress(WorkflowAlreadyStartedError):
        await start_run(activity.client(), prepared)
