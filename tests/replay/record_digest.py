"""Record DigestWorkflow and ScheduledSendWorkflow histories for the replay test.

    .venv/bin/python -m tests.replay.record_digest v1            # digests
    .venv/bin/python -m tests.replay.record_digest scheduled v1  # one firing of a schedule
    .venv/bin/python -m tests.replay.record_digest scheduled-broadcast v2  # a broadcast firing

A window that closes on time with a repeated event, and a digest that continues as new (a tiny
event budget) and is then flushed: its first and its last run. Keep the files of every version:
the replay test must go on replaying them all.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from datetime import timedelta
from pathlib import Path

from temporalio.client import WorkflowHandle

from starter.client_broadcasts import BroadcastRequest
from tests.conftest import start_time_skipping
from tests.replay.record import WELCOME, _save
from tests.support import running_stack
from tidings.models import Channel, NotificationRequest
from workflows.digest import DigestWorkflow
from workflows.digest_io import (
    DigestEventSignal,
    DigestInput,
    DigestStatus,
    ScheduledSendInput,
    digest_workflow_id,
)
from workflows.scheduled import ScheduledSendWorkflow

TEMPLATE = {
    "id": "comment_digest",
    "channels": ["in_app"],
    "content": {
        "subject": "{{ total }} new comments",
        "text": "{% for e in events %}{{ e.id }} {% endfor %}and {{ omitted }} more",
    },
    "sample_data": {"total": 1, "omitted": 0, "events": [{"id": "c1"}]},
}


async def record_digest(version: str) -> None:
    env = await start_time_skipping()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            async with running_stack(env.client, Path(tmp)) as stack:
                await stack.seed()
                t = stack.tidings
                await t.register_template(TEMPLATE)
                await t.register_digest(
                    key="comments", template_id="comment_digest", window_seconds=3600
                )
                for event_id in ("c1", "c2", "c1"):
                    await t.digest_event("user_001", "comments", event_id, {"by": "ann"})
                await env.sleep(timedelta(hours=2))
                window: WorkflowHandle[object, DigestStatus] = env.client.get_workflow_handle(
                    digest_workflow_id("user_001", "comments"), result_type=DigestStatus
                )
                print(await window.result())
                await _save(window, f"digest_{version}_window")

                continued = await env.client.start_workflow(
                    DigestWorkflow.run,
                    DigestInput(
                        user_id="user_002",
                        key="comments",
                        task_queue_base=stack.settings.task_queue,
                        event_budget=100,
                    ),
                    id=digest_workflow_id("user_002", "comments"),
                    task_queue=stack.settings.task_queue,
                    start_signal="event",
                    start_signal_args=[DigestEventSignal(event_id="none", seq=0)],
                )
                first_run = (await continued.describe()).run_id
                for i in range(40):
                    await t.digest_event("user_002", "comments", f"c{i}")
                await t.flush_digest("user_002", "comments")
                await env.sleep(timedelta(minutes=1))
                last: WorkflowHandle[object, DigestStatus] = env.client.get_workflow_handle(
                    continued.id, result_type=DigestStatus
                )
                status = await last.result()
                print(status)
                assert status.runs >= 2, "the recording must include a continue-as-new"
                await _save(
                    env.client.get_workflow_handle(continued.id, run_id=first_run),
                    f"digest_{version}_first_run",
                )
                await _save(last, f"digest_{version}_continued")
    finally:
        await env.shutdown()


async def record_scheduled(version: str) -> None:
    """A firing that sends its notification, the same scheduled time started again (sends
    nothing), and a firing that flushes a digest. Started directly with a schedule's workflow id
    (the time-skipping server has no Schedules; the time is read from the id's suffix)."""
    env = await start_time_skipping()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            async with running_stack(env.client, Path(tmp)) as stack:
                await stack.seed()
                t = stack.tidings
                queue = stack.settings.task_queue
                request = NotificationRequest(
                    user_id="user_001",
                    template_id="welcome",
                    data=WELCOME,
                    channels=[Channel.IN_APP],
                )
                action = ScheduledSendInput(
                    schedule_id="replay",
                    task_queue_base=queue,
                    notification=await t._prepare(request),
                )
                wf_id = "scheduled/replay-2031-03-30T07:00:00Z"
                runs = []
                for _ in range(2):
                    handle = await env.client.start_workflow(
                        ScheduledSendWorkflow.run, action, id=wf_id, task_queue=queue
                    )
                    print(await handle.result())
                    runs.append(env.client.get_workflow_handle(wf_id, run_id=handle.run_id))
                await _save(runs[0], f"scheduled_{version}_notification")
                await _save(runs[1], f"scheduled_{version}_repeat")
                await t.register_template(TEMPLATE)
                await t.register_digest(key="news", template_id="comment_digest")
                await t.digest_event("user_001", "news", "n1")
                flush = await env.client.start_workflow(
                    ScheduledSendWorkflow.run,
                    ScheduledSendInput(
                        schedule_id="replay-digest",
                        task_queue_base=queue,
                        digest_user_id="user_001",
                        digest_key="news",
                    ),
                    id="scheduled/replay-digest-2031-03-30T07:00:00Z",
                    task_queue=queue,
                )
                print(await flush.result())
                await _save(
                    env.client.get_workflow_handle(flush.id, run_id=flush.run_id),
                    f"scheduled_{version}_digest",
                )
    finally:
        await env.shutdown()


async def record_scheduled_broadcast(version: str) -> None:
    """A firing whose action is a broadcast (recorded from v2): the broadcast's row, then its
    workflow started under the schedule's and the time's id."""
    env = await start_time_skipping()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            async with running_stack(env.client, Path(tmp)) as stack:
                await stack.seed()
                queue = stack.settings.task_queue
                action = ScheduledSendInput(
                    schedule_id="replay-bc",
                    task_queue_base=queue,
                    broadcast=await stack.tidings._prepare_broadcast(
                        BroadcastRequest("welcome", ["user_001", "user_002"], WELCOME, ["in_app"])
                    ),
                )
                handle = await env.client.start_workflow(
                    ScheduledSendWorkflow.run,
                    action,
                    id="scheduled/replay-bc-2031-03-30T07:00:00Z",
                    task_queue=queue,
                )
                print(await handle.result())
                await _save(
                    env.client.get_workflow_handle(handle.id, run_id=handle.run_id),
                    f"scheduled_{version}_broadcast",
                )
    finally:
        await env.shutdown()


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "scheduled-broadcast":
        asyncio.run(record_scheduled_broadcast(sys.argv[2] if len(sys.argv) > 2 else "v2"))
    elif len(sys.argv) > 1 and sys.argv[1] == "scheduled":
        asyncio.run(record_scheduled(sys.argv[2] if len(sys.argv) > 2 else "v1"))
    else:
        asyncio.run(record_digest(sys.argv[1] if len(sys.argv) > 1 else "v1"))
