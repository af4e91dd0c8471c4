"""aiosqlite with one hop to its thread per statement instead of three or four.

SQLAlchemy's aiosqlite adapter makes each statement a cursor (a hop to aiosqlite's thread), an
execute (a hop), a fetch of its rows (a hop) and a close (a hop), each a queue put, a wake of the
thread and a wake of the event loop: the largest single cost of the store in the worker's profile
(README, issue 13, ninth round). Here the cursor is made, executed, read and closed in ONE call
on aiosqlite's thread, and the adapter keeps the rows, the description, the row count and the
last row id it returned. Everything else (transactions, pooling, errors) is the adapter's own.

It leans on SQLAlchemy's adapter classes (`sqlalchemy.dialects.sqlite.aiosqlite`, 2.0.44+) and
aiosqlite's queue (`Connection._execute`, `_conn`), neither of them public: the store tests run
every statement through it, and `tests/store/test_sqlite_driver.py` pins what it relies on.
"""

from __future__ import annotations

import collections
import sqlite3
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, cast

import aiosqlite
from sqlalchemy.dialects.sqlite.aiosqlite import (
    AsyncAdapt_aiosqlite_connection,
    AsyncAdapt_aiosqlite_cursor,
    AsyncAdapt_aiosqlite_dbapi,
)
from sqlalchemy.util import EMPTY_DICT

_Ran = tuple[Any, int, Any, list[Any]]


def _run(conn: sqlite3.Connection, operation: str, parameters: Any) -> _Ran:
    """On aiosqlite's thread: the whole statement, its rows read before the cursor closes."""
    cursor = conn.cursor()
    try:
        if parameters is None:
            cursor.execute(operation)
        else:
            cursor.execute(operation, parameters)
        description = cursor.description
        rows = cursor.fetchall() if description else []
        return description, cursor.rowcount, cursor.lastrowid, rows
    finally:
        cursor.close()


def _run_many(conn: sqlite3.Connection, operation: str, parameters: Sequence[Any]) -> _Ran:
    cursor = conn.cursor()
    try:
        cursor.executemany(operation, parameters)
        return None, cursor.rowcount, cursor.lastrowid, []
    finally:
        cursor.close()


class _Finished:
    """What a finished statement left: the attributes SQLAlchemy reads off a cursor."""

    __slots__ = ("description", "lastrowid", "rowcount")

    def __init__(self, description: Any = None, rowcount: int = -1, lastrowid: Any = None):
        self.description = description
        self.rowcount = rowcount
        self.lastrowid = lastrowid

    async def close(self) -> None:
        return None


class OneHopCursor(AsyncAdapt_aiosqlite_cursor):
    __slots__ = ()

    def __init__(self, adapt_connection: Any) -> None:
        # No sqlite3 cursor of its own (that was a hop): each statement makes and closes one.
        self._adapt_connection = adapt_connection
        self._connection = adapt_connection._connection
        self._cursor = _Finished()  # type: ignore[assignment]
        self._soft_closed_memoized = EMPTY_DICT
        self._rows = collections.deque()

    async def _execute_async(self, operation: Any, parameters: Any) -> Any:
        await self._on_thread(_run, operation, parameters)

    async def _executemany_async(self, operation: Any, seq_of_parameters: Any) -> Any:
        await self._on_thread(_run_many, operation, seq_of_parameters)

    async def _on_thread(self, fn: Callable[..., _Ran], operation: Any, parameters: Any) -> None:
        conn = cast(aiosqlite.Connection, self._connection)
        # aiosqlite's own queue to its thread (what its cursor's every method goes through).
        submit = cast(Callable[..., Awaitable[_Ran]], conn._execute)
        async with self._adapt_connection._execute_mutex:
            ran = await submit(fn, conn._conn, operation, parameters)
        description, rowcount, lastrowid, rows = ran
        self._cursor = _Finished(description, rowcount, lastrowid)  # type: ignore[assignment]
        self._rows = collections.deque(rows)

    async def _async_soft_close(self) -> None:
        return None  # nothing left open on the thread

    def close(self) -> None:
        self._rows.clear()


class _Connection(AsyncAdapt_aiosqlite_connection):
    __slots__ = ()
    _cursor_cls = OneHopCursor


class OneHopDbapi(AsyncAdapt_aiosqlite_dbapi):
    """Pass as `module=` to the engine: SQLAlchemy's aiosqlite adapter with `OneHopCursor`."""

    def connect(self, *arg: Any, **kw: Any) -> AsyncAdapt_aiosqlite_connection:
        adapted = super().connect(*arg, **kw)
        return _Connection(self, adapted._connection)


def dbapi() -> OneHopDbapi:
    return OneHopDbapi(aiosqlite, sqlite3)
