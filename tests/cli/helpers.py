"""Helpers for the CLI tests: invoking the app, and the failure contract."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass

from temporalio.client import Client
from temporalio.service import RPCError
from typer.testing import CliRunner, Result

from starter.cli import app
from tests.support import Stack
from workflows.queues import URGENT_SUFFIX

UI_URL = "http://ui.example"


@dataclass
class Cli:
    env: dict[str, str]

    async def __call__(self, *args: str) -> Result:
        def invoke() -> Result:
            return CliRunner().invoke(app, list(args), env=self.env, catch_exceptions=False)

        return await asyncio.to_thread(invoke)


def cli_env(stack: Stack, client: Client) -> dict[str, str]:
    s = stack.settings
    return {
        "TIDINGS_ENVIRONMENT": "test",
        "TIDINGS_DATA_DIR": str(s.data_dir),
        "TIDINGS_DATABASE_URL": s.resolved_database_url,
        "TIDINGS_TASK_QUEUE": s.task_queue,
        "TIDINGS_TEMPORAL_ADDRESS": client.service_client.config.target_host,
        "TIDINGS_TEMPORAL_NAMESPACE": client.namespace,
        "TIDINGS_TEMPORAL_UI_URL": UI_URL,
        "TIDINGS_SMTP_PORT": str(s.smtp_port),
        # Wide enough that no table cell is folded in the middle of an id.
        "COLUMNS": "250",
    }


async def terminate_queue(client: Client, task_queue: str) -> None:
    """End the runs the CLI started (they wait out a 72 h engagement window), so none is left
    on a task queue whose worker is gone."""
    query = (
        f'(TaskQueue = "{task_queue}" OR TaskQueue = "{task_queue}{URGENT_SUFFIX}")'
        ' AND ExecutionStatus = "Running"'
    )
    async for wf in client.list_workflows(query):
        with contextlib.suppress(RPCError):
            await client.get_workflow_handle(wf.id, run_id=wf.run_id).terminate("test finished")


def one_line_error(result: Result, *fragments: str) -> str:
    """The failure contract: exit code 1, exactly one line on stderr, no traceback."""
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: "), lines[0]
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in lines[0]
    return lines[0]


def ok(result: Result) -> str:
    assert result.exit_code == 0, result.output
    return result.stdout
