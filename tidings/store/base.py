"""What every part of the Store shares: the engine, its sessions and a few helpers."""

from __future__ import annotations

import asyncio
import contextlib
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Hashable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar, cast

from sqlalchemy import CursorResult, Result, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker

from tidings.models import Template
from tidings.store.engine import ONE_STATEMENT_OPTION, WRITE_OPTION
from tidings.store.tables import Base

Upsert = postgresql.Insert | sqlite.Insert
# Rows per IN (...) list or multi-row INSERT: well under SQLite's and asyncpg's bounds on bound
# parameters (32,766 and 32,767), whatever the number of columns.
IN_CHUNK = 1000
K = TypeVar("K")
V = TypeVar("V")
S = TypeVar("S")


def utcnow() -> datetime:
    return datetime.now(UTC)


def check_limit(limit: int, offset: int = 0) -> None:
    if limit < 1:
        raise ValueError(f"limit: must be at least 1, got {limit}")
    if offset < 0:
        raise ValueError(f"offset: must not be negative, got {offset}")


def rowcount(result: Result[Any]) -> int:
    return cast(CursorResult[Any], result).rowcount


class BoundedCache(Generic[K, V]):
    """A small LRU map for immutable rows (template versions)."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._items: OrderedDict[K, V] = OrderedDict()

    def get(self, key: K) -> V | None:
        value = self._items.get(key)
        if value is not None:
            self._items.move_to_end(key)
        return value

    def put(self, key: K, value: V) -> None:
        self._items[key] = value
        self._items.move_to_end(key)
        if len(self._items) > self._size:
            self._items.popitem(last=False)


class StoreBase:
    """Holds the engine. Every public method runs in exactly one transaction: `_write()` for
    anything that changes rows (committed on success, rolled back on any error), `_read()` for
    the rest (one consistent snapshot)."""

    engine: AsyncEngine

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._sessions = async_sessionmaker(engine, expire_on_commit=False)
        self._versions: BoundedCache[tuple[str, int], Template] = BoundedCache(1024)
        # SQLite has one writer at a time. Writers of this process queue here rather than on
        # SQLite's busy handler, which sleeps in steps of up to 100 ms while it waits: under
        # concurrent requests that idles the process. (Other processes still meet the busy
        # handler.)
        self._writer = asyncio.Lock() if engine.dialect.name == "sqlite" else None
        self._statements: dict[Hashable, Any] = {}
        # Engines sharing this one's pool whose connections carry their option from the start:
        # setting it per transaction cost a greenlet switch each time.
        self._writer_engine = engine.execution_options(**{WRITE_OPTION: True})
        self._one_statement_engine = engine.execution_options(**{ONE_STATEMENT_OPTION: True})

    def _statement(self, name: Hashable, build: Callable[[], S]) -> S:
        """The statement `name`, built by `build` on first use and kept for this store's life.
        The statements every notification runs are built once, their values bound by name at
        execution: building and hashing a statement per call cost more CPU in SQLAlchemy than
        running it (bench/store_calls.py)."""
        try:
            return cast(S, self._statements[name])
        except KeyError:
            stmt = self._statements[name] = build()
            return stmt

    @asynccontextmanager
    async def _read(self) -> AsyncIterator[AsyncSession]:
        async with self._sessions() as session:
            yield session

    def _queue(self) -> AbstractAsyncContextManager[Any]:
        """Where this process's writers wait their turn (SQLite; elsewhere nowhere)."""
        return self._writer if self._writer is not None else contextlib.nullcontext()

    @asynccontextmanager
    async def _write(self) -> AsyncIterator[AsyncSession]:
        async with self._queue(), self._sessions() as session, session.begin():
            # Procuring the connection with the option set makes SQLite BEGIN IMMEDIATE.
            await session.connection(execution_options={WRITE_OPTION: True})
            yield session

    # The same transactions on a bare connection, for the calls every notification makes that
    # run only Core statements: the ORM session around them cost about 0.15 ms of CPU per
    # transaction (bench/store_calls.py).

    @asynccontextmanager
    async def _read_conn(self) -> AsyncIterator[AsyncConnection]:
        async with self.engine.connect() as conn:  # begun on first use, rolled back on close
            yield conn

    @asynccontextmanager
    async def _read_one(self) -> AsyncIterator[AsyncConnection]:
        """A read of exactly ONE statement. On SQLite it runs without BEGIN: a lone statement
        reads one snapshot anyway, and the BEGIN was a statement of its own (a cursor, an
        execute and a close, each a hop to aiosqlite's thread). Two statements here would not
        read the same snapshot: use `_read_conn` for those."""
        async with self._one_statement_engine.connect() as conn:
            yield conn

    @asynccontextmanager
    async def _write_one(self) -> AsyncIterator[AsyncConnection]:
        """A write of exactly ONE statement, queued as `_write_conn`'s are. On SQLite it runs
        without BEGIN IMMEDIATE: a lone statement in autocommit mode is a transaction of its
        own, and one that writes takes the write lock from its start (no snapshot to upgrade).
        PostgreSQL commits it as any transaction."""
        async with self._queue(), self._one_statement_engine.connect() as conn, conn.begin():
            yield conn

    @asynccontextmanager
    async def _write_conn(self) -> AsyncIterator[AsyncConnection]:
        # The writer engine's connections carry WRITE_OPTION: SQLite begins with BEGIN IMMEDIATE.
        async with self._queue(), self._writer_engine.connect() as conn, conn.begin():
            yield conn

    async def _serialise(self, session: AsyncSession | AsyncConnection, key: str) -> None:
        """Queue behind any other transaction holding `key` until this one ends. SQLite needs
        nothing: a write transaction there already excludes every other writer."""
        if self.engine.dialect.name == "postgresql":
            await session.execute(
                text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))"),
                {"key": f"tidings:{key}"},
            )

    def _insert(self, entity: type[Base]) -> Upsert:
        """INSERT with ON CONFLICT support; both backends spell it the same way."""
        if self.engine.dialect.name == "postgresql":
            return postgresql.insert(entity)
        return sqlite.insert(entity)
