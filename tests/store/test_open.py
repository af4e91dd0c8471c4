"""Opening the store: migrations, SQLite settings, URLs, and the schema matching the models."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, create_engine, inspect, text

from tests.store.conftest import Database
from tidings.models import User
from tidings.store import Store
from tidings.store.engine import alembic_config, database_url
from tidings.store.tables import Base

HEAD = ScriptDirectory.from_config(alembic_config()).get_current_head()


async def test_opening_twice_applies_migrations_once(database: Database) -> None:
    first = await database.open()
    await first.upsert_user(User(id="ada"))
    await first.close()
    second = await database.open()
    try:
        assert await second.get_user("ada") == User(id="ada")
        async with second.engine.connect() as conn:
            versions = (
                await conn.execute(text("SELECT version_num FROM tidings_alembic_version"))
            ).all()
        assert [v[0] for v in versions] == [HEAD]
    finally:
        await second.close()


async def test_two_stores_on_one_database_see_each_other(database: Database) -> None:
    a, b = await database.open(), await database.open()
    try:
        await a.upsert_user(User(id="ada"))
        assert await b.get_user("ada") == User(id="ada")
    finally:
        await a.close()
        await b.close()


async def test_stores_opening_a_new_database_together_migrate_once(database: Database) -> None:
    stores = await asyncio.gather(*(database.open() for _ in range(3)))
    try:
        await stores[0].upsert_user(User(id="ada"))
        assert [await s.get_user("ada") for s in stores] == [User(id="ada")] * 3
    finally:
        for s in stores:
            await s.close()


_OPEN_SCRIPT = """
import asyncio, json, sys
from tidings.store import Store

async def main():
    url, connect_args = sys.argv[1], json.loads(sys.argv[2])
    store = await Store.open(url, connect_args=connect_args)
    await store.close()

asyncio.run(main())
"""


async def test_processes_opening_a_new_database_together_migrate_once(
    database: Database,
) -> None:
    args = [sys.executable, "-c", _OPEN_SCRIPT, database.url, json.dumps(database.connect_args)]
    procs = [
        await asyncio.create_subprocess_exec(*args, stderr=asyncio.subprocess.PIPE)
        for _ in range(4)
    ]
    results = [(await p.communicate())[1].decode() for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, results
    store = await database.open()
    try:
        async with store.engine.connect() as conn:
            version = await conn.scalar(text("SELECT version_num FROM tidings_alembic_version"))
        assert version == HEAD
    finally:
        await store.close()


async def test_stores_on_different_databases_can_open_together(tmp_path: Path) -> None:
    # Alembic keeps its migration context in module globals; two runs interleaving on one
    # event loop would trample each other.
    urls = [f"sqlite+aiosqlite:///{tmp_path / f'db{i}.db'}" for i in range(4)]
    stores = await asyncio.gather(*(Store.open(url) for url in urls))
    try:
        for i, s in enumerate(stores):
            await s.upsert_user(User(id=f"user{i}"))
            assert [u.id for u in await s.list_users()] == [f"user{i}"]
    finally:
        for s in stores:
            await s.close()


def test_alembic_can_be_run_by_hand_up_and_down(tmp_path: Path) -> None:
    path = tmp_path / "manual.db"
    cfg = alembic_config()
    cfg.set_main_option("sqlalchemy.url", f"sqlite+aiosqlite:///{path}")
    command.upgrade(cfg, "head")
    sync = create_engine(f"sqlite:///{path}")
    try:
        assert {"users", "notifications", "inbox_items"} <= set(inspect(sync).get_table_names())
        command.downgrade(cfg, "base")
        assert set(inspect(sync).get_table_names()) == {"tidings_alembic_version"}
    finally:
        sync.dispose()


def _diff(connection: Connection) -> list[Any]:
    context = MigrationContext.configure(
        connection, opts={"version_table": "tidings_alembic_version"}
    )
    return list(compare_metadata(context, Base.metadata))


async def test_migrations_match_the_models(store: Store) -> None:
    async with store.engine.connect() as conn:
        assert await conn.run_sync(_diff) == []


async def test_sqlite_file_gets_its_directory_wal_and_foreign_keys(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "er" / "tidings.db"
    store = await Store.open(f"sqlite:///{path}")
    try:
        assert path.exists()
        assert store.engine.url.drivername == "sqlite+aiosqlite"
        async with store.engine.connect() as conn:
            assert (await conn.execute(text("PRAGMA journal_mode"))).scalar() == "wal"
            assert (await conn.execute(text("PRAGMA foreign_keys"))).scalar() == 1
    finally:
        await store.close()


@pytest.mark.parametrize(
    ("given", "driver"),
    [
        ("sqlite:///x.db", "sqlite+aiosqlite"),
        ("sqlite+aiosqlite:///x.db", "sqlite+aiosqlite"),
        ("postgresql://u@h/db", "postgresql+asyncpg"),
        ("postgres://u@h/db", "postgresql+asyncpg"),
    ],
)
def test_database_url_picks_the_async_driver(given: str, driver: str) -> None:
    assert database_url(given).drivername == driver


@pytest.mark.parametrize("bad", ["mysql://u@h/db", "postgresql+psycopg2://u@h/db", "not a url"])
def test_unsupported_database_urls_are_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="database_url"):
        database_url(bad)


async def test_a_database_from_revision_0001_upgrades_keeping_its_rows(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    cfg = alembic_config()
    cfg.set_main_option("sqlalchemy.url", f"sqlite+aiosqlite:///{path}")
    await asyncio.to_thread(command.upgrade, cfg, "0001")
    sync = create_engine(f"sqlite:///{path}")
    with sync.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO templates (id, version, name, category, channels, default_priority,"
                " content, locales, sample_data, created_at) VALUES ('t', 1, '', 'general',"
                ' \'["email"]\', \'medium\', \'{"subject": "s", "text": "x"}\', \'{}\','
                " '{}', '2026-01-01 00:00:00')"
            )
        )
    sync.dispose()
    store = await Store.open(f"sqlite+aiosqlite:///{path}")
    try:
        template = await store.get_template("t")
        assert template is not None and template.version == 1 and template.fallback == []
    finally:
        await store.close()


async def test_upgrading_to_0004_keeps_one_row_per_repeated_engagement(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    cfg = alembic_config()
    cfg.set_main_option("sqlalchemy.url", f"sqlite+aiosqlite:///{path}")
    await asyncio.to_thread(command.upgrade, cfg, "0003")
    sync = create_engine(f"sqlite:///{path}")
    with sync.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO notifications (id, user_id, template_id, template_version, priority,"
                " status, created_at, updated_at) VALUES ('n', 'u', 't', 1, 'medium', 'sent',"
                " '2026-01-01 00:00:00', '2026-01-01 00:00:00')"
            )
        )
        for i, (kind, channel) in enumerate(
            [("opened", "email"), ("opened", "email"), ("opened", None), ("clicked", "email")]
        ):
            conn.execute(
                text(
                    "INSERT INTO engagement_events (notification_id, type, channel, at, metadata)"
                    " VALUES ('n', :type, :channel, :at, '{}')"
                ),
                {"type": kind, "channel": channel, "at": f"2026-01-01 00:00:0{i}"},
            )
    sync.dispose()
    store = await Store.open(f"sqlite+aiosqlite:///{path}")
    try:
        got = await store.get_notification("n")
        assert got is not None
        assert [(e.type.value, e.channel) for e in got.engagement] == [
            ("opened", "email"),
            ("opened", None),
            ("clicked", "email"),
        ]
    finally:
        await store.close()
