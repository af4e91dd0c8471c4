"""ExperimentWorkflow on the time-skipping server, with its activities replaced by functions
registered under the same names and a stand-in NotificationWorkflow that records what it was
started with (the real children are covered in tests/integration)."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest
import pytest_asyncio
from temporalio import activity, workflow
from temporalio.client import WorkflowHandle, WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.io import ClaimInput, CountsInput, CountsOutput, FinishInput
from tests.conftest import start_time_skipping
from tidings.experiments import (
    HOLDOUT,
    ArmCounts,
    Claim,
    Ending,
    ExperimentConfig,
    assign,
    in_holdout,
    parse_config,
)
from workflows.experiment import FINISHED, ExperimentWorkflow
from workflows.io import (
    EnrollInput,
    Enrollment,
    ExperimentInput,
    ExperimentResults,
    NotificationInput,
    StopInput,
)

STARTED: dict[str, list[NotificationInput]] = {}  # per task queue


@workflow.defn(name="NotificationWorkflow", sandboxed=False)  # records into STARTED
class StandInNotification:
    @workflow.run
    async def run(self, input: NotificationInput) -> None:
        STARTED.setdefault(workflow.info().task_queue, []).append(input)


@dataclass
class FakeStore:
    claims: dict[tuple[str, str], Claim] = field(default_factory=dict)
    claim_ids: dict[tuple[str, str], str] = field(default_factory=dict)
    counts: dict[str, ArmCounts] = field(default_factory=dict)
    count_reads: int = 0
    finished: list[FinishInput] = field(default_factory=list)

    def activities(self) -> list[Any]:
        @activity.defn(name="claim_enrolment")
        async def claim_enrolment(input: ClaimInput) -> Claim:
            key = (input.experiment_id, input.user_id)
            if key not in self.claims:
                self.claims[key] = Claim(
                    experiment_id=input.experiment_id,
                    user_id=input.user_id,
                    variant=input.variant,
                    notification_id=input.notification_id,
                )
                self.claim_ids[key] = input.claim_id
            return self.claims[key].model_copy(
                update={
                    "first": self.claim_ids[key] == input.claim_id,
                    "claim_id": self.claim_ids[key],
                }
            )

        @activity.defn(name="experiment_counts")
        async def experiment_counts(input: CountsInput) -> CountsOutput:
            self.count_reads += 1
            return CountsOutput(counts=self.counts)

        @activity.defn(name="finish_experiment")
        async def finish_experiment(input: FinishInput) -> None:
            self.finished.append(input)

        return [claim_enrolment, experiment_counts, finish_experiment]


@dataclass
class Rig:
    env: WorkflowEnvironment
    queue: str
    store: FakeStore
    # Ended at teardown: a test left running on a queue whose worker has gone keeps timers
    # firing on the shared time-skipping server, which then stops skipping for later tests.
    handles: list[WorkflowHandle[Any, Any]] = field(default_factory=list)

    @property
    def started(self) -> list[NotificationInput]:
        return STARTED.get(self.queue, [])

    async def start(
        self, config: ExperimentConfig, *, event_budget: int = 5_000
    ) -> WorkflowHandle[Any, ExperimentResults]:
        handle = await self.env.client.start_workflow(
            ExperimentWorkflow.run,
            ExperimentInput(config=config, task_queue_base=self.queue, event_budget=event_budget),
            id=f"experiment/{config.id}",
            task_queue=self.queue,
        )
        self.handles.append(handle)
        return handle


async def enroll(handle: WorkflowHandle[Any, Any], user_id: str, **data: Any) -> Enrollment:
    result: Enrollment = await handle.execute_update(
        "enroll", EnrollInput(user_id=user_id, data=data), result_type=Enrollment
    )
    return result


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def time_env() -> AsyncIterator[WorkflowEnvironment]:
    """A server of this module's own: long-lived tests that continue as new leave timers behind
    that held up the shared server's time skipping for the modules after this one."""
    env = await start_time_skipping()
    yield env
    await env.shutdown()


@pytest_asyncio.fixture
async def rig(time_env: WorkflowEnvironment) -> AsyncIterator[Rig]:
    queue = f"exp-{uuid.uuid4().hex[:8]}"
    store = FakeStore()
    async with Worker(
        time_env.client,
        task_queue=queue,
        workflows=[ExperimentWorkflow, StandInNotification],
        activities=store.activities(),
    ):
        rig = Rig(time_env, queue, store)
        yield rig
        for handle in rig.handles:
            with contextlib.suppress(RPCError):
                await handle.terminate("test finished")


@pytest_asyncio.fixture
async def own_rig() -> AsyncIterator[Rig]:
    """A time-skipping server of its own: updates the server aborts at a continue-as-new can
    leave the test server's time-skipping lock held, which would stall every later test."""
    env = await start_time_skipping()
    try:
        queue = f"exp-{uuid.uuid4().hex[:8]}"
        store = FakeStore()
        async with Worker(
            env.client,
            task_queue=queue,
            workflows=[ExperimentWorkflow, StandInNotification],
            activities=store.activities(),
        ):
            yield Rig(env, queue, store)
    finally:
        await env.shutdown()


def config(**overrides: Any) -> ExperimentConfig:
    data: dict[str, Any] = {
        "id": f"e{uuid.uuid4().hex[:10]}",
        "template_id": "welcome",
        "data": {"name": "friend"},
        "variants": [
            {"name": "a", "control": True, "template_version": 1},
            {"name": "b", "data": {"subject": "B!"}, "template_version": 2},
        ],
        "check_every": "1h",
        "max_duration": "2d",
        "minimum_sample": 100,
    }
    data.update(overrides)
    return parse_config(data)


async def test_enrol_assigns_stably_and_starts_one_notification(rig: Rig) -> None:
    c = config()
    handle = await rig.start(c)
    users = [f"user{i}" for i in range(12)]
    first = [await enroll(handle, u, plan="pro") for u in users]
    assert [e.variant for e in first] == [assign(c, u) for u in users]
    assert {e.variant for e in first} == {"a", "b"}
    again = await enroll(handle, "user3", plan="other")
    assert again.duplicate and again.variant == first[3].variant
    assert again.notification_id == first[3].notification_id == f"exp-{c.id}-user3"
    started = rig.started
    assert len(started) == 12  # the repeat sent nothing
    child = next(s for s in started if s.request.user_id == "user3")
    assert (child.experiment_id, child.variant) == (c.id, first[3].variant)
    assert child.request.data["plan"] == "pro" and child.request.data["name"] == "friend"
    b = next(s for s in started if s.variant == "b")
    assert b.request.data["subject"] == "B!" and b.template_version == 2
    results = await handle.query("results", result_type=ExperimentResults)
    assert sum(results.enrolled.values()) == 12 and results.duplicates == 1
    await handle.execute_update("stop", StopInput(reason="done"), result_type=ExperimentResults)


async def test_holdout_gets_nothing(rig: Rig) -> None:
    c = config(holdout_percent=50)
    handle = await rig.start(c)
    held = next(f"u{i}" for i in range(100) if in_holdout(c, f"u{i}"))
    got = await enroll(handle, held)
    assert (got.variant, got.notification_id) == (HOLDOUT, None)
    assert rig.started == []
    assert (await enroll(handle, held)).duplicate
    await handle.execute_update("stop", StopInput(), result_type=ExperimentResults)


async def test_stops_itself_with_a_winner_and_refuses_later_enrolments(rig: Rig) -> None:
    c = config()
    handle = await rig.start(c)
    await enroll(handle, "early")
    rig.store.counts = {
        "a": ArmCounts(delivered=5_000, reached=500),
        "b": ArmCounts(delivered=5_000, reached=700),
    }
    result = await handle.result()
    assert (result.ending, result.winner, result.status) == (Ending.WINNER, "b", "finished")
    assert result.comparisons[0].difference_low is not None
    assert result.comparisons[0].difference_low > 0
    [finish] = rig.store.finished
    assert (finish.ending, finish.winner) == ("winner", "b")
    assert finish.outcome["counts"]["b"]["reached"] == 700
    with pytest.raises((WorkflowUpdateFailedError, RPCError)):
        await enroll(handle, "late")


async def test_max_duration_ends_without_a_winner(rig: Rig) -> None:
    c = config(max_duration="5h")
    handle = await rig.start(c)
    rig.store.counts = {
        "a": ArmCounts(delivered=50, reached=5),
        "b": ArmCounts(delivered=50, reached=6),
    }
    result = await handle.result()
    assert (result.ending, result.winner) == (Ending.MAX_DURATION, None)
    assert result.checks == 4  # hourly checks at 1-4 h, then the deadline at 5 h
    assert rig.store.finished[0].ending == "max_duration"


async def test_promote_sends_later_enrolments_the_winner(rig: Rig) -> None:
    c = config(on_winner="promote", max_duration="1d")
    handle = await rig.start(c)
    rig.store.counts = {
        "a": ArmCounts(delivered=5_000, reached=500),
        "b": ArmCounts(delivered=5_000, reached=700),
    }
    await rig.env.sleep(timedelta(hours=2))
    results = await handle.query("results", result_type=ExperimentResults)
    assert (results.status, results.winner) == ("decided", "b")
    late = [await enroll(handle, f"late{i}") for i in range(8)]
    assert {e.variant for e in late} == {"b"}
    stopped = await handle.execute_update(
        "stop", StopInput(reason="shipped"), result_type=ExperimentResults
    )
    assert stopped.ending is Ending.WINNER
    assert rig.store.finished[0].winner == "b" and len(rig.store.finished) == 1


async def test_continue_as_new_carries_the_counters(own_rig: Rig) -> None:
    rig = own_rig
    c = config()
    handle = await rig.start(c, event_budget=100)
    users = [f"u{i}" for i in range(40)]
    for u in users:
        for _attempt in range(50):
            try:
                await enroll(handle, u)
                break
            except WorkflowUpdateFailedError as e:  # BUSY while the run hands over
                assert isinstance(e.cause, ApplicationError) and e.cause.type != FINISHED
                await rig.env.sleep(timedelta(milliseconds=50))
        else:
            raise AssertionError(f"{u} never enrolled")
    await enroll(handle, "u0")  # a duplicate across runs
    results = await handle.query("results", result_type=ExperimentResults)
    assert results.runs > 1
    assert sum(results.enrolled.values()) == 40 and results.duplicates == 1
    assert len(rig.started) == 40
    history = await handle.fetch_history()
    assert len(history.events) < 200
    await handle.execute_update("stop", StopInput(), result_type=ExperimentResults)


async def test_stop_by_hand_is_recorded_and_refuses_more(rig: Rig) -> None:
    c = config()
    handle = await rig.start(c)
    await enroll(handle, "u1")
    result = await handle.execute_update(
        "stop", StopInput(reason="wrong copy"), result_type=ExperimentResults
    )
    assert (result.ending, result.reason) == (Ending.STOPPED, "wrong copy")
    assert rig.store.finished[0].reason == "wrong copy"
    # The run has closed: the server refuses (the client turns this into a clear Conflict).
    with pytest.raises((WorkflowUpdateFailedError, RPCError)):
        await enroll(handle, "u2")


async def test_bad_enrolment_is_refused_and_leaves_no_failing_task(rig: Rig) -> None:
    handle = await rig.start(config())
    with pytest.raises(WorkflowUpdateFailedError) as raised:
        await enroll(handle, "not a valid id!")
    assert "user_id" in str(raised.value.cause)
    assert not (await enroll(handle, "fine")).duplicate
    await handle.execute_update("stop", StopInput(), result_type=ExperimentResults)
