"""Record BulkStartWorkflow histories for the replay test.

    .venv/bin/python -m tests.replay.record_bulk v1

A bulk accepted durably whose fan-out starts everyone in one page (the client's own start), and
one walked in pages of 3 that continues as new every 2 pages: its first run and its last. Keep
the files of every version: the replay test must go on replaying them all.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from pathlib import Path
from typing import Any

from starter.client import BulkResult
from tests.conftest import start_time_skipping
from tests.replay.record import WELCOME, _save
from tests.support import RecordingTidings, running_stack
from tidings.bulks import BulkStartInput, bulk_queue, bulk_workflow_id
from workflows.bulk import BulkStartWorkflow


class _AcceptOnly(RecordingTidings):
    """Accepts bulks durably but leaves their fan-out to the caller."""

    async def _start_fanout(self, bulk_id: str) -> str | None:
        return None


async def record_bulk(version: str) -> None:
    env = await start_time_skipping()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            async with running_stack(env.client, Path(tmp), bulk_inline_max=2) as stack:
                await stack.seed()
                users = [f"bulk_{i:02d}" for i in range(12)]
                for user_id in users:
                    await stack.add_user(user_id)
                t = stack.tidings
                fields: dict[str, Any] = {"data": WELCOME, "channels": ["in_app"]}
                one: BulkResult = await t.notify_many(users[:5], "welcome", **fields)
                assert one.bulk_id is not None and one.accepted == 5
                handle = env.client.get_workflow_handle(bulk_workflow_id(one.bulk_id))
                await handle.result()
                await _save(handle, f"bulk_{version}_one_page")

                quiet = _AcceptOnly(t.settings, t.store, t.temporal)
                quiet.started = []
                paged = await quiet.notify_many(users, "welcome", **fields)
                t.started += quiet.started
                assert paged.bulk_id is not None and paged.accepted == 12
                started = await env.client.start_workflow(
                    BulkStartWorkflow.run,
                    BulkStartInput(bulk_id=paged.bulk_id, page_size=3, pages_per_run=2),
                    id=bulk_workflow_id(paged.bulk_id),
                    task_queue=bulk_queue(t.settings.task_queue),
                )
                await started.result()
                first = env.client.get_workflow_handle(
                    started.id, run_id=started.first_execution_run_id
                )
                await _save(first, f"bulk_{version}_first_run")
                await _save(env.client.get_workflow_handle(started.id), f"bulk_{version}_last_run")
    finally:
        await env.shutdown()


if __name__ == "__main__":
    asyncio.run(record_bulk(sys.argv[1] if len(sys.argv) > 1 else "v1"))
