"""Alembic environment for the Tidings store.

`Store.open` runs the migrations on its own connection, passed in `config.attributes`, inside a
transaction it already holds. Without one (an operator running Alembic by hand with
`sqlalchemy.url` set) an engine is built from that URL the same way the store builds its own.
"""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy import Connection

from tidings.store.engine import create_engine
from tidings.store.tables import Base

# Its own version table, so Tidings can share a database with an application that uses Alembic.
VERSION_TABLE = "tidings_alembic_version"

config = context.config
target_metadata = Base.metadata


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        version_table=VERSION_TABLE,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_with_own_engine(url: str) -> None:
    engine = create_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(_run)
    finally:
        await engine.dispose()


def _main() -> None:
    url = config.get_main_option("sqlalchemy.url")
    if context.is_offline_mode():
        context.configure(
            url=url,
            target_metadata=target_metadata,
            version_table=VERSION_TABLE,
            literal_binds=True,
        )
        with context.begin_transaction():
            context.run_migrations()
        return
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
    elif url:
        asyncio.run(_run_with_own_engine(url))
    else:
        raise RuntimeError("set sqlalchemy.url, or run the migrations through Store.open")


_main()
