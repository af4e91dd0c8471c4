"""Record DigestWorkflow histories for the replay test.

    .venv/bin/python -m tests.replay.record_digest v1

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

from tests.conftest import start_time_skipping
from tests.replay.record import _save
from tests.support import running_stack
from workflows.digest import DigestWorkflow
from workflows.digest_io import DigestEventSignal, DigestInput, DigestStatus, digest_workflow_id

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


if __name__ == "__main__":
    asyncio.run(record_digest(sys.argv[1] if len(sys.argv) > 1 else "v1"))
