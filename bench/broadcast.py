"""Broadcast throughput on the embedded stack (bench/stack.py): email to the SMTP sink as a ratio
to the raw SMTP ceiling measured in the same run (aiosmtplib straight to the same sink, at the
same concurrency, no Temporal, no database), in-app recipients per second, and the peak resident
memory of the process that runs the worker. SQLite by default; `--postgres` adds in-app on
PostgreSQL.

    .venv/bin/python bench/broadcast.py --recipients 10000
    .venv/bin/python bench/broadcast.py --recipients 5000 --postgres
    .venv/bin/python bench/broadcast.py --recipients 5000 --kill-worker 2

The worker runs in this process beside the SMTP sink (which keeps every message it receives until
the email phase is counted) and the client, so `worker peak RSS MB` is an upper bound of the
worker's own.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import resource
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

import aiosmtplib

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.broadcast_kill import measure_with_kills
from bench.stack import BenchStack, bench_stack, insert_users
from starter.client import Tidings
from tidings import eventloop
from tidings.channels.base import OutgoingMessage
from tidings.channels.email import EmailSender
from tidings.models import (
    Channel,
    Priority,
    RenderedMessage,
    TemplateContent,
    TemplateDefinition,
    User,
)
from tidings.store import Store
from workflows.broadcast_io import BroadcastProgress

TEMPLATE_ID = "bench_broadcast"
PREFIX = "bcu"
DEFAULT_POSTGRES = "postgresql://127.0.0.1:5432/test"
SINGLE_TEMPLATE_ID = "bench_alert"  # bench/stack.py seeds it (email and in-app)
PROBES = 10
PROBE_PRIORITIES = (Priority.MEDIUM, Priority.CRITICAL)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--recipients", type=int, default=100_000, help="users in the audience")
    p.add_argument("--concurrency", type=int, default=20, help="sends in flight per batch")
    p.add_argument("--page-size", type=int, default=500)
    p.add_argument(
        "--ceiling-messages",
        type=int,
        default=5_000,
        help="messages sent raw to measure the SMTP ceiling (at most --recipients)",
    )
    p.add_argument(
        "--kill-worker",
        type=int,
        default=0,
        metavar="K",
        help="instead: the worker as its own process, killed (kill -9) K times during the"
        " broadcast; count what arrived",
    )
    p.add_argument(
        "--postgres",
        nargs="?",
        const=DEFAULT_POSTGRES,
        default=None,
        metavar="URL",
        help=f"also measure in-app on PostgreSQL (default URL {DEFAULT_POSTGRES})",
    )
    return p.parse_args(argv)


def say(line: str) -> None:
    print(line, flush=True)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


async def add_audience(tidings: Tidings, store: Store, n: int) -> None:
    """Users written in bulk (the client's one-at-a-time upsert would dominate the run)."""
    await insert_users(store, [f"{PREFIX}{i:07d}" for i in range(n)])
    await tidings.register_template(
        TemplateDefinition(
            id=TEMPLATE_ID,
            name="Benchmark broadcast",
            channels=[Channel.EMAIL, Channel.IN_APP],
            content=TemplateContent(subject="News {{ n }}", text="Hello, here is news {{ n }}."),
            sample_data={"n": 0},
        )
    )


async def raw_ceiling(stack: BenchStack, count: int, concurrency: int) -> float:
    """Messages per second from aiosmtplib straight to the sink, `concurrency` at a time, one
    connection per message as the email channel did before it reused connections (README, "Issue
    13, tenth round"); kept so, to stay comparable with the ratios in README. Each message is
    built by the email channel's own builder (the same headers), since building is part of
    sending any email and this process is CPU-bound; no template rendering, no Temporal, no
    database."""
    settings = stack.settings
    builder = EmailSender(settings)
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(count):
        queue.put_nowait(i)

    async def worker() -> None:
        while True:
            try:
                i = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            msg = builder.build_message(
                OutgoingMessage(
                    notification_id=f"raw-{i}",
                    idempotency_key=f"raw-{i}",
                    user=User(id=f"raw{i}", email=f"raw{i}@example.com"),
                    message=RenderedMessage(
                        channel=Channel.EMAIL, subject="News 1", text="Hello, here is news 1."
                    ),
                )
            )
            await aiosmtplib.send(msg, hostname=settings.smtp_host, port=settings.smtp_port)

    began = time.monotonic()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    rate = count / (time.monotonic() - began)
    stack.sink.clear()
    return rate


async def timed_broadcast(
    stack: BenchStack, channel: Channel, args: argparse.Namespace
) -> tuple[float, BroadcastProgress]:
    began = time.monotonic()
    ref = await stack.tidings.broadcast(
        TEMPLATE_ID,
        "all",
        {"n": 1},
        [channel],
        page_size=args.page_size,
        concurrency=args.concurrency,
    )
    handle = stack.client.get_workflow_handle(ref.workflow_id, result_type=BroadcastProgress)
    result = await handle.result()
    return time.monotonic() - began, result


async def singles_latency(stack: BenchStack, priority: Priority, count: int) -> float:
    """The median seconds from trigger to sent of single email notifications, one every 0.2 s,
    to a user outside the broadcast: what a broadcast on the same channel costs them."""
    latencies: list[float] = []

    async def one(i: int) -> None:
        began = time.monotonic()
        ref = await stack.tidings.notify(
            user_id=stack.users[0],
            template_id=SINGLE_TEMPLATE_ID,
            data={"n": i, "user": "probe"},
            channels=["email"],
            priority=priority,
        )
        await stack.tidings.wait_sent(ref.notification_id, within=120)
        latencies.append(time.monotonic() - began)

    tasks = []
    for i in range(count):
        tasks.append(asyncio.create_task(one(i)))
        await asyncio.sleep(0.2)
    await asyncio.gather(*tasks)
    return statistics.median(latencies)


async def measure(args: argparse.Namespace) -> None:
    n = args.recipients
    if args.kill_worker:
        await measure_with_kills(
            n,
            args.kill_worker,
            page_size=args.page_size,
            concurrency=args.concurrency,
            add_audience=add_audience,
            template_id=TEMPLATE_ID,
            prefix=PREFIX,
            say=say,
        )
        return
    async with bench_stack(users=1, worker_process=False) as stack:
        say(f"store: {stack.store_label}; {n} recipients, concurrency {args.concurrency}")
        await add_audience(stack.tidings, stack.store, n)
        ceiling = await raw_ceiling(stack, min(n, args.ceiling_messages), args.concurrency)
        say(f"raw SMTP ceiling: {ceiling:.0f} messages/s")

        idle = {p: await singles_latency(stack, p, PROBES) for p in PROBE_PRIORITIES}
        broadcast = asyncio.create_task(timed_broadcast(stack, Channel.EMAIL, args))
        await asyncio.sleep(2)  # the broadcast's first batches are sending
        busy = {p: await singles_latency(stack, p, PROBES) for p in PROBE_PRIORITIES}
        seconds, result = await broadcast
        for p in PROBE_PRIORITIES:
            say(
                f"single {p.value} email p50 latency: {idle[p] * 1000:.0f} ms idle,"
                f" {busy[p] * 1000:.0f} ms during the email broadcast"
            )
        email = result.counters.channels[Channel.EMAIL]
        arrivals = Counter(
            m.rcpt_tos[0] for m in stack.sink.messages if m.rcpt_tos[0].startswith(PREFIX)
        )
        stack.sink.clear()
        rate = email.sent / seconds
        say(
            f"email: {email.sent} sent, {email.failed} failed in {seconds:.1f} s ({rate:.0f}/s);"
            f" {len(arrivals)} recipients reached, {sum(arrivals.values()) - len(arrivals)}"
            f" extra copies; runs {result.runs}"
        )
        say(f"email ratio to raw SMTP ceiling: {rate / ceiling:.2f}")

        seconds, result = await timed_broadcast(stack, Channel.IN_APP, args)
        in_app = result.counters.channels[Channel.IN_APP]
        inbox = await stack.inbox_count("bc-")
        say(f"in-app: {in_app.sent} delivered in {seconds:.1f} s; {inbox} inbox items")
        say(f"in-app recipients/s: {in_app.sent / seconds:.0f}")
        say(f"worker peak RSS MB: {peak_rss_mb():.0f}")

    if args.postgres:
        async with bench_stack(users=1, database_url=args.postgres, worker_process=False) as stack:
            await add_audience(stack.tidings, stack.store, n)
            seconds, result = await timed_broadcast(stack, Channel.IN_APP, args)
            in_app = result.counters.channels[Channel.IN_APP]
            say(f"in-app on {stack.store_label}: {in_app.sent} delivered in {seconds:.1f} s")
            say(f"in-app recipients/s on PostgreSQL: {in_app.sent / seconds:.0f}")
            say(f"worker peak RSS MB: {peak_rss_mb():.0f}")


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s %(message)s")
    args = parse_args(argv)
    eventloop.run(measure(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
