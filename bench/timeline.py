"""Where one notification's time went, from its workflow history: the queue waits say whether
the task queues isolated it; the rest is time spent on resources every queue shares (the worker's
event loop, the store's connection pool, the server)."""

from __future__ import annotations

import asyncio

from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import Client

from tidings.models import Channel
from workflows.queues import workflow_id

_WT_SCHEDULED = EventType.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED
_WT_STARTED = EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED
_ACT_SCHEDULED = EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
_ACT_STARTED = EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED


def _at(event: HistoryEvent) -> float:
    return event.event_time.ToMicroseconds() / 1e6


def _first(events: list[HistoryEvent], kind: int) -> HistoryEvent | None:
    return next((e for e in events if e.event_type == kind), None)


def _email_scheduled(events: list[HistoryEvent]) -> HistoryEvent | None:
    for e in events:
        if e.event_type == _ACT_SCHEDULED:
            queue = e.activity_task_scheduled_event_attributes.task_queue.name
            if f"-{Channel.EMAIL.value}" in queue:
                return e
    return None


def _started_for(events: list[HistoryEvent], scheduled_id: int) -> HistoryEvent | None:
    for e in events:
        attributes = e.activity_task_started_event_attributes
        if e.event_type == _ACT_STARTED and attributes.scheduled_event_id == scheduled_id:
            return e
    return None


async def delivery_stages(
    client: Client, notification_id: str, *, called: float, returned: float, received: float
) -> dict[str, float]:
    """Seconds per stage from the notify call to the email at the sink. The activity's started
    event is written only when the attempt ends, so this waits (up to 10 s) for that."""
    handle = client.get_workflow_handle(workflow_id(notification_id))
    events: list[HistoryEvent] = []
    scheduled: HistoryEvent | None = None
    for _ in range(100):
        events = list((await handle.fetch_history()).events)
        scheduled = _email_scheduled(events)
        if scheduled is not None and _started_for(events, scheduled.event_id) is not None:
            break
        await asyncio.sleep(0.1)
    stages = {"notify() call: store reads, rendering, start": returned - called}
    wt_scheduled, wt_started = _first(events, _WT_SCHEDULED), _first(events, _WT_STARTED)
    if wt_scheduled is None or wt_started is None or scheduled is None:
        return stages
    stages["workflow task queue wait"] = _at(wt_started) - _at(wt_scheduled)
    stages["workflow tasks up to the send (record + plan local activities)"] = _at(scheduled) - _at(
        wt_started
    )
    started = _started_for(events, scheduled.event_id)
    if started is None:
        return stages
    stages["email activity queue wait"] = _at(started) - _at(scheduled)
    stages["email activity until the sink has it"] = received - _at(started)
    return stages
