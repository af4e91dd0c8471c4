"""What open notification runs cost the worker: memory while N runs sit in their engagement
window, and the time to handle an engagement event at a run that is in the worker's sticky cache
versus one that was evicted (which replays its history first).

    .venv/bin/python bench/open_runs.py [--runs 2000] [--events 20]

Two stacks, one after the other: the first with the worker's default sticky cache holds --runs
open runs and reports the process's resident memory per run; both then signal --events runs one
at a time and time each from the signal to the event being visible in the run's status. The
second stack's cache holds 10 runs and has --events + 40 open, and the events go to the oldest,
so each meets an evicted run.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import argparse
import asyncio
import gc
import statistics
import time
from dataclasses import dataclass

from sqlalchemy import func, select

from bench.meters import cpu_seconds
from bench.stack import TEMPLATE_ID, BenchStack, bench_stack
from bench.workers import Tuning
from tidings import eventloop
from tidings.models import EngagementType, NotificationStatus
from tidings.store.tables import NotificationRow
from workflows.io import EngagementSignal
from workflows.notification import NotificationWorkflow
from workflows.queues import workflow_id

# As small as the worker allows: at least its workflow task slots (the SDK keeps every run with a
# task in progress in the cache).
TINY_CACHE = 10


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def sent_count(stack: BenchStack, prefix: str) -> int:
    stmt = select(func.count()).where(
        NotificationRow.id.startswith(prefix, autoescape=True),
        NotificationRow.status == NotificationStatus.SENT.value,
    )
    async with stack.store.engine.connect() as conn:
        return int((await conn.execute(stmt)).scalar_one())


async def open_runs(stack: BenchStack, prefix: str, count: int) -> list[str]:
    """`count` notifications, in-app only, all SENT and so waiting in their window."""
    ids: list[str] = []
    for start in range(0, count, 1000):
        users = [stack.users[i % len(stack.users)] for i in range(start, min(count, start + 1000))]
        recipients = [
            {"user_id": u, "idempotency_key": f"{prefix}{start + i}"} for i, u in enumerate(users)
        ]
        result = await stack.tidings.notify_many(
            recipients, TEMPLATE_ID, data={"n": 1, "user": "x"}, channels=["in_app"]
        )
        ids += [r.notification_id for r in result.refs]
    while (done := await sent_count(stack, prefix)) < count:
        print(f"  {done}/{count} sent", end="\r", flush=True)
        await asyncio.sleep(2)
    print(" " * 40, end="\r", flush=True)
    return ids


@dataclass
class EventTimes:
    median_ms: float
    max_ms: float
    cpu_ms: float  # this process's CPU per event (worker + client)


async def time_events(stack: BenchStack, ids: list[str]) -> EventTimes:
    seconds = []
    cpu = cpu_seconds()[0]
    for nid in ids:
        handle = stack.client.get_workflow_handle(workflow_id(nid))
        began = time.monotonic()
        await handle.signal(
            NotificationWorkflow.engagement, EngagementSignal(type=EngagementType.OPENED)
        )
        # Polled: the query is also what a caller would do to see the event.
        for _ in range(6000):
            if (await handle.query(NotificationWorkflow.status)).engagement:
                break
            await asyncio.sleep(0.01)
        seconds.append(time.monotonic() - began)
    used = cpu_seconds()[0] - cpu
    return EventTimes(
        statistics.median(seconds) * 1000, max(seconds) * 1000, used / len(ids) * 1000
    )


async def run(args: argparse.Namespace) -> None:
    async with bench_stack(users=50, worker_process=False) as stack:
        await open_runs(stack, "warm-", 20)
        gc.collect()
        before = rss_mib()
        ids = await open_runs(stack, "open-", args.runs)
        gc.collect()
        after = rss_mib()
        print(
            f"worker memory with {args.runs} open runs in their window (default sticky cache"
            f" {stack.tuning.max_cached_workflows} per Worker):"
            f" RSS {before:.0f} -> {after:.0f} MiB,"
            f" {(after - before) * 1024 / args.runs:.1f} KiB per run"
        )
        cached = await time_events(stack, ids[-args.events :])
        print(
            f"engagement event at a cached run: median {cached.median_ms:.0f} ms,"
            f" max {cached.max_ms:.0f} ms, {cached.cpu_ms:.1f} ms CPU each"
        )
    async with bench_stack(
        users=50, tuning=Tuning(max_cached_workflows=TINY_CACHE), worker_process=False
    ) as stack:
        ids = await open_runs(stack, "evict-", args.events + 40)
        evicted = await time_events(stack, ids[: args.events])
        print(
            f"engagement event at an evicted run (sticky cache {TINY_CACHE}): median"
            f" {evicted.median_ms:.0f} ms, max {evicted.max_ms:.0f} ms,"
            f" {evicted.cpu_ms:.1f} ms CPU each (a replay of its history first)"
        )


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--runs", type=int, default=2000)
    p.add_argument("--events", type=int, default=20)
    args = p.parse_args()
    if args.runs < args.events or args.events < 1:
        p.error("--runs must be at least --events, and --events at least 1")
    eventloop.run(run(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
