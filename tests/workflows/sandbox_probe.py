"""Workflows that probe the worker's sandbox (tests/workflows/test_sandbox_runner.py): kept apart
from the test module so the sandbox re-imports only this small file per run."""

from __future__ import annotations

from datetime import datetime

from temporalio import workflow

# Module state a run changes: each run must see its own fresh copy of the module.
RUNS_SEEN: list[str] = []


@workflow.defn(name="SandboxProbeCounter")
class CounterWorkflow:
    @workflow.run
    async def run(self, label: str) -> int:
        RUNS_SEEN.append(label)
        return len(RUNS_SEEN)


@workflow.defn(name="SandboxProbeClock")
class ClockWorkflow:
    # Takes an argument as every Tidings workflow does: a workflow whose run takes none made mypy
    # (1.x, a fresh run) lose the types of `Client.get_workflow_handle_for` in other test files.
    @workflow.run
    async def run(self, label: str) -> str:
        # Not allowed in a workflow: the sandbox refuses it.
        return f"{label} {datetime.now().isoformat()}"
