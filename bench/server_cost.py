"""Server-side figures for the throughput bench's breakdown: what a workflow start alone costs
the dev server, and how many history events (each a write, and most a task) a run makes it keep."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from dataclasses import dataclass

from temporalio.api.enums.v1 import EventType
from temporalio.client import Client

from bench.measure import POLL_SECONDS, START_CONCURRENCY
from bench.meters import PhaseCost, PhaseMeter
from bench.stack import BenchStack
from bench.trivial import TrivialWorkflow

# Histories fetched to count events: enough for a mean, few enough to be quick.
HISTORY_SAMPLE = 20
_PREFIX = "EVENT_TYPE_"


@dataclass(frozen=True)
class StartCost:
    count: int
    cost: PhaseCost

    @property
    def server_ms_per_start(self) -> float | None:
        seconds = self.cost.server_cpu_seconds
        return None if seconds is None else seconds / self.count * 1e3


@dataclass(frozen=True)
class HistoryEvents:
    runs: int
    per_run: float
    by_type: dict[str, float]  # mean events of each type per run, most first

    def summary(self, top: int = 10) -> str:
        parts = [f"{name} {n:.1f}" for name, n in list(self.by_type.items())[:top]]
        return f"{self.per_run:.1f} events ({', '.join(parts)})"


async def measure_starts(stack: BenchStack, count: int) -> StartCost:
    """`count` trivial workflows started on a queue no worker polls, measured until visibility
    has them all: the server's cost of accepting a start (history, visibility, the first
    workflow task in matching's backlog), which is what a bulk send asks of it per recipient.
    They stay queued on the throwaway server."""
    queue = f"{stack.settings.task_queue}-starts-{uuid.uuid4().hex[:6]}"
    limit = asyncio.Semaphore(START_CONCURRENCY)

    async def start(i: int) -> None:
        async with limit:
            await stack.client.start_workflow(
                TrivialWorkflow.run, i, id=f"{queue}-{i}", task_queue=queue
            )

    meter = await PhaseMeter.start(stack)
    await asyncio.gather(*(start(i) for i in range(count)))
    query = f"TaskQueue = '{queue}'"
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 60.0 + count / 10
    while (await stack.client.count_workflows(query)).count < count:
        if loop.time() >= deadline:
            raise TimeoutError(f"starts: visibility did not list all {count} in time")
        await asyncio.sleep(POLL_SECONDS)
    return StartCost(count, await meter.done())


async def history_events(client: Client, query: str, sample: int = HISTORY_SAMPLE) -> HistoryEvents:
    """Mean history events per run over up to `sample` runs matching `query`, spread over all
    of them rather than the latest (which may still be in flight)."""
    ids = [(wf.id, wf.run_id) async for wf in client.list_workflows(query)]
    if not ids:
        return HistoryEvents(0, 0.0, {})
    step = max(1, len(ids) // sample)
    chosen = ids[::step][:sample]
    counts: Counter[str] = Counter()
    for workflow_id, run_id in chosen:
        history = await client.get_workflow_handle(workflow_id, run_id=run_id).fetch_history()
        for event in history.events:
            counts[EventType.Name(event.event_type).removeprefix(_PREFIX)] += 1
    runs = len(chosen)
    return HistoryEvents(
        runs,
        sum(counts.values()) / runs,
        {name: n / runs for name, n in counts.most_common()},
    )
