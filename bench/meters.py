"""What a measurement costs besides wall-clock time: CPU per process, SQL statements, and the
SDK's warnings, counted rather than printed; those of the worker process (bench/worker_child.py)
as it reports them, added to the bench process's own."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from temporalio.runtime import LogForwardingConfig, LoggingConfig, Runtime, TelemetryConfig

from bench.sqlcount import SqlCounts

if TYPE_CHECKING:  # the stack and the worker child import this module
    from bench.stack import BenchStack
    from bench.worker_child import WorkerCounts


class CoreWarnings(logging.Handler):
    """Counts the SDK core's warnings instead of printing them: under a backlog it logs one line
    per slow workflow task, and the count says more than a screenful of them."""

    KINDS = {
        "TMPRL1104": "workflow task over 5 s",
        "Activity not found on completion": "activity finished after its timeout",
        "Completing activity as failed": "activity attempt failed",
    }

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.counts: Counter[str] = Counter()
        self.samples: dict[str, str] = {}  # the first message of each kind, for the curious

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        kind = next((k for key, k in self.KINDS.items() if key in message), "other warning")
        self.counts[kind] += 1
        self.samples.setdefault(kind, message[:300])

    def runtime(self) -> Runtime:
        logger = logging.getLogger("bench.sdk_core")
        logger.propagate = False
        logger.setLevel(logging.WARNING)
        logger.addHandler(self)
        forwarding = LogForwardingConfig(logger=logger)
        return Runtime(
            telemetry=TelemetryConfig(logging=LoggingConfig(filter="WARN", forwarding=forwarding))
        )


def cpu_seconds(besides: int | None = None) -> tuple[float, float | None]:
    """CPU time used so far by this process (every thread) and by its children (the dev
    server) other than `besides` (the worker process, which reports its own), the latter read
    from /proc and None where there is no /proc."""
    own = time.process_time()
    proc = Path("/proc")
    if not proc.is_dir():
        return own, None
    tick = os.sysconf("SC_CLK_TCK")
    children = 0.0
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == os.getpid() and int(entry.name) != besides:
            children += (int(fields[11]) + int(fields[12])) / tick
    return own, children


class SlowCallbacks(logging.Handler):
    """Counts asyncio debug mode's "Executing <callback> took N seconds" lines (--loop-debug):
    each is a stretch during which the event loop, and so every workflow task, activity and
    client call in the process, waited."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.count = 0
        self.seconds = 0.0
        self.by_callback: Counter[str] = Counter()

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if not message.startswith("Executing "):
            return
        self.count += 1
        with contextlib.suppress(ValueError, IndexError):
            self.seconds += float(message.rsplit(" took ", 1)[1].split()[0])
        # The callback's name without the addresses and line numbers that make each unique.
        name = re.sub(r" at 0x[0-9a-f]+|:\d+", "", message.split(" took ", 1)[0])
        self.by_callback[name[len("Executing ") :][:160]] += 1

    def install(self, slow_seconds: float) -> None:
        loop = asyncio.get_running_loop()
        loop.set_debug(True)
        loop.slow_callback_duration = slow_seconds
        logging.getLogger("asyncio").addHandler(self)
        logging.getLogger("asyncio").propagate = False


@dataclass
class PhaseCost:
    wall_seconds: float
    python_cpu_seconds: float  # the bench process's and the worker process's, together
    server_cpu_seconds: float | None  # the dev server
    sdk_warnings: dict[str, int]
    sql: SqlCounts | None = None  # the store's statements and transactions, both processes'
    slow_callbacks: int | None = None  # with --loop-debug: event-loop stalls over its bound
    # The worker process's share of python_cpu_seconds; None when the Workers ran in the bench's
    # process (bench_stack(worker_process=False)), whose figure then holds both.
    worker_cpu_seconds: float | None = None

    @property
    def bench_cpu_seconds(self) -> float:
        """The bench process's own: the client, the SMTP sink and the webhook receiver (and the
        Workers, when they ran in it)."""
        return self.python_cpu_seconds - (self.worker_cpu_seconds or 0.0)


def _sum_sql(a: SqlCounts | None, b: SqlCounts | None) -> SqlCounts | None:
    if a is None or b is None:
        return a or b
    return SqlCounts(a.statements + b.statements, a.transactions + b.transactions)


@dataclass(frozen=True)
class _Spent:
    """Everything a PhaseMeter subtracts, at one moment."""

    cpu: tuple[float, float | None]
    worker: WorkerCounts | None
    warnings: Counter[str]
    sql: SqlCounts | None
    slow: int | None

    @classmethod
    async def now(cls, stack: BenchStack) -> _Spent:
        worker = await stack.worker.counts() if stack.worker is not None else None
        warnings = Counter(stack.core_warnings.counts)
        if worker is not None:
            warnings.update(worker.warnings)
        return cls(
            cpu=cpu_seconds(stack.worker.pid if stack.worker is not None else None),
            worker=worker,
            warnings=warnings,
            sql=_sum_sql(
                stack.sql.snapshot() if stack.sql is not None else None,
                worker.sql if worker is not None else None,
            ),
            slow=stack.slow_callbacks.count if stack.slow_callbacks is not None else None,
        )


class PhaseMeter:
    """CPU (this process, the worker process, the dev server), SQL statements and SDK warnings
    spent in one measurement: `meter = await PhaseMeter.start(stack)`, then
    `await meter.done()`."""

    def __init__(self, stack: BenchStack, spent: _Spent) -> None:
        self._stack = stack
        self._spent = spent
        self._wall = time.monotonic()

    @classmethod
    async def start(cls, stack: BenchStack) -> PhaseMeter:
        return cls(stack, await _Spent.now(stack))

    async def done(self) -> PhaseCost:
        wall = time.monotonic() - self._wall
        was, now = self._spent, await _Spent.now(self._stack)
        worker = (
            None
            if now.worker is None or was.worker is None
            else now.worker.cpu_seconds - was.worker.cpu_seconds
        )
        return PhaseCost(
            wall_seconds=wall,
            python_cpu_seconds=now.cpu[0] - was.cpu[0] + (worker or 0.0),
            server_cpu_seconds=None if now.cpu[1] is None else now.cpu[1] - (was.cpu[1] or 0.0),
            sdk_warnings=dict(now.warnings - was.warnings),
            sql=None if now.sql is None or was.sql is None else now.sql.minus(was.sql),
            slow_callbacks=None if now.slow is None or was.slow is None else now.slow - was.slow,
            worker_cpu_seconds=worker,
        )
