"""SQLite's driver (`tidings.store.sqlite_driver`): each statement is one call to aiosqlite's
thread, and what SQLAlchemy reads off a cursor (rows, description, row counts, the last row id,
errors) is what the statement gave. It leans on SQLAlchemy's and aiosqlite's internals, so these
pin the behaviour the store relies on."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiosqlite
import pytest
import pytest_asyncio
from sqlalchemy import exc, text
from sqlalchemy.ext.asyncio import AsyncEngine

from tidings.store.engine import create_engine
from tidings.store.sqlite_driver import OneHopCursor


@pytest_asyncio.fixture(loop_scope="session")
async def engine(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    made = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'driver.db'}")
    async with made.begin() as conn:
        await conn.execute(text("CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT UNIQUE)"))
    try:
        yield made
    finally:
        await made.dispose()


@pytest.fixture
def hops(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The calls queued to aiosqlite's thread, by function name."""
    queued: list[str] = []
    real: Callable[..., Awaitable[Any]] = aiosqlite.Connection._execute

    async def counted(self: aiosqlite.Connection, fn: Any, *args: Any, **kw: Any) -> Any:
        queued.append(getattr(fn, "__name__", repr(fn)))
        return await real(self, fn, *args, **kw)

    monkeypatch.setattr(aiosqlite.Connection, "_execute", counted)
    return queued


async def test_a_statement_is_one_call_to_the_thread(engine: AsyncEngine, hops: list[str]) -> None:
    async with engine.connect() as conn:
        await conn.execute(text("SELECT 1"))  # the BEGIN and the first statement
        hops.clear()
        rows = (await conn.execute(text("SELECT 1 AS a, 'x' AS b"))).all()
        assert hops == ["_run"]
        hops.clear()
        await conn.execute(text("INSERT INTO t (name) VALUES ('a'), ('b')"))
        assert hops == ["_run"]
    assert [tuple(r) for r in rows] == [(1, "x")]
    async with engine.connect() as conn:
        raw = await conn.get_raw_connection()
        assert isinstance(raw.driver_connection, aiosqlite.Connection)
        assert isinstance(raw.dbapi_connection.cursor(), OneHopCursor)  # type: ignore[union-attr]


async def test_rows_counts_and_the_last_row_id(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        inserted = await conn.execute(text("INSERT INTO t (name) VALUES ('a')"))
        assert (inserted.rowcount, inserted.lastrowid) == (1, 1)
        ignored = await conn.execute(
            text("INSERT INTO t (name) VALUES ('a') ON CONFLICT DO NOTHING")
        )
        assert ignored.rowcount == 0
        many = await conn.execute(
            text("INSERT INTO t (name) VALUES (:name)"), [{"name": f"n{i}"} for i in range(5)]
        )
        assert many.rowcount == 5
        returned = await conn.execute(text("INSERT INTO t (name) VALUES ('z') RETURNING id, name"))
        assert returned.keys() == ["id", "name"] and [tuple(r) for r in returned] == [(7, "z")]
        updated = await conn.execute(text("UPDATE t SET name = name || '!' WHERE id > 3"))
        assert updated.rowcount == 4
        big = await conn.execute(
            text(
                "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 5000)"
                " SELECT i FROM n"
            )
        )
        assert [r[0] for r in big] == list(range(1, 5001))
        assert (await conn.execute(text("SELECT 1 WHERE 0"))).first() is None


async def test_errors_come_out_as_sqlalchemys_and_roll_back(engine: AsyncEngine) -> None:
    with pytest.raises(exc.IntegrityError, match="UNIQUE"):
        async with engine.begin() as conn:
            await conn.execute(text("INSERT INTO t (name) VALUES ('a')"))
            await conn.execute(text("INSERT INTO t (name) VALUES ('a')"))
    with pytest.raises(exc.OperationalError, match="no such table"):
        async with engine.connect() as conn:
            await conn.execute(text("SELECT * FROM missing"))
    async with engine.connect() as conn:
        assert (await conn.execute(text("SELECT count(*) FROM t"))).scalar_one() == 0


async def test_streamed_results_still_come_through(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await conn.execute(
            text("INSERT INTO t (name) VALUES (:name)"), [{"name": f"n{i}"} for i in range(300)]
        )
    async with engine.connect() as conn:
        streamed = await conn.stream(text("SELECT name FROM t ORDER BY id"))
        names = [row[0] async for row in streamed]
    assert names == [f"n{i}" for i in range(300)]
