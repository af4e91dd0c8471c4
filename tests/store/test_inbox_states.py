"""Inbox states (seen, read, archived), counts, filters, keyset pages and the per-user event log
the inbox stream replays; on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import insert, text

from tests.store.conftest import Database
from tidings.inbox import EVENT_RETENTION_DAYS, EventKind, InboxCounts, InboxState, decode_cursor
from tidings.models import InboxItem, NotificationStatus, Priority, TemplateDefinition, User
from tidings.store import Store, inbox_wake
from tidings.store.inbox_events import PRUNE_EVERY
from tidings.store.tables import InboxEventRow


async def add(store: Store, n: int, user_id: str = "ada", **fields: str) -> list[InboxItem]:
    return [
        await store.add_inbox_item(
            user_id=user_id, notification_id=f"{user_id}-{i}", title=f"{i}", body="", **fields
        )
        for i in range(n)
    ]


async def test_states_keep_their_first_time_and_read_implies_seen(store: Store) -> None:
    item, other = await add(store, 2)
    change = await store.mark_inbox("ada", InboxState.READ, [item.id])
    assert change is not None
    assert (change.ids, change.notification_ids) == ([item.id], [item.notification_id])
    assert change.counts == InboxCounts(unseen=1, unread=1)
    [got] = [i for i in await store.list_inbox("ada") if i.id == item.id]
    assert got.read_at is not None and got.seen_at == got.read_at
    # Again: nothing changes, the first time stays.
    again = await store.mark_inbox("ada", InboxState.READ, [item.id])
    assert again is not None and again.ids == []
    assert (await store.list_inbox("ada"))[1].read_at == got.read_at

    await store.mark_inbox("ada", InboxState.SEEN, [other.id])
    assert await store.inbox_counts("ada") == InboxCounts(unseen=0, unread=1)
    await store.mark_inbox("ada", InboxState.ARCHIVED, [other.id])
    # Archived items leave the counts and the default list.
    assert await store.inbox_counts("ada") == InboxCounts(unseen=0, unread=0)
    assert [i.id for i in (await store.inbox_page("ada")).items] == [item.id]
    assert [i.id for i in (await store.inbox_page("ada", archived=True)).items] == [other.id]
    await store.mark_inbox("ada", InboxState.UNARCHIVED, [other.id])
    assert await store.inbox_counts("ada") == InboxCounts(unseen=0, unread=1)


async def test_marks_are_scoped_to_the_user_and_refuse_unknown_items(store: Store) -> None:
    [mine] = await add(store, 1)
    [theirs] = await add(store, 1, user_id="bob")
    assert await store.mark_inbox("ada", InboxState.READ, [theirs.id]) is None
    assert await store.mark_inbox("ada", InboxState.READ, [mine.id, mine.id + 1000]) is None
    assert (await store.list_inbox("ada"))[0].read_at is None  # nothing half-done
    assert (await store.list_inbox("bob"))[0].read_at is None


async def test_mark_all_leaves_archived_items_and_other_users_alone(store: Store) -> None:
    items = await add(store, 3)
    await add(store, 1, user_id="bob")
    await store.mark_inbox("ada", InboxState.ARCHIVED, [items[0].id])
    change = await store.mark_inbox("ada", InboxState.SEEN)
    assert change is not None and change.ids == [items[1].id, items[2].id]
    assert await store.mark_all_read("ada") == 2
    assert await store.inbox_counts("bob") == InboxCounts(unseen=1, unread=1)
    archived = await store.mark_inbox("ada", InboxState.ARCHIVED)
    assert archived is not None and archived.ids == [items[1].id, items[2].id]
    assert (await store.inbox_page("ada")).items == []


async def test_filters_and_keyset_pages_newest_first(store: Store) -> None:
    items = await add(store, 5)
    await store.add_inbox_item(
        user_id="ada", notification_id="promo", title="p", body="", category="marketing"
    )
    await store.mark_read("ada", items[3].id)
    first = await store.inbox_page("ada", limit=2)
    assert [i.title for i in first.items] == ["p", "4"]
    assert first.next_cursor is not None and first.counts.unread == 5
    second = await store.inbox_page("ada", before=decode_cursor(first.next_cursor), limit=2)
    assert [i.title for i in second.items] == ["3", "2"]
    # An item arriving between pages does not shift the next one.
    await add(store, 1, user_id="ada-late")
    assert second.next_cursor is not None
    third = await store.inbox_page("ada", before=decode_cursor(second.next_cursor), limit=2)
    assert [i.title for i in third.items] == ["1", "0"]
    assert third.next_cursor is None

    unread = await store.inbox_page("ada", unread=True)
    assert "3" not in [i.title for i in unread.items] and len(unread.items) == 5
    assert [i.title for i in (await store.inbox_page("ada", unread=False)).items] == ["3"]
    promo = await store.inbox_page("ada", category="marketing")
    assert [(i.title, i.category) for i in promo.items] == [("p", "marketing")]


async def test_bad_cursors_name_the_field() -> None:
    for bad in ("", "nope", "aTEyYQ", "x" * 40):
        with pytest.raises(ValueError, match=r"^cursor: "):
            decode_cursor(bad)


async def test_category_comes_from_the_notifications_template(store: Store) -> None:
    await store.upsert_user(User(id="ada"))
    template = await store.add_template_version(
        TemplateDefinition.model_validate(
            {
                "id": "promo",
                "category": "marketing",
                "channels": ["in_app"],
                "content": {"subject": "s", "text": "t"},
            }
        )
    )
    await store.upsert_notification(
        notification_id="n-1",
        user_id="ada",
        template_id="promo",
        template_version=template.version,
        priority=Priority.MEDIUM,
        status=NotificationStatus.SENDING,
    )
    item = await store.add_inbox_item(user_id="ada", notification_id="n-1", title="t", body="b")
    assert item.category == "marketing"
    assert (await store.inbox_page("ada", category="marketing")).items == [item]


async def test_every_change_is_logged_once_in_order_per_user(store: Store) -> None:
    [item] = await add(store, 1)
    # A retried delivery adds no item and logs nothing.
    await store.add_inbox_item(user_id="ada", notification_id="ada-0", title="0", body="")
    await add(store, 1, user_id="bob")
    await store.mark_read("ada", item.id)
    await store.mark_read("ada", item.id)  # no change, no event
    events = await store.inbox_events("ada")
    assert [e.kind for e in events] == [EventKind.ITEM, EventKind.STATE]
    assert events[0].payload["item"]["id"] == item.id
    assert events[0].payload["counts"] == {"unseen": 1, "unread": 1}
    assert events[1].payload["ids"] == [item.id] and events[1].payload["state"] == "read"
    assert events[1].payload["counts"] == {"unseen": 0, "unread": 0}
    assert events[0].id < events[1].id
    # Resuming after the first event gives exactly the rest.
    assert await store.inbox_events("ada", after=events[0].id) == events[1:]
    assert await store.inbox_events("ada", after=events[1].id) == []
    assert await store.last_inbox_event_id("ada") == events[1].id
    assert [e.payload["item"]["user_id"] for e in await store.inbox_events("bob")] == ["bob"]


async def test_concurrent_writers_log_one_users_events_in_commit_order(store: Store) -> None:
    items = await add(store, 10)
    await asyncio.gather(*(store.mark_read("ada", i.id) for i in items))
    events = await store.inbox_events("ada")
    assert [e.id for e in events] == sorted(e.id for e in events)
    unread = [e.payload["counts"]["unread"] for e in events if e.kind is EventKind.STATE]
    assert unread == list(range(9, -1, -1))  # each saw the one before it


async def test_an_items_event_carries_the_item_and_counts_taken_after_it(store: Store) -> None:
    """The counts are the inbox's with the new item in it, archived items left out, even when
    one user's items arrive at once."""
    [first, archived] = await add(store, 2, category="billing")
    await store.mark_inbox("ada", InboxState.ARCHIVED, [archived.id])
    await store.mark_read("ada", first.id)
    items = await asyncio.gather(
        *(
            store.add_inbox_item(user_id="ada", notification_id=f"at-once-{i}", title="t", body="")
            for i in range(8)
        )
    )
    events = [e for e in await store.inbox_events("ada") if e.kind is EventKind.ITEM]
    assert [e.id for e in events] == sorted(e.id for e in events)
    assert events[0].payload["item"] == first.model_dump(mode="json")
    by_id = {i.id: i.model_dump(mode="json") for i in items}
    assert [e.payload["item"] for e in events[2:]] == [
        by_id[e.payload["item"]["id"]] for e in events[2:]
    ]
    # Before the marks: 1 then 2 unread; after them, one read and one archived item left out.
    assert [e.payload["counts"]["unread"] for e in events] == [1, 2, *range(1, 9)]
    assert [e.payload["counts"] for e in events][-1] == {"unseen": 8, "unread": 8}
    assert await store.inbox_counts("ada") == InboxCounts(unseen=8, unread=8)


async def test_appends_prune_their_users_expired_events(store: Store) -> None:
    """One append in PRUNE_EVERY drops its own user's events past the retention, no one else's."""
    old = datetime.now(UTC) - timedelta(days=EVENT_RETENTION_DAYS + 1)
    async with store.engine.begin() as conn:
        for user_id in ("ada", "bob"):
            row: dict[str, Any] = {
                "user_id": user_id,
                "kind": "item",
                "payload": {},
                "created_at": old,
            }
            await conn.execute(insert(InboxEventRow).values(**row))
    await add(store, PRUNE_EVERY)  # the event ids pass a multiple of PRUNE_EVERY
    assert all(e.created_at > old for e in await store.inbox_events("ada"))
    assert len(await store.inbox_events("ada")) == PRUNE_EVERY
    assert [e.created_at for e in await store.inbox_events("bob")] == [old]


async def test_pruning_drops_old_events_only(store: Store) -> None:
    await add(store, 2)
    assert await store.prune_inbox_events(datetime.now(UTC) - timedelta(days=1)) == 0
    assert await store.prune_inbox_events(datetime.now(UTC) + timedelta(seconds=1)) == 2
    assert await store.inbox_events("ada") == []


async def test_a_change_wakes_this_processes_waiters(store: Store) -> None:
    waker = await store.inbox_waker()
    with waker.waiter("ada") as ada, waker.waiter("bob") as bob:
        await add(store, 1)
        await asyncio.wait_for(ada.wait(), 5)
        assert not bob.is_set()


async def test_another_process_writing_wakes_waiters(
    store: Store, database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A write this process does not see (no poke): NOTIFY on PostgreSQL, the poll on SQLite."""
    waker = await store.inbox_waker()
    other = await database.open()
    monkeypatch.setattr(inbox_wake, "poke", lambda user_id: None)
    try:
        with waker.waiter("ada") as ada, waker.waiter("bob") as bob:
            await other.add_inbox_item(user_id="ada", notification_id="x", title="t", body="")
            await asyncio.wait_for(ada.wait(), 5)
            assert not bob.is_set()
    finally:
        await other.close()


async def test_a_lost_listen_connection_is_replaced_and_streams_reread(
    store: Store, database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    if database.backend != "postgresql":
        pytest.skip("LISTEN is PostgreSQL's; SQLite polls")
    waker = await store.inbox_waker()
    other = await database.open()
    monkeypatch.setattr(inbox_wake, "poke", lambda user_id: None)
    try:
        with waker.waiter("ada") as ada:
            async with other.engine.connect() as conn:
                # The LISTEN session is the one waiting for notifications on our channel.
                await conn.execute(
                    text(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                        " WHERE query = 'LISTEN \"tidings_inbox_' || current_schema() || '\"'"
                        " AND datname = current_database()"
                    )
                )
                await conn.commit()
            await asyncio.wait_for(ada.wait(), 15)  # listening again: every stream re-reads
            ada.clear()
            await other.add_inbox_item(user_id="ada", notification_id="x", title="t", body="")
            await asyncio.wait_for(ada.wait(), 5)
    finally:
        await other.close()
