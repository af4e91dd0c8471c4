"""A real SQLite store for the domain modules that read it (planning, delivery)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest_asyncio

from tidings.store import Store


@pytest_asyncio.fixture(loop_scope="session")
async def sqlite_store(tmp_path: Path) -> AsyncIterator[Store]:
    store = await Store.open(f"sqlite+aiosqlite:///{tmp_path / 'tidings.db'}")
    try:
        yield store
    finally:
        await store.close()
