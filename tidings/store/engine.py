"""Building the async engine and bringing the schema up to date.

SQLite: the parent directory is created, WAL and foreign keys are switched on for every
connection, and transactions are begun explicitly. pysqlite's own implicit BEGIN comes only before
INSERT/UPDATE/DELETE, which would leave reads and DDL (migrations) outside any transaction; writes
begin with BEGIN IMMEDIATE so that two writers queue on the busy timeout instead of one failing
when it upgrades a read snapshot to a write.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, event, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from tidings.store import sqlite_driver

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).parent / "migrations"

# Connection execution option that marks a transaction as a writer (BEGIN IMMEDIATE on SQLite).
WRITE_OPTION = "tidings_write"
# Connection execution option for a read of exactly one statement: SQLite gets no BEGIN, since a
# lone SELECT in autocommit mode already reads one snapshot (see `StoreBase._read_one`).
ONE_STATEMENT_OPTION = "tidings_one_statement"

# Serialises concurrent migrators on PostgreSQL; the value is arbitrary but fixed ("tidings").
_PG_MIGRATION_LOCK = 0x74696469_6E6773

_DRIVERS = {
    "sqlite": "sqlite+aiosqlite",
    "sqlite+aiosqlite": "sqlite+aiosqlite",
    "postgres": "postgresql+asyncpg",
    "postgresql": "postgresql+asyncpg",
    "postgresql+asyncpg": "postgresql+asyncpg",
}

SQLITE_BUSY_TIMEOUT_SECONDS = 30.0

# Alembic keeps the running migration's context in module globals, so two migrations interleaving
# on one event loop (stores on different databases opened together) would trample each other.
_migration_locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = (
    weakref.WeakKeyDictionary()
)


def _migration_lock() -> asyncio.Lock:
    loop = asyncio.get_running_loop()
    lock = _migration_locks.get(loop)
    if lock is None:
        lock = _migration_locks[loop] = asyncio.Lock()
    return lock


def database_url(url: str) -> URL:
    """Parse a database URL, choosing the async driver when only the backend is named."""
    try:
        parsed = make_url(url)
    except Exception as e:
        raise ValueError(f"database_url: cannot parse {url!r}: {e}") from e
    driver = _DRIVERS.get(parsed.drivername)
    if driver is None:
        raise ValueError(
            f"database_url: unsupported driver {parsed.drivername!r};"
            " use sqlite+aiosqlite:///<path> or postgresql+asyncpg://<user>@<host>/<db>"
        )
    return parsed.set(drivername=driver)


def _is_sqlite_file(url: URL) -> bool:
    database = url.database or ""
    return database not in ("", ":memory:") and not database.startswith("file:")


def create_engine(url: str, *, connect_args: dict[str, Any] | None = None) -> AsyncEngine:
    parsed = database_url(url)
    args = dict(connect_args or {})
    if parsed.get_backend_name() != "sqlite":
        return create_async_engine(parsed, connect_args=args, pool_pre_ping=True)
    if _is_sqlite_file(parsed):
        Path(parsed.database or "").expanduser().parent.mkdir(parents=True, exist_ok=True)
    args.setdefault("timeout", SQLITE_BUSY_TIMEOUT_SECONDS)
    # One hop to aiosqlite's thread per statement (see `sqlite_driver`).
    engine = create_async_engine(parsed, connect_args=args, module=sqlite_driver.dbapi())
    _install_sqlite_hooks(engine)
    return engine


def _install_sqlite_hooks(engine: AsyncEngine) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # None hands BEGIN over to the "begin" hook below; COMMIT/ROLLBACK still work.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA journal_mode=WAL")
            # Safe under WAL: a power cut may lose the last commits but never corrupts.
            cursor.execute("PRAGMA synchronous=NORMAL")
        finally:
            cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Connection) -> None:
        options = conn.get_execution_options()
        if options.get(ONE_STATEMENT_OPTION, False):
            return
        writer = bool(options.get(WRITE_OPTION, False))
        conn.exec_driver_sql("BEGIN IMMEDIATE" if writer else "BEGIN")


async def migrate(engine: AsyncEngine) -> None:
    """Apply every pending migration in one transaction (DDL is transactional on both
    backends). Locks keep stores that open together, in this process or in others, from
    racing to create the same tables."""
    async with _migration_lock(), engine.connect() as conn:
        await conn.execution_options(**{WRITE_OPTION: True})
        async with conn.begin():
            if conn.dialect.name == "postgresql":
                await conn.execute(
                    text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_MIGRATION_LOCK}
                )
            await conn.run_sync(_upgrade)


def alembic_config(connection: Connection | None = None) -> Config:
    """An Alembic configuration without an ini file; `connection`, when given, is the one the
    migrations run on (see migrations/env.py)."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("path_separator", "os")
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def _upgrade(connection: Connection) -> None:
    command.upgrade(alembic_config(connection), "head")
    log.debug("database schema is at head")
