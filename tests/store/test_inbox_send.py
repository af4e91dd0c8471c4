"""An in-app send writes its inbox item, the send ledger's entry and the delivery row in ONE
transaction (`Store.deliver_inbox_item`, through `tidings.delivery.send` and the in-app sender):
a ledger write that fails leaves no item, and the send made again delivers once."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import event, text

from tidings.channels.base import TransientChannelError
from tidings.channels.in_app import InAppSender
from tidings.delivery import SendRequest, Sent, send
from tidings.models import (
    Channel,
    ChannelResult,
    DeliveryStatus,
    NotificationStatus,
    Priority,
    TemplateContent,
    TemplateDefinition,
    User,
)
from tidings.store import Store

NOW = datetime(2026, 3, 4, 12, 0, tzinfo=UTC)


@pytest.fixture
async def sending(store: Store, user: User) -> Store:
    """A template on in-app and a notification the plan recorded `sending` on it alone."""
    await store.add_template_version(
        TemplateDefinition(
            id="hello",
            channels=[Channel.IN_APP],
            content=TemplateContent(subject="Hi {{ name }}", text="Hello {{ name }}"),
        )
    )
    await store.upsert_notification(
        notification_id="n-1",
        user_id=user.id,
        template_id="hello",
        template_version=1,
        priority=Priority.MEDIUM,
        status=NotificationStatus.SENDING,
        channels=[ChannelResult(channel=Channel.IN_APP, status=DeliveryStatus.SENDING)],
    )
    return store


def request(attempt: int = 1) -> SendRequest:
    return SendRequest(
        notification_id="n-1",
        channel=Channel.IN_APP,
        user_id="ada",
        template_id="hello",
        template_version=1,
        data={"name": "Ada"},
        record_attempt=attempt,
        finish=True,
        render_at=NOW,
    )


async def _send(store: Store, attempt: int = 1) -> Sent:
    return await send(store, {Channel.IN_APP: InAppSender(store)}, request(attempt))


@contextmanager
def statements(store: Store) -> Iterator[list[str]]:
    sent: list[str] = []

    def log(_c: Any, _cur: Any, statement: str, *_: Any) -> None:
        sent.append(" ".join(statement.split()[:2]).upper())

    event.listen(store.engine.sync_engine, "before_cursor_execute", log)
    try:
        yield sent
    finally:
        event.remove(store.engine.sync_engine, "before_cursor_execute", log)


async def ledger_fails(store: Store, failing: bool) -> None:
    """A trigger that refuses every insert into the send ledger: a real database error in the
    middle of the in-app transaction, after the item and its event were inserted."""
    async with store.engine.begin() as conn:
        if store.engine.dialect.name == "sqlite":
            if failing:
                await conn.execute(
                    text(
                        "CREATE TRIGGER ledger_down BEFORE INSERT ON send_ledger"
                        " BEGIN SELECT RAISE(ABORT, 'ledger down'); END"
                    )
                )
            else:
                await conn.execute(text("DROP TRIGGER ledger_down"))
            return
        if failing:
            await conn.execute(
                text(
                    "CREATE FUNCTION ledger_down() RETURNS trigger AS"
                    " $$ BEGIN RAISE EXCEPTION 'ledger down'; END $$ LANGUAGE plpgsql"
                )
            )
            await conn.execute(
                text(
                    "CREATE TRIGGER ledger_down BEFORE INSERT ON send_ledger"
                    " FOR EACH ROW EXECUTE FUNCTION ledger_down()"
                )
            )
        else:
            await conn.execute(text("DROP TRIGGER ledger_down ON send_ledger"))


async def test_the_item_its_ledger_entry_and_its_row_are_one_transaction(
    sending: Store,
) -> None:
    store = sending
    with statements(store) as sent:
        result = await _send(store)
    [item] = await store.list_inbox("ada")
    assert (item.title, item.body) == ("Hi Ada", "Hello Ada")
    assert result.acceptance.provider_message_id == str(item.id)
    assert (result.duplicate, result.final_status) == (False, NotificationStatus.SENT)
    entry = await store.ledger_get("n-1:in_app")
    assert entry is not None and entry.provider_message_id == str(item.id)
    assert (entry.status, entry.target) == (DeliveryStatus.DELIVERED, "inbox:ada")
    stored = await store.get_notification("n-1")
    assert stored is not None and stored.status is NotificationStatus.SENT
    [row] = stored.channels
    assert (row.status, row.provider_message_id, row.attempts) == (
        DeliveryStatus.DELIVERED,
        str(item.id),
        1,
    )
    assert len(await store.inbox_events("ada")) == 1
    writes = [s for s in sent if not s.startswith("SELECT")]
    if store.engine.dialect.name == "sqlite":  # one BEGIN IMMEDIATE for all of it
        assert writes[0] == "BEGIN IMMEDIATE" and writes.count("BEGIN IMMEDIATE") == 1
        assert [s for s in writes if s.startswith("BEGIN")] == ["BEGIN IMMEDIATE"]
    inserts = [s for s in writes if s.startswith("INSERT")]
    assert inserts == ["INSERT INTO"] * 4  # the item, its event, the ledger, the row


async def test_a_failed_ledger_write_leaves_no_item_and_the_send_again_delivers_once(
    sending: Store,
) -> None:
    store = sending
    await ledger_fails(store, True)
    with pytest.raises(TransientChannelError, match="inbox write failed"):
        await _send(store)
    assert await store.list_inbox("ada") == []
    assert await store.inbox_events("ada") == []
    assert await store.ledger_get("n-1:in_app") is None
    stored = await store.get_notification("n-1")
    assert stored is not None and stored.status is NotificationStatus.SENDING
    assert [c.status for c in stored.channels] == [DeliveryStatus.SENDING]

    await ledger_fails(store, False)
    again = await _send(store, attempt=2)
    assert (again.duplicate, again.final_status) == (False, NotificationStatus.SENT)
    [item] = await store.list_inbox("ada")
    assert again.acceptance.provider_message_id == str(item.id)
    assert len(await store.inbox_events("ada")) == 1
    stored = await store.get_notification("n-1")
    assert stored is not None
    assert [(c.status, c.attempts) for c in stored.channels] == [(DeliveryStatus.DELIVERED, 2)]

    third = await _send(store, attempt=3)  # the ledger has it: nothing is written again
    assert third.duplicate and third.acceptance == again.acceptance
    assert third.final_status is NotificationStatus.SENT
    assert len(await store.list_inbox("ada")) == 1
    assert len(await store.inbox_events("ada")) == 1


async def test_an_item_without_its_ledger_entry_is_recorded_by_the_next_send(
    sending: Store,
) -> None:
    """What a worker before this change could leave when it died between its two
    transactions: the item, no ledger entry. The send finds the item and records it."""
    store = sending
    before = await store.add_inbox_item(
        user_id="ada", notification_id="n-1", title="Hi Ada", body="Hello Ada"
    )
    result = await _send(store)
    assert not result.duplicate and result.acceptance.provider_message_id == str(before.id)
    assert await store.list_inbox("ada") == [before]
    assert len(await store.inbox_events("ada")) == 1
    entry = await store.ledger_get("n-1:in_app")
    assert entry is not None and entry.provider_message_id == str(before.id)
    stored = await store.get_notification("n-1")
    assert stored is not None and stored.status is NotificationStatus.SENT


async def test_a_record_that_raises_rolls_the_item_back(sending: Store) -> None:
    def refuse(_item: object) -> Any:
        raise RuntimeError("refused")

    with pytest.raises(RuntimeError, match="refused"):
        await sending.deliver_inbox_item(
            user_id="ada", notification_id="n-1", title="t", body="b", record=refuse
        )
    assert await sending.list_inbox("ada") == []
    assert await sending.inbox_events("ada") == []
