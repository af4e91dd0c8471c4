"""The four measurements, each against a running BenchStack. Times are wall-clock seconds
(`time.time()`), the same clock the SMTP sink, the store and the dev server stamp with."""

from __future__ import annotations

import asyncio
import math
import time
import uuid
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bench.stack import TEMPLATE_ID, BenchStack
from bench.timeline import delivery_stages
from bench.trivial import TrivialWorkflow
from tidings.models import Priority

# Starts in flight at once: the same bound Tidings.notify_many uses.
START_CONCURRENCY = 32
# "As fast as possible" for the LOW backlog: more in flight than the store's connection pool.
BACKLOG_CONCURRENCY = 64
POLL_SECONDS = 0.1


@dataclass
class CeilingResult:
    count: int
    start_seconds: float  # until the last start returned
    seconds: float  # first start to last workflow closed
    per_second: float


@dataclass
class DeliveryCheck:
    """What reached the sink and the inbox for a set of notification ids."""

    expected: int
    emails: int  # distinct ids the sink received
    duplicate_emails: int  # messages beyond the first for an id
    inbox: int
    last_at: float | None  # the latest email or inbox item, wall clock

    @property
    def complete(self) -> bool:
        return self.emails == self.expected and self.inbox == self.expected


@dataclass
class ThroughputResult:
    count: int
    start_seconds: float
    seconds: float  # first notify call to the last email or inbox item
    per_second: float
    delivery: DeliveryCheck


@dataclass
class LatencyResult:
    rate: float  # asked for
    offered_rate: float  # achieved by the generator
    count: int
    received: int
    duplicate_emails: int
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float


@dataclass
class PriorityResult:
    backlog: int
    start_seconds: float  # to start every LOW notification
    queued_at_trigger: int  # LOW emails not yet at the sink when the CRITICAL was triggered
    critical_seconds: float  # its notify call to its email at the sink
    critical_stages: dict[str, float]  # where those seconds went
    low_delivered_meanwhile: int
    low_check: DeliveryCheck | None  # only when drained


def percentile(sorted_values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile, so p50 <= p95 <= p99 always holds on the same data."""
    if not sorted_values:
        raise ValueError("sorted_values: need at least one value")
    rank = max(1, math.ceil(p / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


def _ids(kind: str, count: int) -> tuple[str, list[str]]:
    prefix = f"{kind}-{uuid.uuid4().hex[:6]}-"
    return prefix, [f"{prefix}{i}" for i in range(count)]


async def _notify(
    stack: BenchStack,
    notification_id: str,
    n: int,
    priority: Priority | None,
    template_id: str = TEMPLATE_ID,
) -> float:
    """Trigger one notification; returns the wall-clock time just before the call."""
    user = stack.users[n % len(stack.users)]
    called = time.time()
    await stack.tidings.notify(
        user_id=user,
        template_id=template_id,
        data={"n": n, "user": user},
        idempotency_key=notification_id,
        priority=priority,
    )
    return called


async def _notify_all(
    stack: BenchStack, ids: Sequence[str], priority: Priority | None, concurrency: int
) -> None:
    limit = asyncio.Semaphore(concurrency)

    async def one(i: int, nid: str) -> None:
        async with limit:
            await _notify(stack, nid, i, priority)

    await asyncio.gather(*(one(i, nid) for i, nid in enumerate(ids)))


async def wait_emails(
    stack: BenchStack, ids: Sequence[str], within: float
) -> dict[str, list[datetime]]:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        received = stack.sink_index.refresh()
        if all(nid in received for nid in ids) or loop.time() >= deadline:
            return {nid: received[nid] for nid in ids if nid in received}
        await asyncio.sleep(POLL_SECONDS)


async def wait_delivered(
    stack: BenchStack, prefix: str, ids: Sequence[str], within: float
) -> DeliveryCheck:
    """Wait until every id has its email at the sink and its inbox item in the store."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    emails = await wait_emails(stack, ids, within)
    while True:
        if await stack.inbox_count(prefix) >= len(ids) or loop.time() >= deadline:
            break
        await asyncio.sleep(POLL_SECONDS)
    wanted = set(ids)
    inbox = {nid: at for nid, at in await stack.inbox_rows(prefix) if nid in wanted}
    stamps = [at.timestamp() for times in emails.values() for at in times]
    stamps += [at.timestamp() for at in inbox.values()]
    return DeliveryCheck(
        expected=len(ids),
        emails=len(emails),
        duplicate_emails=sum(len(times) - 1 for times in emails.values()),
        inbox=len(inbox),
        last_at=max(stamps, default=None),
    )


def _deadline(count: int) -> float:
    # Far beyond any plausible rate: it only stops a broken run from hanging.
    return 120.0 + count


async def measure_ceiling(stack: BenchStack, count: int) -> CeilingResult:
    """Trivial workflows (one local activity each) on their own queue, started as fast as
    notifications are, with the same poller tuning, by the process that runs the notification
    Workers."""
    queue = f"{stack.settings.task_queue}-ceiling-{uuid.uuid4().hex[:6]}"
    async with stack.trivial_worker(queue):
        limit = asyncio.Semaphore(START_CONCURRENCY)

        async def start(i: int) -> None:
            async with limit:
                await stack.client.start_workflow(
                    TrivialWorkflow.run, i, id=f"{queue}-{i}", task_queue=queue
                )

        began = time.time()
        await asyncio.gather(*(start(i) for i in range(count)))
        started = time.time()
        query = f"TaskQueue = '{queue}' AND ExecutionStatus = 'Completed'"
        loop = asyncio.get_running_loop()
        deadline = loop.time() + _deadline(count)
        while (await stack.client.count_workflows(query)).count < count:
            if loop.time() >= deadline:
                raise TimeoutError(f"ceiling: {count} trivial workflows not done in time")
            await asyncio.sleep(POLL_SECONDS)
        closed = [wf.close_time async for wf in stack.client.list_workflows(query)]
    last = max(at.timestamp() for at in closed if at is not None)
    seconds = last - began
    return CeilingResult(count, started - began, seconds, count / seconds)


async def measure_throughput(stack: BenchStack, count: int) -> ThroughputResult:
    """`count` notifications (email + in_app), triggered as fast as the client allows, until
    the last email is at the sink and the last inbox item is stored."""
    prefix, ids = _ids("tp", count)
    began = time.time()
    await _notify_all(stack, ids, None, START_CONCURRENCY)
    started = time.time()
    check = await wait_delivered(stack, prefix, ids, _deadline(count))
    seconds = (check.last_at or time.time()) - began
    done = min(check.emails, check.inbox)
    return ThroughputResult(count, started - began, seconds, done / seconds, check)


async def fire_open_loop(
    ids: Sequence[str], rate: float, fire: Callable[[int, str], Coroutine[Any, Any, None]]
) -> float:
    """Call fire(i, id) at i / rate, whether or not earlier calls have returned, and wait for
    them all; returns the rate actually offered."""
    loop = asyncio.get_running_loop()
    began = loop.time()
    tasks: list[asyncio.Task[None]] = []
    for i, nid in enumerate(ids):
        delay = began + i / rate - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(fire(i, nid)))
    offered_seconds = loop.time() - began
    await asyncio.gather(*tasks)
    if len(ids) > 1 and offered_seconds > 0:
        return (len(ids) - 1) / offered_seconds
    return rate


async def measure_latency(stack: BenchStack, rate: float, count: int) -> LatencyResult:
    """Open loop: notification i is triggered at i / rate whether or not earlier ones have
    returned; latency is from its notify call to its email at the sink."""
    if rate <= 0:
        raise ValueError(f"rate: must be positive, got {rate}")
    prefix, ids = _ids("lat", count)
    called: dict[str, float] = {}

    async def fire(i: int, nid: str) -> None:
        called[nid] = await _notify(stack, nid, i, None)

    offered = await fire_open_loop(ids, rate, fire)
    check = await wait_delivered(stack, prefix, ids, _deadline(count))
    emails = stack.sink_index.received
    latencies = sorted(
        (emails[nid][0].timestamp() - called[nid]) * 1000 for nid in ids if nid in emails
    )
    return LatencyResult(
        rate=rate,
        offered_rate=offered,
        count=count,
        received=check.emails,
        duplicate_emails=check.duplicate_emails,
        p50_ms=percentile(latencies, 50),
        p95_ms=percentile(latencies, 95),
        p99_ms=percentile(latencies, 99),
        max_ms=latencies[-1],
    )


async def measure_priority(
    stack: BenchStack, backlog: int, *, drain: bool = False
) -> PriorityResult:
    """Start `backlog` LOW notifications as fast as possible, then one CRITICAL, and time the
    CRITICAL to the sink. With `drain`, also wait for every LOW one and check them."""
    prefix, low_ids = _ids("low", backlog)
    critical_id = f"critical-{uuid.uuid4().hex[:6]}"
    began = time.time()
    await _notify_all(stack, low_ids, Priority.LOW, BACKLOG_CONCURRENCY)
    start_seconds = time.time() - began
    before = stack.sink_index.refresh()
    low_before = sum(1 for nid in low_ids if nid in before)
    called = await _notify(stack, critical_id, 0, Priority.CRITICAL)
    returned = time.time()
    got = await wait_emails(stack, [critical_id], _deadline(1))
    if critical_id not in got:
        raise TimeoutError("priority: the CRITICAL notification never reached the sink")
    received = got[critical_id][0].timestamp()
    after = stack.sink_index.refresh()
    low_after = sum(1 for nid in low_ids if nid in after)
    stages = await delivery_stages(
        stack.client, critical_id, called=called, returned=returned, received=received
    )
    check = await wait_delivered(stack, prefix, low_ids, _deadline(backlog)) if drain else None
    return PriorityResult(
        backlog=backlog,
        start_seconds=start_seconds,
        queued_at_trigger=backlog - low_before,
        critical_seconds=received - called,
        critical_stages=stages,
        low_delivered_meanwhile=low_after - low_before,
        low_check=check,
    )
