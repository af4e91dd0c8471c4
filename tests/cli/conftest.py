"""The `tidings` CLI against a real stack: the session's dev server, a SQLite store and SMTP sink
under tmp_path, and the worker on a fresh task queue (tests/support.py).

The seam is the one users have: TIDINGS_* environment variables. Each invocation runs in a thread
because the CLI calls asyncio.run() itself, while the stack's worker keeps running on the session
loop in this thread.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from temporalio.testing import WorkflowEnvironment

from tests.cli.helpers import Cli, cli_env, terminate_queue
from tests.support import Stack, running_stack


@pytest_asyncio.fixture(loop_scope="session")
async def stack(dev_env: WorkflowEnvironment, tmp_path: Path) -> AsyncIterator[Stack]:
    async with running_stack(dev_env.client, tmp_path) as s:
        await s.seed()
        yield s
        await terminate_queue(dev_env.client, s.settings.task_queue)


@pytest.fixture
def cli(stack: Stack, dev_env: WorkflowEnvironment) -> Cli:
    return Cli(cli_env(stack, dev_env.client))
