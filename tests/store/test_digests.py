"""Digest definitions and events, on SQLite and PostgreSQL: a repeated event id is stored once,
sealing takes exactly the waiting rows, and a batch reads back its first and last events."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from tidings.digests import DigestDefinition
from tidings.store import Store

T0 = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)


async def _add(store: Store, event_id: str, minutes: int = 0, user: str = "ada") -> bool:
    stored = await store.add_digest_event(
        user_id=user,
        key="comments",
        event_id=event_id,
        data={"n": event_id},
        occurred_at=T0 + timedelta(minutes=minutes),
    )
    return stored.duplicate


async def test_definition_round_trips_and_is_replaced(store: Store) -> None:
    first = DigestDefinition(key="comments", template_id="t1", window_seconds=60)
    await store.upsert_digest(first)
    await store.upsert_digest(first.model_copy(update={"max_events": 7}))
    got = await store.get_digest("comments")
    assert got is not None and got.max_events == 7 and got.window_seconds == 60
    assert [d.key for d in await store.list_digests()] == ["comments"]
    assert await store.get_digest("other") is None


async def test_repeated_event_is_stored_once(store: Store) -> None:
    assert await _add(store, "e1") is False
    assert await _add(store, "e1") is True
    assert await _add(store, "e1", user="bob") is False  # another user's digest
    pending = await store.pending_digest("ada", "comments")
    assert (pending.pending, pending.next_batch, pending.sent_events) == (1, 1, 0)


async def test_seal_takes_waiting_rows_and_later_ones_wait(store: Store) -> None:
    for i in range(5):
        await _add(store, f"e{i}", minutes=i)
    assert await store.seal_digest_batch("ada", "comments", 1) == 5
    await _add(store, "late", minutes=10)  # arrives while batch 1 is being sent
    summary = await store.digest_batch("ada", "comments", 1, first_n=2, last_n=2)
    assert summary.total == 5
    assert [e.event_id for e in summary.first] == ["e0", "e1"]
    assert [e.event_id for e in summary.last] == ["e3", "e4"]
    assert summary.first_at == T0 and summary.last_at == T0 + timedelta(minutes=4)
    pending = await store.pending_digest("ada", "comments")
    assert (pending.pending, pending.next_batch, pending.sent_events) == (1, 2, 5)
    # A retried seal of batch 2 is the same batch; batch 1 never changes again.
    assert await store.seal_digest_batch("ada", "comments", 2) == 1
    assert await store.seal_digest_batch("ada", "comments", 2) == 1
    again = await store.digest_batch("ada", "comments", 1, first_n=10, last_n=0)
    assert again.total == 5 and "late" not in [e.event_id for e in again.first]


async def test_empty_batch(store: Store) -> None:
    assert await store.seal_digest_batch("ada", "comments", 1) == 0
    summary = await store.digest_batch("ada", "comments", 1, first_n=3, last_n=3)
    assert summary.total == 0 and summary.first == [] and summary.first_at is None
