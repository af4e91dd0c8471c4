"""What a measurement costs besides wall-clock time: CPU per process, and the SDK's warnings,
counted rather than printed."""

from __future__ import annotations

import logging
import os
import time
from collections import Counter
from pathlib import Path

from temporalio.runtime import LogForwardingConfig, LoggingConfig, Runtime, TelemetryConfig


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
