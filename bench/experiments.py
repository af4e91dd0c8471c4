"""A/B test benchmark: enrol users through the client into a running experiment on the embedded
stack (dev server with a SQLite history file, SQLite store, real in-app deliveries), then click
some notifications and time the decision.

    .venv/bin/python bench/experiments.py               # 10,000 enrolments
    .venv/bin/python bench/experiments.py --users 500   # a quick look

Prints: enrolments per second (client -> update -> child started), the parent's history length
per run (continue-as-new keeps each under its event budget), and the time from the last
engagement to the decision (bounded by the test's check interval). Figures only; nothing here
passes or fails on them.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

if __name__ == "__main__" and __package__ in (None, ""):  # run as a script: bench/experiments.py
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.stack import TEMPLATE_ID, BenchStack, bench_stack
from tidings import eventloop
from tidings.errors import NotFound
from workflows.io import Enrollment, ExperimentResults
from workflows.queues import experiment_workflow_id

EXPERIMENT_ID = "bench_subject"


@dataclass
class Figures:
    users: int
    enrol_seconds: float = 0.0
    enrolments_per_second: float = 0.0
    runs: list[int] = field(default_factory=list)  # history length of each run, oldest first
    engaged: int = 0
    decision_after_last_engagement: float | None = None
    ending: str | None = None
    winner: str | None = None
    reason: str | None = None


def say(line: str) -> None:
    print(line, flush=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--users", type=int, default=10_000, help="users to enrol (default 10,000)")
    # The server admits at most 10 in-flight updates per workflow (history.maxInFlightUpdates).
    p.add_argument("--concurrency", type=int, default=8, help="enrolments in flight at once")
    p.add_argument("--engage", type=int, default=300, help="notifications per arm to click")
    p.add_argument("--check-every", default="2s", help="the test's check interval")
    p.add_argument("--event-budget", type=int, default=5_000, help="continue-as-new threshold")
    p.add_argument("--minimum-sample", type=int, default=50, help="per variant, before deciding")
    p.add_argument("--decision-timeout", type=float, default=600, help="seconds to wait for it")
    args = p.parse_args(argv)
    if args.users < 4 or args.concurrency < 1 or args.engage < 1:
        p.error("--users must be at least 4, --concurrency and --engage at least 1")
    return args


async def run_history_lengths(stack: BenchStack) -> list[int]:
    """Every run of the parent, through visibility, oldest first."""
    wf_id = experiment_workflow_id(EXPERIMENT_ID)
    runs = []
    async for wf in stack.client.list_workflows(f'WorkflowId = "{wf_id}"'):
        history = await stack.client.get_workflow_handle(wf_id, run_id=wf.run_id).fetch_history()
        runs.append((wf.start_time, len(history.events)))
    return [n for _, n in sorted(runs)]


async def delivered(stack: BenchStack, notification_id: str, within: float = 900) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        with contextlib.suppress(NotFound):  # started, not yet recorded
            if (await stack.tidings.status(notification_id)).status.value == "sent":
                return
        await asyncio.sleep(0.2)
    raise RuntimeError(f"{notification_id} was not delivered within {within:.0f} s")


async def measure(stack: BenchStack, args: argparse.Namespace) -> Figures:
    t = stack.tidings
    figures = Figures(users=len(stack.users))
    await t.create_experiment(
        {
            "id": EXPERIMENT_ID,
            "template_id": TEMPLATE_ID,
            "data": {"n": 1, "user": "you"},
            "variants": [
                {"name": "a", "control": True, "channels": ["in_app"]},
                {"name": "b", "channels": ["in_app"], "data": {"n": 2}},
            ],
            "metric": "clicked",
            "attribution_window": "1h",
            "minimum_sample": args.minimum_sample,
            "check_every": args.check_every,
            "max_duration": "1d",
        },
        event_budget=args.event_budget,
    )
    limit = asyncio.Semaphore(args.concurrency)

    async def one(user_id: str) -> Enrollment:
        async with limit:
            return await t.enroll(EXPERIMENT_ID, user_id)

    began = time.monotonic()
    enrolled = await asyncio.gather(*(one(u) for u in stack.users))
    figures.enrol_seconds = time.monotonic() - began
    figures.enrolments_per_second = len(enrolled) / figures.enrol_seconds
    say(f"enrolled {len(enrolled)} in {figures.enrol_seconds:.1f} s")

    # Clicks: 30% of the first `engage` of arm b, 10% of arm a's, once each is delivered.
    chosen: list[str] = []
    for arm, share in (("a", 10), ("b", 30)):
        mine = [e for e in enrolled if e.variant == arm and e.notification_id][: args.engage]
        chosen += [e.notification_id or "" for i, e in enumerate(mine) if i % 10 < share // 10]
    for nid in chosen:
        await delivered(stack, nid)
    last = datetime.now(UTC)
    for nid in chosen:
        await t.engage(nid, "clicked")
        last = datetime.now(UTC)
    figures.engaged = len(chosen)
    say(f"clicked {len(chosen)} notifications; waiting for the decision")
    handle = stack.client.get_workflow_handle(
        experiment_workflow_id(EXPERIMENT_ID), result_type=ExperimentResults
    )
    try:
        result = await asyncio.wait_for(handle.result(), timeout=args.decision_timeout)
    except TimeoutError:
        result = await t.experiment_results(EXPERIMENT_ID)
    figures.ending = result.ending.value if result.ending else None
    figures.winner, figures.reason = result.winner, result.reason
    if result.decided_at is not None:
        figures.decision_after_last_engagement = (result.decided_at - last).total_seconds()
    figures.runs = await run_history_lengths(stack)
    return figures


def render(figures: Figures, args: argparse.Namespace) -> str:
    runs = figures.runs
    lines = [
        "| measurement | figure |",
        "|---|---|",
        f"| users enrolled | {figures.users:,} (concurrency {args.concurrency}) |",
        f"| enrolments per second | {figures.enrolments_per_second:.1f}"
        f" ({figures.enrol_seconds:.1f} s) |",
        f"| parent runs (continue-as-new at {args.event_budget:,} events) | {len(runs)} |",
        f"| history length per run | max {max(runs, default=0):,},"
        f" all: {', '.join(str(n) for n in runs)} |",
        f"| notifications clicked | {figures.engaged} |",
        f"| last engagement -> decision (check every {args.check_every}) |"
        + (
            f" {figures.decision_after_last_engagement:.1f} s |"
            if figures.decision_after_last_engagement is not None
            else " no decision |"
        ),
        f"| decision | {figures.ending} ({figures.winner}): {figures.reason} |",
    ]
    return "\n".join(lines)


async def run(args: argparse.Namespace) -> Figures:
    async with bench_stack(users=args.users) as stack:
        return await measure(stack, args)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s %(message)s")
    args = parse_args(argv)
    began = time.monotonic()
    figures = eventloop.run(run(args))
    say(f"\nwhole run: {time.monotonic() - began:.0f} s\n")
    say(render(figures, args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
