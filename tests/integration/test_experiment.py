"""An A/B test on the dev server: real email and in-app deliveries, engagement through the
client, the decision taken on the parent's timer, and each arm findable by search attribute."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest_asyncio
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment

from tests.cli.helpers import terminate_queue
from tests.support import Stack, running_stack
from tidings.experiments import Ending


@pytest_asyncio.fixture(loop_scope="session")
async def stack(dev_env: WorkflowEnvironment, tmp_path: Path) -> AsyncIterator[Stack]:
    async with running_stack(dev_env.client, tmp_path) as s:
        await s.seed()
        yield s
        with contextlib.suppress(RPCError):
            await terminate_queue(dev_env.client, s.settings.task_queue)


async def test_real_deliveries_and_engagement_decide(stack: Stack) -> None:
    t = stack.tidings
    ref = await t.create_experiment(
        {
            "id": f"integration_{uuid.uuid4().hex[:8]}",
            "template_id": "welcome",
            "data": {"app_name": "MyApp", "user_name": "friend"},
            "variants": [
                {"name": "plain", "control": True, "channels": ["email", "in_app"]},
                {"name": "warm", "channels": ["email", "in_app"], "data": {"user_name": "dear"}},
            ],
            "metric": "opened",
            "attribution_window": "1h",
            "minimum_sample": 10,
            "check_every": "1s",
            "max_duration": "1h",
        }
    )
    users = [f"i{i}" for i in range(40)]
    for u in users:
        await stack.add_user(u)
    enrolled = [await t.enroll(ref.experiment_id, u) for u in users]
    for e in enrolled:
        assert e.notification_id is not None
        assert (await t.wait_sent(e.notification_id, within=60)).status.value == "sent"
        if e.variant == "warm":
            await t.engage(e.notification_id, "opened")
    handle = t.temporal.get_workflow_handle(ref.workflow_id)
    result = await asyncio.wait_for(handle.result(), timeout=60)
    assert (result["ending"], result["winner"]) == (Ending.WINNER.value, "warm")
    assert len(stack.sink.messages) >= len(enrolled)
    query = f'TidingsExperiment = "{ref.experiment_id}" AND TidingsVariant = "warm"'
    warm = sum(e.variant == "warm" for e in enrolled)
    for _ in range(50):  # visibility is eventually consistent
        found = [wf.id async for wf in t.temporal.list_workflows(query)]
        if len(found) == warm:
            break
        await asyncio.sleep(0.2)
    assert len(found) == warm
