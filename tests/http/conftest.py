"""The HTTP app in-process (httpx.ASGITransport) in front of a real stack: the time-skipping
Temporal server, a SQLite store, the SMTP sink and the workers on a fresh task queue."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest_asyncio
from temporalio.testing import WorkflowEnvironment

from tests.http.helpers import api
from tests.support import Stack, running_stack


@pytest_asyncio.fixture(loop_scope="session")
async def stack(time_env: WorkflowEnvironment, tmp_path: Path) -> AsyncIterator[Stack]:
    async with running_stack(time_env.client, tmp_path) as s:
        await s.seed()
        yield s


@pytest_asyncio.fixture(loop_scope="session")
async def client(stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    async with api(stack.tidings) as c:
        yield c
