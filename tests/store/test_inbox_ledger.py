from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from pydantic import ValidationError

from tidings.models import Channel, DeliveryStatus
from tidings.store import LedgerEntry, Store


def entry(key: str = "n-1:email", **fields: object) -> LedgerEntry:
    values: dict[str, object] = {
        "key": key,
        "notification_id": "n-1",
        "channel": Channel.EMAIL,
        "target": "a***@example.com",
        "provider_message_id": "<m1@tidings>",
        "sent_at": datetime(2030, 1, 1, 8, 0, tzinfo=timezone(timedelta(hours=-5))),
        **fields,
    }
    return LedgerEntry.model_validate(values)


async def test_ledger_inserts_only_if_absent(store: Store) -> None:
    assert await store.ledger_get("n-1:email") is None
    first = entry()
    assert await store.ledger_put(first) is True
    assert await store.ledger_put(entry(provider_message_id="<other>")) is False
    got = await store.ledger_get("n-1:email")
    assert got == first
    assert got is not None and got.sent_at.tzinfo is UTC
    assert got.status is DeliveryStatus.SENT


async def test_ledger_keeps_status_and_missing_message_id(store: Store) -> None:
    delivered = entry(
        "n-1:in_app", channel=Channel.IN_APP, status="delivered", provider_message_id=None
    )
    assert await store.ledger_put(delivered) is True
    assert await store.ledger_get("n-1:in_app") == delivered


def test_ledger_entry_needs_an_aware_time() -> None:
    with pytest.raises(ValidationError, match="sent_at"):
        entry(sent_at=datetime(2030, 1, 1))


async def test_inbox_item_round_trip_and_idempotency(store: Store) -> None:
    item = await store.add_inbox_item(user_id="ada", notification_id="n-1", title="Hi", body="B")
    assert (item.user_id, item.notification_id, item.title, item.body) == ("ada", "n-1", "Hi", "B")
    assert item.created_at.tzinfo is UTC and item.read_at is None
    again = await store.add_inbox_item(
        user_id="ada", notification_id="n-1", title="Changed", body="Changed"
    )
    assert again == item
    assert await store.list_inbox("ada") == [item]


async def test_inbox_item_of_another_user_is_refused(store: Store) -> None:
    await store.add_inbox_item(user_id="ada", notification_id="n-1", title="Hi", body="B")
    with pytest.raises(ValueError, match="notification_id: n-1 already has an inbox item"):
        await store.add_inbox_item(user_id="bob", notification_id="n-1", title="Hi", body="B")
    assert await store.list_inbox("bob") == []


async def test_inbox_lists_newest_first_and_filters_unread(store: Store) -> None:
    items = [
        await store.add_inbox_item(user_id="ada", notification_id=f"n-{i}", title=f"{i}", body="")
        for i in range(3)
    ]
    await store.add_inbox_item(user_id="bob", notification_id="n-bob", title="bob", body="")
    assert [i.title for i in await store.list_inbox("ada")] == ["2", "1", "0"]
    assert [i.title for i in await store.list_inbox("ada", limit=2)] == ["2", "1"]

    assert await store.mark_read("ada", items[1].id) is True
    assert [i.title for i in await store.list_inbox("ada", unread_only=True)] == ["2", "0"]
    read = next(i for i in await store.list_inbox("ada") if i.id == items[1].id)
    assert read.read_at is not None and read.read_at.tzinfo is UTC
    with pytest.raises(ValueError, match="limit"):
        await store.list_inbox("ada", limit=0)


async def test_mark_read_is_scoped_to_the_user(store: Store) -> None:
    mine = await store.add_inbox_item(user_id="ada", notification_id="n-1", title="t", body="b")
    assert await store.mark_read("bob", mine.id) is False
    assert await store.mark_read("ada", mine.id + 1000) is False
    assert (await store.list_inbox("ada"))[0].read_at is None

    assert await store.mark_read("ada", mine.id) is True
    first_read = (await store.list_inbox("ada"))[0].read_at
    # Reading again is fine and keeps the first read time.
    assert await store.mark_read("ada", mine.id) is True
    assert (await store.list_inbox("ada"))[0].read_at == first_read


async def test_mark_all_read_counts_and_is_scoped(store: Store) -> None:
    for i in range(3):
        await store.add_inbox_item(user_id="ada", notification_id=f"n-{i}", title="t", body="b")
    await store.add_inbox_item(user_id="bob", notification_id="n-bob", title="t", body="b")
    first = (await store.list_inbox("ada"))[0]
    await store.mark_read("ada", first.id)
    assert await store.mark_all_read("ada") == 2
    assert await store.mark_all_read("ada") == 0
    assert await store.list_inbox("ada", unread_only=True) == []
    assert len(await store.list_inbox("bob", unread_only=True)) == 1
