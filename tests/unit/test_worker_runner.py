"""The worker keeps the workflow sandbox on while passing the domain through it."""

from __future__ import annotations

import sys

import pytest
from pydantic import ValidationError
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner

from tidings.settings import Settings
from worker.main import PASSTHROUGH_MODULES, workflow_runner


def test_the_sandbox_stays_on_and_reloads_the_workflow_module() -> None:
    runner = workflow_runner()
    assert isinstance(runner, SandboxedWorkflowRunner)
    restrictions = runner.restrictions
    assert not restrictions.passthrough_all_modules
    assert {"tidings", "pydantic", "activities"} <= restrictions.passthrough_modules
    # The workflow modules themselves are re-imported per run, so their calls stay checked.
    assert "workflows" not in restrictions.passthrough_modules
    assert "workflows.notification" not in restrictions.passthrough_modules
    assert "workflows.experiment" not in restrictions.passthrough_modules


def test_every_passed_through_module_is_importable() -> None:
    for name in PASSTHROUGH_MODULES:
        __import__(name)
        assert name in sys.modules


def test_the_sticky_cache_holds_at_least_the_tasks_in_progress() -> None:
    with pytest.raises(ValidationError, match="worker_max_cached_workflows: 5 is below"):
        Settings(
            _env_file=None, worker_max_cached_workflows=5, worker_max_concurrent_workflow_tasks=10
        )
    assert Settings(_env_file=None, worker_max_cached_workflows=0).worker_max_cached_workflows == 0
    assert Settings(_env_file=None).worker_max_concurrent_workflow_tasks == 10
