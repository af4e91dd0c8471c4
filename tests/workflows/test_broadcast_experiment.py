"""A broadcast that runs an A/B test on a share of its audience first, through the client against
the real worker (store, experiment, in-app deliveries) on the time-skipping server: the test
share is enrolled, engagement makes the experiment decide, the broadcast waits for it across
continue-as-new and sends the winner to everyone else exactly once; bad input starts nothing."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from sqlalchemy import select
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment

from tests.support import Stack, running_stack
from tests.workflows.test_broadcast import add_users, result_of
from tidings.broadcast_models import Phase, in_sample, notification_id
from tidings.errors import InvalidRequest
from tidings.store.broadcasts import BroadcastRecord
from tidings.store.tables import EnrolmentRow, InboxRow
from workflows.broadcast_io import BroadcastProgress
from workflows.queues import broadcast_workflow_id, experiment_workflow_id, workflow_id

WELCOME = {"app_name": "MyApp", "user_name": "friend"}


@pytest_asyncio.fixture(loop_scope="session")
async def stack(dev_env: WorkflowEnvironment, tmp_path: Path) -> AsyncIterator[Stack]:
    # The dev server: the experiment decides on its own clock within seconds (check_every 1s).
    async with running_stack(dev_env.client, tmp_path) as s:
        await s.seed()
        yield s


def experiment(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "share": 0.5,
        "variants": [
            {"name": "plain", "control": True},
            {"name": "warm", "data": {"user_name": "dear friend"}},
        ],
        "metric": "converted",
        "attribution_window": "1h",
        "minimum_sample": 10,
        "check_every": "10m",
        "max_duration": "1d",
    }
    data.update(overrides)
    return data


async def enrolments(stack: Stack, experiment_id: str) -> dict[str, tuple[str, str | None]]:
    async with stack.store.engine.connect() as conn:
        rows = await conn.execute(
            select(EnrolmentRow.user_id, EnrolmentRow.variant, EnrolmentRow.notification_id).where(
                EnrolmentRow.experiment_id == experiment_id
            )
        )
        return {u: (v, n) for u, v, n in rows.all()}


async def inbox_of(stack: Stack, prefix: str) -> list[tuple[str, str, str]]:
    async with stack.store.engine.connect() as conn:
        rows = await conn.execute(
            select(InboxRow.user_id, InboxRow.notification_id, InboxRow.body).where(
                InboxRow.user_id.like(f"{prefix}%")
            )
        )
        return [(u, n, b) for u, n, b in rows.all()]


async def progress_until(stack: Stack, broadcast_id: str, phase: Phase) -> BroadcastProgress:
    progress = None
    for _ in range(600):
        try:
            progress = await stack.tidings.broadcast_progress(broadcast_id)
        except RPCError as e:
            # A query can time out while the loaded worker is busy with the test share's
            # notifications; ask again.
            if "Timeout" not in str(e):
                raise
            continue
        if progress.phase is phase:
            return progress
        await asyncio.sleep(0.1)
    raise AssertionError(f"broadcast {broadcast_id} never reached {phase}: {progress}")


async def record_until(stack: Stack, broadcast_id: str, phase: str) -> BroadcastRecord:
    record = None
    for _ in range(600):
        record = await stack.tidings.store.get_broadcast(broadcast_id)
        if record is not None and record.phase == phase:
            return record
        await asyncio.sleep(0.1)
    raise AssertionError(f"broadcast {broadcast_id}'s record never said {phase!r}: {record}")


async def clean_up(stack: Stack, experiment_id: str, notification_ids: list[str]) -> None:
    client = stack.tidings.temporal
    for nid in notification_ids:
        with contextlib.suppress(RPCError):
            await client.get_workflow_handle(workflow_id(nid)).terminate("test finished")
    with contextlib.suppress(RPCError):
        await client.get_workflow_handle(experiment_workflow_id(experiment_id)).terminate(
            "test finished"
        )


async def test_the_winner_goes_to_the_rest_once_after_waiting_across_continue_as_new(
    stack: Stack,
) -> None:
    t = stack.tidings
    prefix = f"x{uuid.uuid4().hex[:5]}_"
    ids = await add_users(stack, prefix, 100)
    bid = f"exp-{uuid.uuid4().hex[:8]}"
    ref = await t.broadcast(
        "welcome",
        ids,
        WELCOME,
        channels=["in_app"],
        broadcast_id=bid,
        page_size=20,
        pages_per_run=2,  # continue-as-new while enrolling and while waiting
        # Looks every second, so it continues as new while the engagement comes in.
        experiment=experiment(check_every="1s", max_duration="1h"),
    )
    waiting = await progress_until(stack, ref.broadcast_id, Phase.WAITING)
    experiment_id = waiting.experiment_id
    assert experiment_id is not None and waiting.detail == f"waiting for experiment {experiment_id}"
    enrolled = await enrolments(stack, experiment_id)
    try:
        # The sample is the hash's, and nobody outside it was enrolled.
        assert set(enrolled) == {u for u in ids if in_sample(bid, u, 0.5)}
        assert sum(waiting.enrolled.values()) == len(enrolled)
        assert {v for v, _ in enrolled.values()} == {"plain", "warm"}
        # Read before any conversion: once the warm arm converts, the experiment may decide
        # within a second (check_every) and the record moves on to the rollout. The run's
        # record of a step follows its query (a local activity after the step), so wait for it.
        record = await record_until(stack, bid, waiting.detail)
        assert record.experiment_id == experiment_id
        for variant, nid in enrolled.values():
            assert nid is not None
            sent = await t.wait_sent(nid)
            assert sent.status.value == "sent", sent
            if variant == "warm":
                await t.engage(nid, "converted")
        done = await result_of(stack, bid)
        assert done.status == "completed", done
        assert (done.phase, done.variant) == (Phase.ROLLOUT, "warm"), done
        assert done.runs >= 3  # continued as new while enrolling and waiting
        assert done.counters.recipients == len(ids)
        rest = [u for u in ids if u not in enrolled]
        assert done.counters.channels[next(iter(done.counters.channels))].sent == len(rest)
        inbox = await inbox_of(stack, prefix)
        per_user: dict[str, list[tuple[str, str]]] = {}
        for user, nid, body in inbox:
            per_user.setdefault(user, []).append((nid, body))
        # Everyone exactly once: the test share its arm's message, the rest the winner's.
        assert sorted(per_user) == sorted(ids)
        for user in ids:
            (nid, body), *more = per_user[user]
            assert not more, per_user[user]
            if user in enrolled:
                assert nid == enrolled[user][1]
            else:
                assert nid == notification_id(bid, user)
                assert "dear friend" in body
        final = await t.store.get_broadcast(bid)
        assert final is not None and final.status == "completed"
        assert final.phase == "sending warm (winner) to the rest"
    finally:
        await clean_up(stack, experiment_id, [n for _, n in enrolled.values() if n])


async def test_pause_and_cancel_while_waiting(stack: Stack) -> None:
    t = stack.tidings
    prefix = f"y{uuid.uuid4().hex[:5]}_"
    ids = await add_users(stack, prefix, 20)
    bid = f"exp-{uuid.uuid4().hex[:8]}"
    await t.broadcast(
        "welcome", ids, WELCOME, channels=["in_app"], broadcast_id=bid, experiment=experiment()
    )
    waiting = await progress_until(stack, bid, Phase.WAITING)
    assert waiting.experiment_id is not None
    enrolled = await enrolments(stack, waiting.experiment_id)
    try:
        paused = await t.pause_broadcast(bid)
        assert (paused.status, paused.phase) == ("paused", Phase.WAITING)
        resumed = await t.resume_broadcast(bid)
        assert resumed.status == "running"
        cancelled = await t.cancel_broadcast(bid, "changed our mind")
        assert cancelled.status == "cancelling"
        done = await result_of(stack, bid)
        assert (done.status, done.phase) == ("cancelled", Phase.WAITING)
        inbox = await inbox_of(stack, prefix)
        assert not [n for _, n, _ in inbox if n.startswith(f"bc-{bid}-")]  # no rollout
    finally:
        await clean_up(stack, waiting.experiment_id, [n for _, n in enrolled.values() if n])


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"share": 0}, "experiment.share"),
        ({"share": 1}, "experiment.share"),
        ({"share": "half"}, "experiment.share"),
        ({"variants": [{"name": "plain", "control": True}]}, "experiment.variants"),
        (
            {"variants": [{"name": "a", "control": True}, {"name": "b", "template_id": "nope"}]},
            "experiment.variants[1].template_id",
        ),
        (
            {"variants": [{"name": "a", "control": True}, {"name": "b", "template_version": 99}]},
            "experiment.variants[1].template_version",
        ),
        (
            {"variants": [{"name": "a", "control": True}, {"name": "b", "channels": ["sms"]}]},
            "experiment.variants[1].channels",
        ),
        ({"variants": [{"name": "a"}, {"name": "b"}]}, "experiment.variants"),
        ({"holdout_percent": 10}, "experiment.holdout_percent"),
        ({"split": [30, 30]}, "experiment.split"),
        ({"colour": "red"}, "experiment.colour"),
    ],
)
async def test_bad_experiments_name_the_field_and_start_nothing(
    stack: Stack, change: dict[str, Any], field: str
) -> None:
    t = stack.tidings
    bid = f"bad-{uuid.uuid4().hex[:8]}"
    with pytest.raises(InvalidRequest) as raised:
        await t.broadcast(
            "welcome", ["user_001"], WELCOME, broadcast_id=bid, experiment=experiment(**change)
        )
    assert raised.value.field == field, raised.value
    assert await t.store.get_broadcast(bid) is None
    with pytest.raises(RPCError):
        await t.temporal.get_workflow_handle(broadcast_workflow_id(bid)).describe()
    assert [e for e in await t.list_experiments() if e.id.startswith(f"bc.bad_{bid[4:]}")] == []
