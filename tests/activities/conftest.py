"""The activities over a real SQLite store and a recording sender, run in ActivityEnvironment."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path

import pytest_asyncio
from temporalio.testing import ActivityEnvironment

from tests.fakes import RecordingSender
from tidings.models import Channel, TemplateContent, TemplateDefinition, User
from tidings.store import Store


def activity_env(*, attempt: int = 1) -> ActivityEnvironment:
    env = ActivityEnvironment()
    env.info = dataclasses.replace(env.info, attempt=attempt)
    return env


@pytest_asyncio.fixture(loop_scope="session")
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    opened = await Store.open(f"sqlite+aiosqlite:///{tmp_path / 'tidings.db'}")
    await opened.upsert_user(User(id="ada", email="ada@example.com"))
    await opened.add_template_version(
        TemplateDefinition(
            id="hello",
            channels=[Channel.EMAIL, Channel.IN_APP],
            content=TemplateContent(subject="Hi {{ name }}", text="Hello {{ name }}"),
        )
    )
    try:
        yield opened
    finally:
        await opened.close()


@pytest_asyncio.fixture(loop_scope="session")
async def sender() -> RecordingSender:
    return RecordingSender(channel=Channel.EMAIL)
