"""The inbox event log is swept of rows past the retention by the API process (its lifespan
runs `starter.http.inbox_pruner`), on both backends; newer rows stay."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from sqlalchemy import update

from starter.http import inbox_pruner
from starter.http.app import create_app
from tests.store.test_inbox_states import add
from tidings.inbox import EVENT_RETENTION_DAYS
from tidings.store import Store
from tidings.store.tables import InboxEventRow


async def age_all_but_newest(store: Store, user_id: str) -> None:
    """Make every event of the user but the newest one older than the retention."""
    newest = max(e.id for e in await store.inbox_events(user_id))
    old = datetime.now(UTC) - timedelta(days=EVENT_RETENTION_DAYS, hours=1)
    async with store.engine.begin() as conn:
        await conn.execute(
            update(InboxEventRow)
            .where(InboxEventRow.user_id == user_id, InboxEventRow.id < newest)
            .values(created_at=old)
        )


async def until_pruned(store: Store, user_id: str) -> None:
    async def one_left() -> None:
        while len(await store.inbox_events(user_id)) != 1:
            await asyncio.sleep(0.02)

    await asyncio.wait_for(one_left(), 10)


async def test_prune_once_drops_only_rows_past_the_retention(store: Store) -> None:
    await add(store, 3)
    await age_all_but_newest(store, "ada")
    assert await inbox_pruner.prune_once(store) == 2
    assert len(await store.inbox_events("ada")) == 1
    assert await inbox_pruner.prune_once(store) == 0


async def test_the_api_lifespan_sweeps_and_stops_with_the_app(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    await add(store, 3)
    await age_all_but_newest(store, "ada")
    monkeypatch.setattr(inbox_pruner, "PRUNE_FIRST_AFTER_SECONDS", 0.0)
    monkeypatch.setattr(inbox_pruner, "PRUNE_EVERY_SECONDS", 0.05)
    tidings: Any = SimpleNamespace(store=store)
    app = create_app(tidings=tidings)
    async with app.router.lifespan_context(app):
        await until_pruned(store, "ada")
        # It keeps sweeping: rows that age later go too.
        await add(store, 2, user_id="bob")
        await age_all_but_newest(store, "bob")
        await until_pruned(store, "bob")
    sweeps = [t for t in asyncio.all_tasks() if "run_pruner" in repr(t.get_coro())]
    assert sweeps == []  # cancelled with the app


async def test_a_failing_sweep_is_retried(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    await add(store, 2)
    await age_all_but_newest(store, "ada")
    calls = 0
    real = store.prune_inbox_events

    async def flaky(older_than: datetime) -> int:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise OSError("database went away")
        return await real(older_than)

    monkeypatch.setattr(store, "prune_inbox_events", flaky)
    sweep = asyncio.create_task(
        inbox_pruner.run_pruner(lambda: store, every_seconds=0.02, first_after_seconds=0)
    )
    try:
        await until_pruned(store, "ada")
    finally:
        sweep.cancel()
    assert calls >= 2
