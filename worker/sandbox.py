"""The workflow sandbox the worker runs every workflow in: temporalio's own, with its code
strings compiled once per process instead of once per call.

temporalio 1.35's sandbox (`temporalio.worker.workflow_sandbox._runner._Instance._run_code`)
crosses into a run's sandbox by `exec` of a small source string: on every activation, and for
every payload its six payload passes touch (the serialization context is asked of the sandbox,
`get_serialization_context` and `get_external_store_context`). `exec` of a string compiles it
each time; in the worker's profile the compiling alone was about 8% of its samples during the
bench's notification phase (README, "Issue 13, eleventh round"). The strings are a handful per
workflow type, so each is compiled once here and the code object executed, with the same
globals, the same restriction flags and the same per-run re-import of the workflow's module:
what the sandbox checks and isolates is unchanged.

It subclasses the SDK's private `_Instance` (temporalio is pinned in requirements/lock.txt). Where
a later temporalio has changed `_run_code`, `sandbox_runner` falls back to the plain
`SandboxedWorkflowRunner`; `tests/unit/test_worker_runner.py` pins which one this install gets, so
an upgrade that moves or changes it fails there first.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import threading
from types import CodeType
from typing import Any

import temporalio.workflow
from temporalio.worker import WorkflowInstance, WorkflowInstanceDetails
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions
from temporalio.worker.workflow_sandbox._runner import _Instance

# The body this module replaces, as temporalio 1.35 has it: a change there means the override
# below may no longer do what the SDK's does, so the plain runner is used instead.
_EXPECTED_RUN_CODE = (
    "for k, v in extra_globals.items():",
    "temporalio.workflow.unsafe._set_in_sandbox(True)",
    "self._current_thread_id = threading.get_ident()",
    "exec(code, self.globals_and_locals, self.globals_and_locals)",
    "temporalio.workflow.unsafe._set_in_sandbox(False)",
    "self._current_thread_id = None",
    "self.globals_and_locals.pop(k, None)",
)


@functools.lru_cache(maxsize=256)
def _compiled(code: str) -> CodeType:
    # "<string>" is the name `exec` gives a string's code, so tracebacks read as before.
    return compile(code, "<string>", "exec")


@functools.cache  # one read of the SDK's source per process, not one per Worker built
def _sdk_run_code_is_known() -> bool:
    try:
        source = inspect.getsource(_Instance._run_code)
    except (OSError, TypeError):
        return False
    return all(line in source for line in _EXPECTED_RUN_CODE)


class _CompiledOnceInstance(_Instance):
    def _run_code(self, code: str, **extra_globals: Any) -> None:
        # temporalio's `_run_code`, line for line, except that `code` is compiled once.
        for k, v in extra_globals.items():
            self.globals_and_locals[k] = v
        try:
            temporalio.workflow.unsafe._set_in_sandbox(True)
            self._current_thread_id = threading.get_ident()
            exec(_compiled(code), self.globals_and_locals, self.globals_and_locals)
        finally:
            temporalio.workflow.unsafe._set_in_sandbox(False)
            self._current_thread_id = None
            for k in extra_globals:
                self.globals_and_locals.pop(k, None)


@dataclasses.dataclass(frozen=True)
class CompiledOnceSandboxRunner(SandboxedWorkflowRunner):
    """`SandboxedWorkflowRunner` whose runs execute its code strings compiled once."""

    def create_instance(self, det: WorkflowInstanceDetails) -> WorkflowInstance:
        return _CompiledOnceInstance(det, self.runner_class, self.restrictions)


def sandbox_runner(restrictions: SandboxRestrictions) -> SandboxedWorkflowRunner:
    """The sandbox with `restrictions`: compiled once where this temporalio allows it."""
    if _sdk_run_code_is_known():
        return CompiledOnceSandboxRunner(restrictions=restrictions)
    return SandboxedWorkflowRunner(restrictions=restrictions)
