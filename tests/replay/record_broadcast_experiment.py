"""Record broadcast v3 histories: a broadcast with an experiment on a share of its audience.

    .venv/bin/python -m tests.replay.record_broadcast_experiment

On the dev server (the experiment decides on its own clock, looked at every second): the first
run (enrolling the test share), the last run (waiting across continue-as-new, then the winner's
rollout), and one cancelled while it waited for its experiment.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
from pathlib import Path

from sqlalchemy import select
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment

from starter.dev.devserver import start_retrying
from tests.conftest import BIN
from tests.replay.record import _save
from tests.support import Stack, running_stack
from tests.workflows.test_broadcast_experiment import experiment
from tidings.broadcast_models import Phase
from tidings.store.tables import EnrolmentRow
from workflows.converter import DATA_CONVERTER
from workflows.queues import experiment_workflow_id, workflow_id
from workflows.search_attributes import ALL

WELCOME = {"app_name": "MyApp", "user_name": "John"}


async def record() -> None:
    env = await start_retrying(
        lambda: WorkflowEnvironment.start_local(
            data_converter=DATA_CONVERTER,
            dev_server_existing_path=str(BIN / "temporal"),
            search_attributes=ALL,
        )
    )
    try:
        with tempfile.TemporaryDirectory() as tmp:
            async with running_stack(env.client, Path(tmp)) as stack:
                await stack.seed()
                t = stack.tidings
                users = [f"r{i:03d}" for i in range(100)]
                for user_id in users:
                    await stack.add_user(user_id)
                ref = await t.broadcast(
                    "welcome",
                    users,
                    WELCOME,
                    channels=["in_app"],
                    broadcast_id="replay_v3",
                    page_size=25,
                    pages_per_run=3,
                    experiment=experiment(check_every="1s", max_duration="1h"),
                )
                handle = env.client.get_workflow_handle(ref.workflow_id)
                first_run = (await handle.describe()).run_id
                while (progress := await t.broadcast_progress("replay_v3")).phase is Phase.TESTING:
                    await asyncio.sleep(0.2)
                experiment_id = progress.experiment_id or ""
                nids = [f"exp-{experiment_id}-{u}" for u in users]
                await _engage_warm(stack, experiment_id)
                await handle.result()
                await _save(
                    env.client.get_workflow_handle(ref.workflow_id, run_id=first_run),
                    "broadcast_v3_experiment_first_run",
                )
                await _save(handle, "broadcast_v3_experiment_completed")
                await _terminate(env, experiment_id, nids)

                other = await t.broadcast(
                    "welcome",
                    users[:20],
                    WELCOME,
                    channels=["in_app"],
                    broadcast_id="replay_v3_cancelled",
                    experiment=experiment(check_every="10m", max_duration="1h"),
                )
                while (p := await t.broadcast_progress(other.broadcast_id)).phase is not (
                    Phase.WAITING
                ):
                    await asyncio.sleep(0.2)
                await t.pause_broadcast(other.broadcast_id)
                await t.resume_broadcast(other.broadcast_id)
                await t.cancel_broadcast(other.broadcast_id, "replay fixture")
                cancelled = env.client.get_workflow_handle(other.workflow_id)
                await cancelled.result()
                await _save(cancelled, "broadcast_v3_experiment_cancelled")
                await _terminate(
                    env, p.experiment_id or "", [f"exp-{p.experiment_id}-{u}" for u in users]
                )
    finally:
        await env.shutdown()


async def _engage_warm(stack: Stack, experiment_id: str) -> None:
    """Convert every user the experiment put in the warm arm: it wins at the next check."""
    async with stack.store.engine.connect() as conn:
        rows = await conn.execute(
            select(EnrolmentRow.variant, EnrolmentRow.notification_id).where(
                EnrolmentRow.experiment_id == experiment_id
            )
        )
        enrolled = rows.all()
    for variant, nid in enrolled:
        if nid is None:
            continue
        await stack.tidings.wait_sent(nid)
        if variant == "warm":
            await stack.tidings.engage(nid, "converted")


async def _terminate(env: WorkflowEnvironment, experiment_id: str, nids: list[str]) -> None:
    for nid in nids:
        with contextlib.suppress(RPCError):
            await env.client.get_workflow_handle(workflow_id(nid)).terminate("recorded")
    with contextlib.suppress(RPCError):
        await env.client.get_workflow_handle(experiment_workflow_id(experiment_id)).terminate(
            "recorded"
        )


if __name__ == "__main__":
    asyncio.run(record())
