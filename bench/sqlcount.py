"""Counts the store's SQL statements and transactions, so a figure per notification can be
printed beside the CPU: a deterministic measure, unlike wall-clock time on a shared machine."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, event
from sqlalchemy.ext.asyncio import AsyncEngine

# The bench's own probes (how many inbox rows yet?) say so, and are not counted.
UNCOUNTED = {"bench_uncounted": True}


@dataclass
class SqlCounts:
    statements: int = 0
    transactions: int = 0  # BEGIN (explicit or implicit) to COMMIT or ROLLBACK

    def minus(self, earlier: SqlCounts) -> SqlCounts:
        return SqlCounts(
            self.statements - earlier.statements, self.transactions - earlier.transactions
        )


class SqlCounter:
    """Listens on an engine for its life: `snapshot()` now, subtract an earlier snapshot."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._counts = SqlCounts()
        sync = engine.sync_engine
        event.listen(sync, "before_cursor_execute", self._statement)
        event.listen(sync, "begin", self._begin)

    def _statement(self, conn: Connection, *_: Any) -> None:
        if not conn.get_execution_options().get("bench_uncounted"):
            self._counts.statements += 1

    def _begin(self, conn: Connection) -> None:
        if not conn.get_execution_options().get("bench_uncounted"):
            self._counts.transactions += 1

    def snapshot(self) -> SqlCounts:
        return SqlCounts(self._counts.statements, self._counts.transactions)
