"""What a measurement costs besides wall-clock time: CPU per process, and the SDK's warnings,
counted rather than printed."""

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

if TYPE_CHECKING:  # the stack imports this module
    from bench.stack import BenchStack


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


def cpu_seconds() -> tuple[float, float | None]:
    """CPU time used so far by this process (every thread) and by its children (the dev
    server), the latter read from /proc and None where there is no /proc."""
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
        if int(fields[1]) == os.getpid():
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
    python_cpu_seconds: float  # the client, the workers and the sink: one process
    server_cpu_seconds: float | None  # the dev server
    sdk_warnings: dict[str, int]
    sql: SqlCounts | None = None  # the store's statements and transactions
    slow_callbacks: int | None = None  # with --loop-debug: event-loop stalls over its bound


class PhaseMeter:
    """CPU (this process, the dev server) and SDK warnings spent in one measurement."""

    def __init__(self, stack: BenchStack) -> None:
        self._stack = stack
        self._cpu = cpu_seconds()
        self._warnings = dict(stack.core_warnings.counts)
        self._wall = time.monotonic()
        self._sql = stack.sql.snapshot() if stack.sql is not None else None
        self._slow = stack.slow_callbacks.count if stack.slow_callbacks is not None else None

    def done(self) -> PhaseCost:
        python, server = cpu_seconds()
        counts = self._stack.core_warnings.counts
        return PhaseCost(
            wall_seconds=time.monotonic() - self._wall,
            python_cpu_seconds=python - self._cpu[0],
            server_cpu_seconds=None if server is None else server - (self._cpu[1] or 0.0),
            sdk_warnings={
                k: n - self._warnings.get(k, 0)
                for k, n in counts.items()
                if n > self._warnings.get(k, 0)
            },
            sql=None
            if self._sql is None or self._stack.sql is None
            else self._stack.sql.snapshot().minus(self._sql),
            slow_callbacks=None
            if self._slow is None or self._stack.slow_callbacks is None
            else self._stack.slow_callbacks.count - self._slow,
        )
