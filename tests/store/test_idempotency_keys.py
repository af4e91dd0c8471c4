"""Idempotency keys: the first claim wins, atomically; a repeat reads the winning fingerprint."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from sqlalchemy import delete, event
from sqlalchemy.ext.asyncio import AsyncConnection

from tidings.idempotency import fingerprint
from tidings.models import NotificationRequest
from tidings.store import Store
from tidings.store.tables import IdempotencyKeyRow


async def test_the_first_claim_wins_and_a_repeat_reads_its_fingerprint(store: Store) -> None:
    assert await store.claim_idempotency_key("k1", "a" * 64) is None
    assert await store.claim_idempotency_key("k1", "a" * 64) == "a" * 64
    assert await store.claim_idempotency_key("k1", "b" * 64) == "a" * 64  # nothing overwritten
    assert await store.idempotency_fingerprints(["k1", "k2"]) == {"k1": "a" * 64}
    assert await store.idempotency_fingerprints([]) == {}


async def test_concurrent_claims_have_one_winner(store: Store) -> None:
    results = await asyncio.gather(
        *(store.claim_idempotency_key("race", f"{i:064d}") for i in range(8))
    )
    winners = [r for r in results if r is None]
    assert len(winners) == 1
    assert len({r for r in results if r is not None}) == 1


def test_the_fingerprint_ignores_spelling_but_not_meaning() -> None:
    base = {"user_id": "u1", "template_id": "t", "data": {"a": 1, "b": [1, 2]}}
    same = [
        {**base, "data": {"b": [1, 2], "a": 1}},  # key order
        {**base, "channels": None, "priority": None},  # defaults spelled out
    ]
    different = [
        {**base, "data": {"a": 2, "b": [1, 2]}},
        {**base, "channels": ["email"]},
        {**base, "priority": "high"},
        {**base, "scheduled_at": "2026-12-01T09:00:00Z"},
    ]
    fp = fingerprint(NotificationRequest.model_validate(base))
    assert all(fingerprint(NotificationRequest.model_validate(v)) == fp for v in same)
    assert all(fingerprint(NotificationRequest.model_validate(v)) != fp for v in different)
    at = [
        NotificationRequest.model_validate({**base, "scheduled_at": t})
        for t in ("2026-12-01T10:00:00+01:00", "2026-12-01T09:00:00Z")
    ]
    assert fingerprint(at[0]) == fingerprint(at[1])  # the same instant


async def test_a_bulk_claim_takes_the_free_keys_and_reports_the_taken(store: Store) -> None:
    assert await store.claim_idempotency_key("taken", "a" * 64) is None
    claims = {f"bulk-{i}": f"{i:064d}" for i in range(2500)} | {"taken": "b" * 64}
    assert await store.claim_idempotency_keys(claims) == {"taken": "a" * 64}
    assert await store.claim_idempotency_key("bulk-2499", "c" * 64) == f"{2499:064d}"
    again = await store.claim_idempotency_keys(claims)
    assert len(again) == 2501 and again["bulk-7"] == f"{7:064d}"


async def test_a_claim_is_one_statement_without_begin_on_sqlite(store: Store) -> None:
    sent: list[str] = []

    def log(_c: Any, _cur: Any, statement: str, *_: Any) -> None:
        sent.append(statement.split()[0].upper())

    event.listen(store.engine.sync_engine, "before_cursor_execute", log)
    try:
        assert await store.claim_idempotency_key("k1", "a" * 64) is None
        claimed = list(sent)
        sent.clear()
        assert await store.claim_idempotency_key("k1", "b" * 64) == "a" * 64
    finally:
        event.remove(store.engine.sync_engine, "before_cursor_execute", log)
    assert claimed == ["INSERT"]  # no BEGIN on SQLite; asyncpg begins on the driver
    assert sent == ["INSERT", "SELECT"]  # a repeat reads the fingerprint after it


async def test_a_claim_released_before_its_fingerprint_is_read_claims_again(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The insert finds the key taken, and a bulk releases it before the read: the caller does
    not get "no fingerprint" but claims it again."""
    assert await store.claim_idempotency_key("k1", "a" * 64) is None
    read_one = store._read_one
    released: list[bool] = []

    @asynccontextmanager
    async def released_first() -> AsyncIterator[AsyncConnection]:
        if not released:
            released.append(True)
            async with store.engine.begin() as conn:
                await conn.execute(delete(IdempotencyKeyRow).where(IdempotencyKeyRow.key == "k1"))
        async with read_one() as conn:
            yield conn

    monkeypatch.setattr(store, "_read_one", released_first)
    assert await store.claim_idempotency_key("k1", "b" * 64) is None
    assert released == [True]
    assert await store.idempotency_fingerprints(["k1"]) == {"k1": "b" * 64}
