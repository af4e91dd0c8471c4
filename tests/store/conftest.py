"""Store fixtures: every test runs against a SQLite file and, when it answers, the PostgreSQL
at 127.0.0.1:5432 (each test in a schema of its own, dropped afterwards)."""

from __future__ import annotations

import socket
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from tidings.models import User
from tidings.store import Store

PG_HOST, PG_PORT = "127.0.0.1", 5432
PG_URL = f"postgresql+asyncpg://postgres@{PG_HOST}:{PG_PORT}/test"


def _postgres_answers() -> bool:
    try:
        with socket.create_connection((PG_HOST, PG_PORT), timeout=1):
            return True
    except OSError:
        return False


@dataclass
class Database:
    """Where a test's store lives; open it as many times as the test needs."""

    url: str
    connect_args: dict[str, Any] = field(default_factory=dict)

    @property
    def backend(self) -> str:
        return "postgresql" if self.url.startswith("postgresql") else "sqlite"

    async def open(self) -> Store:
        return await Store.open(self.url, connect_args=self.connect_args)


@pytest_asyncio.fixture(
    loop_scope="session",
    params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)],
)
async def database(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    if request.param == "sqlite":
        yield Database(f"sqlite+aiosqlite:///{tmp_path / 'data' / 'tidings.db'}")
        return
    if not _postgres_answers():
        pytest.skip(f"PostgreSQL is not accepting connections at {PG_HOST}:{PG_PORT}")
    schema = f"tidings_test_{uuid.uuid4().hex[:12]}"
    admin = create_async_engine(PG_URL, isolation_level="AUTOCOMMIT")
    try:
        async with admin.connect() as conn:
            await conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        yield Database(PG_URL, {"server_settings": {"search_path": schema}})
    finally:
        async with admin.connect() as conn:
            await conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        await admin.dispose()


@pytest_asyncio.fixture(loop_scope="session")
async def store(database: Database) -> AsyncIterator[Store]:
    opened = await database.open()
    try:
        yield opened
    finally:
        await opened.close()


@pytest_asyncio.fixture(loop_scope="session")
async def user(store: Store) -> User:
    return await store.upsert_user(User(id="ada", email="ada@example.com"))
