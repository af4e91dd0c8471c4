"""Engagement rows in bulk (read sync for many inbox items at once) and rows of engagement types
this version does not know (written by a newer API process during a rolling deploy)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import insert

from tests.store.test_notifications import record
from tidings.models import (
    Channel,
    ChannelResult,
    DeliveryStatus,
    EngagementEvent,
    EngagementType,
    NotificationStatus,
)
from tidings.store import Store
from tidings.store.tables import EngagementRow

AT = datetime(2030, 1, 1, 12, tzinfo=UTC)


def opened(notification_id: str) -> EngagementEvent:
    return EngagementEvent(
        notification_id=notification_id, type=EngagementType.OPENED, channel=Channel.IN_APP, at=AT
    )


async def test_record_events_stores_many_in_one_call_and_says_which_are_new(store: Store) -> None:
    sent = ChannelResult(channel=Channel.IN_APP, status=DeliveryStatus.SENT, at=AT)
    await record(store, "live", status=NotificationStatus.SENT, channels=[sent])
    await record(store, "undelivered", status=NotificationStatus.SENDING)
    await record(store, "cancelled", status=NotificationStatus.CANCELLED)
    await record(store, "again", status=NotificationStatus.SENT, channels=[sent])
    assert await store.record_engagement(opened("again"))
    events = [opened(n) for n in ("live", "undelivered", "cancelled", "again", "ghost")]
    got = await store.record_events(events)
    assert set(got) == {"live", "undelivered", "cancelled", "again"}  # no ghost
    assert {n for n, r in got.items() if r.new} == {"live", "undelivered"}
    assert got["live"].delivered_at == AT and got["undelivered"].delivered_at is None
    assert got["cancelled"].status is NotificationStatus.CANCELLED
    for nid, count in (("live", 1), ("undelivered", 1), ("cancelled", 0), ("again", 1)):
        notification = await store.get_notification(nid)
        assert notification is not None and len(notification.engagement) == count
    # Recording the same events again changes nothing.
    assert not any(r.new for r in (await store.record_events(events)).values())
    assert await store.record_events([]) == {}


async def test_a_row_of_an_unknown_engagement_type_is_skipped_when_read(store: Store) -> None:
    await record(store, "n-1", status=NotificationStatus.SENT)
    assert await store.record_engagement(opened("n-1"))
    # A newer process recorded a type this one has never heard of.
    async with store.engine.begin() as conn:
        await conn.execute(
            insert(EngagementRow).values(
                notification_id="n-1",
                type="bounced-later",
                channel="carrier-pigeon",
                at=AT + timedelta(minutes=1),
                dedupe_key="bounced-later:-",
                meta={},
            )
        )
    got = await store.get_notification("n-1")
    assert got is not None
    assert [(e.type, e.channel) for e in got.engagement] == [
        (EngagementType.OPENED, Channel.IN_APP)
    ]
    assert [n.notification_id for n in await store.list_notifications()] == ["n-1"]
    assert (await store.service_stats()).engagement == {EngagementType.OPENED: 1}


async def test_record_event_reads_status_and_first_delivery_and_inserts_once(store: Store) -> None:
    sent = ChannelResult(channel=Channel.EMAIL, status=DeliveryStatus.SENT, at=AT)
    await record(store, "live", status=NotificationStatus.SENT, channels=[sent])
    await record(store, "cancelled", status=NotificationStatus.CANCELLED)
    click = EngagementEvent(
        notification_id="live",
        type=EngagementType.CONVERTED,
        channel=Channel.EMAIL,
        at=AT + timedelta(minutes=3),
        metadata={"value": 9.5, "currency": "EUR"},
        event_id="order-1",
    )
    first = await store.record_event(click)
    assert first.new and first.status is NotificationStatus.SENT and first.delivered_at == AT
    assert not (await store.record_event(click)).new
    got = await store.get_notification("live")
    assert got is not None and [(e.event_id, e.metadata, e.at) for e in got.engagement] == [
        ("order-1", {"value": 9.5, "currency": "EUR"}, AT + timedelta(minutes=3))
    ]
    refused = await store.record_event(click.model_copy(update={"notification_id": "cancelled"}))
    assert not refused.new and refused.status is NotificationStatus.CANCELLED
    with pytest.raises(LookupError, match="ghost"):
        await store.record_event(click.model_copy(update={"notification_id": "ghost"}))
