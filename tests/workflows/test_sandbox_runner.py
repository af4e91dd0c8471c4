"""The worker's sandbox (worker/sandbox.py compiles its code strings once) still isolates each
run and still refuses what workflow code must not do, on a real dev server."""

from __future__ import annotations

import uuid

import pytest
from temporalio.client import WorkflowFailureError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker
from temporalio.worker.workflow_sandbox import RestrictedWorkflowAccessError

from tests.workflows.sandbox_probe import ClockWorkflow, CounterWorkflow
from worker.main import workflow_runner
from worker.sandbox import CompiledOnceSandboxRunner, _compiled


def _worker(env: WorkflowEnvironment, queue: str) -> Worker:
    return Worker(
        env.client,
        task_queue=queue,
        workflows=[CounterWorkflow, ClockWorkflow],
        workflow_runner=workflow_runner(),
        # Fail the run (rather than retry its task forever) so the test can read why.
        workflow_failure_exception_types=[RestrictedWorkflowAccessError],
        max_cached_workflows=0,
    )


def test_this_install_gets_the_compiled_once_sandbox() -> None:
    # A temporalio upgrade that changes the sandbox's private `_run_code` falls back to the
    # plain runner: this says so, so the README's figures are re-measured.
    assert type(workflow_runner()) is CompiledOnceSandboxRunner


async def test_each_run_gets_its_own_module_and_the_code_is_compiled_once(
    dev_env: WorkflowEnvironment,
) -> None:
    queue = f"sandbox-{uuid.uuid4().hex[:8]}"
    async with _worker(dev_env, queue):
        counts = []
        for n in range(3):
            counts.append(
                await dev_env.client.execute_workflow(
                    CounterWorkflow.run, f"run-{n}", id=f"{queue}-{n}", task_queue=queue
                )
            )
        before = _compiled.cache_info()
        await dev_env.client.execute_workflow(
            CounterWorkflow.run, "again", id=f"{queue}-again", task_queue=queue
        )
    # Module state does not leak between runs: the workflow's module is imported per run.
    assert counts == [1, 1, 1]
    # A run of a workflow type seen before compiles nothing new.
    after = _compiled.cache_info()
    assert after.misses == before.misses
    assert after.hits > before.hits


async def test_a_clock_read_is_still_refused(dev_env: WorkflowEnvironment) -> None:
    queue = f"sandbox-{uuid.uuid4().hex[:8]}"
    async with _worker(dev_env, queue):
        with pytest.raises(WorkflowFailureError) as raised:
            await dev_env.client.execute_workflow(
                ClockWorkflow.run, "clock", id=f"{queue}-clock", task_queue=queue
            )
    cause = raised.value.cause
    assert "RestrictedWorkflowAccessError" in f"{cause}{getattr(cause, 'type', '')}"
    assert "datetime.datetime.now" in str(cause)
