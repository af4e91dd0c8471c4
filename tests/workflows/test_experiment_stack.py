"""An A/B test through the client against the real worker (store, activities, in-app deliveries)
on the time-skipping server: create, enrol, engage, decide, refuse; bad input writes nothing."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment

from tests.support import Stack, running_stack
from tidings.errors import Conflict, InvalidRequest, NotFound
from tidings.experiments import Ending
from workflows.queues import experiment_workflow_id, workflow_id

WELCOME = {"app_name": "MyApp", "user_name": "friend"}


@pytest_asyncio.fixture(loop_scope="session")
async def stack(time_env: WorkflowEnvironment, tmp_path: Path) -> AsyncIterator[Stack]:
    async with running_stack(time_env.client, tmp_path) as s:
        await s.seed()
        yield s


def experiment(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": f"t{uuid.uuid4().hex[:10]}",
        "template_id": "welcome",
        "data": WELCOME,
        "variants": [
            {"name": "plain", "control": True, "channels": ["in_app"]},
            {"name": "warm", "channels": ["in_app"], "data": {"user_name": "dear friend"}},
        ],
        "metric": "converted",
        "attribution_window": "1h",
        "minimum_sample": 10,
        "check_every": "10m",
        "max_duration": "1d",
    }
    data.update(overrides)
    return data


async def _clean_up(stack: Stack, experiment_id: str, users: list[str]) -> None:
    client = stack.tidings.temporal
    for user in users:
        with contextlib.suppress(RPCError):
            await client.get_workflow_handle(workflow_id(f"exp-{experiment_id}-{user}")).terminate(
                "test finished"
            )
    with contextlib.suppress(RPCError):
        await client.get_workflow_handle(experiment_workflow_id(experiment_id)).terminate(
            "test finished"
        )


async def test_a_test_decides_on_real_engagement(
    stack: Stack, time_env: WorkflowEnvironment
) -> None:
    t = stack.tidings
    ref = await t.create_experiment(experiment())
    exp_id = ref.experiment_id
    users = [f"p{i}" for i in range(40)]
    try:
        for u in users:
            await stack.add_user(u)
        enrolled = {u: await t.enroll(exp_id, u) for u in users}
        assert {e.variant for e in enrolled.values()} == {"plain", "warm"}
        again = await t.enroll(exp_id, users[0])
        assert again.duplicate and again.variant == enrolled[users[0]].variant
        for e in enrolled.values():
            assert e.notification_id is not None
            sent = await t.wait_sent(e.notification_id)
            assert sent.status.value == "sent", sent
            if e.variant == "warm":
                await t.engage(e.notification_id, "converted")
        stored = await t.store.get_notification(enrolled[users[0]].notification_id or "")
        assert stored is not None
        await time_env.sleep(timedelta(minutes=11))
        results = await t.experiment_results(exp_id)
        assert (results.ending, results.winner) == (Ending.WINNER, "warm"), results
        warm = results.counts["warm"]
        assert warm.delivered == warm.reached == results.enrolled["warm"]
        record = await t.store.get_experiment(exp_id)
        assert record is not None and (record.status, record.winner) == ("finished", "warm")
        listed = await t.list_experiments()
        assert exp_id in [r.id for r in listed]
        with pytest.raises(Conflict, match="finished"):
            await t.enroll(exp_id, users[1])
    finally:
        await _clean_up(stack, exp_id, users)


async def test_bad_input_names_the_field_and_writes_nothing(stack: Stack) -> None:
    t = stack.tidings
    bad = experiment()
    bad["variants"][1]["template_id"] = "nope"
    with pytest.raises(InvalidRequest) as raised:
        await t.create_experiment(bad)
    assert raised.value.field == "variants[1].template_id"
    assert await t.store.get_experiment(bad["id"]) is None
    with pytest.raises(RPCError):
        await t.temporal.get_workflow_handle(experiment_workflow_id(bad["id"])).describe()
    with pytest.raises(InvalidRequest) as raised:
        await t.create_experiment(experiment(split=[60, 30]))
    assert raised.value.field == "split"
    with pytest.raises(InvalidRequest) as raised:
        await t.create_experiment(experiment(attribution_window="30d"))
    assert raised.value.field == "attribution_window"
    with pytest.raises(NotFound):
        await t.enroll("missing", "user_001")

    ref = await t.create_experiment(experiment())
    try:
        with pytest.raises(InvalidRequest) as raised:
            await t.enroll(ref.experiment_id, "nobody")
        assert raised.value.field == "user_id"
        with pytest.raises(Conflict, match="different configuration"):
            await t.create_experiment(experiment(id=ref.experiment_id, metric="opened"))
        stopped = await t.stop_experiment(ref.experiment_id, "changed my mind")
        assert (stopped.ending, stopped.reason) == (Ending.STOPPED, "changed my mind")
        with pytest.raises(Conflict, match="finished"):
            await t.enroll(ref.experiment_id, "user_001")
        with pytest.raises(Conflict):
            await t.stop_experiment(ref.experiment_id)
        after = await t.experiment_results(ref.experiment_id)
        assert after.ending is Ending.STOPPED
    finally:
        await _clean_up(stack, ref.experiment_id, [])
