"""The bench's worker in a process of its own (bench/worker_child.py): notifications and the
ceiling's trivial workflows run there, each phase's cost counts its CPU, SQL statements and SDK
warnings beside the bench process's own, its control channel refuses what it cannot serve
without dying, and it stops with the bench. Nothing here is about speed."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace
from typing import cast

import pytest
import pytest_asyncio

from bench.measure import measure_ceiling, measure_throughput
from bench.meters import CoreWarnings, PhaseMeter
from bench.sqlcount import SqlCounts
from bench.stack import BenchStack, bench_stack
from bench.worker_child import WorkerChild, WorkerChildError, WorkerCounts
from tests.store.conftest import PG_URL, _postgres_answers

pytestmark = pytest.mark.integration


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def stack() -> AsyncIterator[BenchStack]:
    async with bench_stack(users=2) as s:
        yield s


def _child(stack: BenchStack) -> WorkerChild:
    assert stack.worker is not None, "bench_stack runs the Workers in a child by default"
    return stack.worker


async def test_the_workers_run_in_a_child_of_the_bench(stack: BenchStack) -> None:
    child = _child(stack)
    assert child.pid != os.getpid()
    assert child.process.returncode is None
    # Its parent is the bench: the kernel SIGTERMs it when the bench dies (die_with_parent).
    stat = Path(f"/proc/{child.pid}/stat").read_text()
    assert int(stat.rsplit(")", 1)[1].split()[1]) == os.getpid()


async def test_a_phase_counts_the_worker_process_apart_and_in_the_sum(stack: BenchStack) -> None:
    meter = await PhaseMeter.start(stack)
    bench_sql = stack.sql.snapshot() if stack.sql is not None else None
    result = await measure_throughput(stack, 3)
    cost = await meter.done()
    assert result.delivery.complete
    assert cost.worker_cpu_seconds is not None and cost.worker_cpu_seconds > 0
    assert 0 < cost.bench_cpu_seconds < cost.python_cpu_seconds
    assert cost.python_cpu_seconds == pytest.approx(
        cost.worker_cpu_seconds + cost.bench_cpu_seconds
    )
    # The dev server's CPU is its own: the worker child is not counted as the server.
    assert cost.server_cpu_seconds is not None and cost.server_cpu_seconds > 0
    # The front door's reads are the bench's statements; the workers' writes (the notification,
    # its channels, the inbox row) are the child's, and the phase has both.
    assert stack.sql is not None and bench_sql is not None
    bench_only = stack.sql.snapshot().minus(bench_sql)
    assert cost.sql is not None
    assert 0 < bench_only.statements < cost.sql.statements
    assert 0 < bench_only.transactions < cost.sql.transactions


async def test_the_ceiling_runs_in_the_worker_process(stack: BenchStack) -> None:
    meter = await PhaseMeter.start(stack)
    result = await measure_ceiling(stack, 3)
    cost = await meter.done()
    assert result.count == 3
    # The trivial workflows' tasks and local activities ran in the child: it spent CPU on them.
    assert cost.worker_cpu_seconds is not None and cost.worker_cpu_seconds > 0
    assert cost.sql is not None and cost.sql.statements == 0  # a trivial run touches no store


async def test_the_channel_refuses_what_it_cannot_serve_and_keeps_answering(
    stack: BenchStack,
) -> None:
    child = _child(stack)
    with pytest.raises(WorkerChildError, match="unknown op 'reload'"):
        await child._ask({"op": "reload"})
    with pytest.raises(WorkerChildError, match="no Worker on queue 'nowhere'"):
        await child._ask({"op": "trivial_stop", "queue": "nowhere"})
    queue = f"{stack.settings.task_queue}-twice"
    async with child.trivial(queue):
        with pytest.raises(WorkerChildError, match="already served"):
            async with child.trivial(queue):
                pass
    before = await child.counts()
    after = await child.counts()
    assert after.cpu_seconds >= before.cpu_seconds > 0
    assert child.process.returncode is None


async def test_the_child_stops_gracefully_with_the_stack() -> None:
    async with bench_stack(users=1) as stack:
        child = _child(stack)
        assert (await measure_throughput(stack, 1)).delivery.complete
    assert child.process.returncode == 0


async def test_a_dead_child_is_an_error_not_a_hang() -> None:
    async with bench_stack(users=1) as stack:
        child = _child(stack)
        child._kill()
        with pytest.raises(WorkerChildError, match="exited"):
            await child.counts()
    assert child.process.returncode is not None


@pytest.mark.postgres
@pytest.mark.skipif(not _postgres_answers(), reason="PostgreSQL at 127.0.0.1:5432 does not answer")
async def test_the_child_uses_the_bench_schema_in_postgresql() -> None:
    async with bench_stack(users=2, database_url=PG_URL.replace("+asyncpg", "")) as stack:
        meter = await PhaseMeter.start(stack)
        result = await measure_throughput(stack, 3)
        cost = await meter.done()
    assert result.delivery.complete  # the inbox rows the child wrote, read from the schema
    assert cost.sql is not None and cost.sql.statements > 0


class _FakeChild:
    """A worker process's answers to `counts`, in order, without a process."""

    pid = -1  # no process of this bench has it: the dev server CPU reading skips nothing real

    def __init__(self, *answers: WorkerCounts) -> None:
        self._answers = list(answers)
        self.last_samples: dict[str, str] = {}

    async def counts(self) -> WorkerCounts:
        return self._answers.pop(0)


class _FakeSql:
    def __init__(self, *snapshots: SqlCounts) -> None:
        self._snapshots = list(snapshots)

    def snapshot(self) -> SqlCounts:
        return self._snapshots.pop(0)


async def test_a_phase_adds_the_childs_counts_to_the_bench_process_own() -> None:
    warnings = CoreWarnings()
    child = _FakeChild(
        WorkerCounts(10.0, SqlCounts(100, 40), {"workflow task over 5 s": 2}),
        WorkerCounts(10.5, SqlCounts(130, 52), {"workflow task over 5 s": 5, "other warning": 1}),
    )
    stack = SimpleNamespace(
        worker=child,
        core_warnings=warnings,
        sql=_FakeSql(SqlCounts(7, 3), SqlCounts(9, 4)),
        slow_callbacks=None,
    )
    meter = await PhaseMeter.start(cast(BenchStack, stack))
    warnings.emit(logging.makeLogRecord({"msg": "TMPRL1104 a task took 6 s"}))  # the bench's own
    cost = await meter.done()
    assert cost.worker_cpu_seconds == pytest.approx(0.5)
    assert cost.python_cpu_seconds == pytest.approx(cost.bench_cpu_seconds + 0.5)
    assert cost.sql == SqlCounts(30 + 2, 12 + 1)
    assert cost.sdk_warnings == {"workflow task over 5 s": 3 + 1, "other warning": 1}


def test_counts_cross_the_channel_unchanged() -> None:
    counts = WorkerCounts(1.25, SqlCounts(3, 2), {"other warning": 4}, {"other warning": "x"})
    assert WorkerCounts.from_json(json.loads(json.dumps(counts.to_json()))) == counts
