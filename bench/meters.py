"""What a measurement costs besides wall-clock time: CPU per process, and the SDK's warnings,
counted rather than printed."""

from __future__ import annotations

import logging
import os
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from temporalio.runtime import LogForwardingConfig, LoggingConfig, Runtime, TelemetryConfig

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


@dataclass
class PhaseCost:
    wall_seconds: float
    python_cpu_seconds: float  # the client, the workers and the sink: one process
    server_cpu_seconds: float | None  # the dev server
    sdk_warnings: dict[str, int]


class PhaseMeter:
    """CPU (this process, the dev server) and SDK warnings spent in one measurement."""

    def __init__(self, stack: BenchStack) -> None:
        self._stack = stack
        self._cpu = cpu_seconds()
        self._warnings = dict(stack.core_warnings.counts)
        self._wall = time.monotonic()

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
        )
