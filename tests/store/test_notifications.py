from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from sqlalchemy.exc import IntegrityError

from tidings.models import (
    Channel,
    ChannelResult,
    ChannelStats,
    DeliveryStatus,
    EngagementEvent,
    EngagementType,
    NotificationStatus,
    Priority,
)
from tidings.routing import overall_status
from tidings.store import LedgerEntry, Store
from tidings.store.notifications import RecordedSend

IST = timezone(timedelta(hours=5, minutes=30))


async def record(store: Store, notification_id: str, **fields: Any) -> None:
    values: dict[str, Any] = {
        "user_id": "ada",
        "template_id": "welcome",
        "template_version": 1,
        "priority": Priority.MEDIUM,
        "status": NotificationStatus.SENDING,
        **fields,
    }
    await store.upsert_notification(notification_id=notification_id, **values)


_TWO = (Channel.EMAIL, Channel.IN_APP)


async def test_notification_round_trip_with_channels(store: Store) -> None:
    send_at = datetime(2030, 5, 1, 9, 0, tzinfo=IST)
    email = ChannelResult(
        channel=Channel.EMAIL,
        status=DeliveryStatus.SENT,
        target="a***@example.com",
        provider_message_id="<m1@tidings>",
        attempts=2,
        at=datetime(2030, 5, 1, 3, 31, tzinfo=UTC),
    )
    sms = ChannelResult(channel=Channel.SMS, status=DeliveryStatus.SUPPRESSED, reason="opted out")
    await record(
        store,
        "n-1",
        priority=Priority.HIGH,
        status=NotificationStatus.SENT,
        send_at=send_at,
        channels=[sms, email],
    )
    got = await store.get_notification("n-1")
    assert got is not None
    assert (got.user_id, got.template_id, got.template_version) == ("ada", "welcome", 1)
    assert (got.priority, got.status, got.reason) == (Priority.HIGH, NotificationStatus.SENT, None)
    assert got.send_at == send_at and got.send_at is not None and got.send_at.tzinfo is UTC
    assert got.channels == [email, sms]
    assert got.engagement == []
    assert await store.get_notification("n-2") is None


async def test_update_replaces_status_and_keeps_known_send_at(store: Store) -> None:
    send_at = datetime(2030, 1, 1, tzinfo=UTC)
    await record(store, "n-1", status=NotificationStatus.SCHEDULED, send_at=send_at, reason="quiet")
    await record(store, "n-1", status=NotificationStatus.FAILED, reason="all channels failed")
    got = await store.get_notification("n-1")
    assert got is not None
    assert got.status is NotificationStatus.FAILED
    assert got.reason == "all channels failed"
    assert got.send_at == send_at
    later = send_at + timedelta(hours=1)
    await record(store, "n-1", status=NotificationStatus.SCHEDULED, send_at=later)
    got = await store.get_notification("n-1")
    assert got is not None and got.send_at == later and got.reason is None


async def test_delivery_rows_are_upserted_per_channel(store: Store) -> None:
    await record(store, "n-1", channels=[ChannelResult(channel=Channel.EMAIL, status="scheduled")])
    sent = ChannelResult(channel=Channel.EMAIL, status=DeliveryStatus.SENT, attempts=1)
    await store.upsert_delivery("n-1", sent)
    push = ChannelResult(channel=Channel.PUSH, status=DeliveryStatus.FAILED, reason="bad token")
    await store.upsert_delivery("n-1", push)
    got = await store.get_notification("n-1")
    assert got is not None and got.channels == [sent, push]


async def test_delivery_for_unknown_notification_is_refused(store: Store) -> None:
    with pytest.raises(LookupError, match="notification ghost not found"):
        await store.upsert_delivery(
            "ghost", ChannelResult(channel=Channel.EMAIL, status=DeliveryStatus.SENT)
        )


async def test_a_failing_channel_row_leaves_no_notification_behind(store: Store) -> None:
    broken = ChannelResult.model_construct(
        channel=Channel.EMAIL,
        status=DeliveryStatus.SENT,
        attempts=None,  # type: ignore[arg-type]  # NOT NULL in the database
    )
    with pytest.raises(IntegrityError):
        await record(store, "n-1", channels=[broken])
    assert await store.get_notification("n-1") is None
    assert await store.list_notifications() == []


async def test_list_notifications_newest_first_and_by_user(store: Store) -> None:
    for n, user_id in [("n-1", "ada"), ("n-2", "bob"), ("n-3", "ada")]:
        await record(store, n, user_id=user_id)
    await store.record_engagement(EngagementEvent(notification_id="n-1", type="opened"))
    listed = await store.list_notifications()
    assert [n.notification_id for n in listed] == ["n-3", "n-2", "n-1"]
    assert [len(n.engagement) for n in listed] == [0, 0, 1]
    assert [n.notification_id for n in await store.list_notifications(user_id="ada")] == [
        "n-3",
        "n-1",
    ]
    assert [n.notification_id for n in await store.list_notifications(limit=1)] == ["n-3"]
    # Updating an old notification does not make it new.
    await record(store, "n-1", status=NotificationStatus.SENT)
    assert (await store.list_notifications(limit=1))[0].notification_id == "n-3"
    with pytest.raises(ValueError, match="limit"):
        await store.list_notifications(limit=0)


async def test_engagement_counts_once_per_type_and_channel_or_event_id(store: Store) -> None:
    await record(store, "n-1")
    at = datetime(2030, 1, 1, 12, 0, 0, 123456, tzinfo=IST)
    opened = EngagementEvent(
        notification_id="n-1",
        type=EngagementType.OPENED,
        channel=Channel.EMAIL,
        at=at,
        metadata={"ua": "mail", "n": 1},
    )
    assert await store.record_engagement(opened) is True
    # The same open again, even at another time (a re-fetched pixel): the same event.
    assert await store.record_engagement(opened) is False
    later = opened.model_copy(update={"at": at + timedelta(minutes=5)})
    assert await store.record_engagement(later) is False
    # Another type, or the same type on another channel: new events.
    clicked = opened.model_copy(update={"type": EngagementType.CLICKED, "metadata": {}})
    assert await store.record_engagement(clicked) is True
    in_app = opened.model_copy(update={"channel": Channel.IN_APP, "at": at})
    assert await store.record_engagement(in_app) is True
    # With the caller's event ids, two clicks are two events, and each repeat still counts once.
    for event_id in ("click-1", "click-2", "click-1"):
        click = clicked.model_copy(update={"event_id": event_id, "at": at + timedelta(hours=1)})
        await store.record_engagement(click)
    got = await store.get_notification("n-1")
    assert got is not None
    # Ordered by time, then by arrival.
    assert [(e.type, e.channel, e.event_id) for e in got.engagement] == [
        (EngagementType.OPENED, Channel.EMAIL, None),
        (EngagementType.CLICKED, Channel.EMAIL, None),
        (EngagementType.OPENED, Channel.IN_APP, None),
        (EngagementType.CLICKED, Channel.EMAIL, "click-1"),
        (EngagementType.CLICKED, Channel.EMAIL, "click-2"),
    ]
    assert got.engagement[0].metadata == {"ua": "mail", "n": 1}
    assert all(e.at is not None and e.at.tzinfo is UTC for e in got.engagement)
    stats = await store.service_stats()
    assert stats.engagement == {EngagementType.OPENED: 2, EngagementType.CLICKED: 3}


async def test_engagement_without_time_is_stamped_now(store: Store) -> None:
    await record(store, "n-1")
    before = datetime.now(UTC)
    assert await store.record_engagement(EngagementEvent(notification_id="n-1", type="clicked"))
    got = await store.get_notification("n-1")
    assert got is not None and got.engagement[0].at is not None
    assert got.engagement[0].at >= before


async def test_engagement_for_unknown_notification_is_refused(store: Store) -> None:
    with pytest.raises(LookupError, match="notification ghost not found"):
        await store.record_engagement(EngagementEvent(notification_id="ghost", type="opened"))


async def test_service_stats_counts(store: Store) -> None:
    empty = await store.service_stats()
    assert (empty.notifications, empty.channels, empty.engagement) == ({}, {}, {})
    assert empty.success_rate is None

    def d(channel: Channel, status: DeliveryStatus) -> ChannelResult:
        return ChannelResult(channel=channel, status=status)

    await record(
        store,
        "n-1",
        status=NotificationStatus.SENT,
        channels=[d(Channel.EMAIL, DeliveryStatus.SENT), d(Channel.SMS, DeliveryStatus.FAILED)],
    )
    await record(
        store,
        "n-2",
        status=NotificationStatus.SENT,
        channels=[
            d(Channel.EMAIL, DeliveryStatus.SENT),
            d(Channel.IN_APP, DeliveryStatus.DELIVERED),
            d(Channel.PUSH, DeliveryStatus.SUPPRESSED),
        ],
    )
    await record(
        store,
        "n-3",
        status=NotificationStatus.FAILED,
        channels=[d(Channel.EMAIL, DeliveryStatus.FAILED)],
    )
    await record(store, "n-4", status=NotificationStatus.SCHEDULED)
    t0 = datetime(2030, 1, 1, tzinfo=UTC)
    for n, kind, minutes in [("n-1", "opened", 0), ("n-1", "clicked", 1), ("n-2", "opened", 2)]:
        event = EngagementEvent(notification_id=n, type=kind, at=t0 + timedelta(minutes=minutes))
        await store.record_engagement(event)

    stats = await store.service_stats()
    assert stats.notifications == {
        NotificationStatus.SENT: 2,
        NotificationStatus.FAILED: 1,
        NotificationStatus.SCHEDULED: 1,
    }
    assert stats.channels == {
        Channel.EMAIL: ChannelStats(sent=2, failed=1),
        Channel.SMS: ChannelStats(failed=1),
        Channel.IN_APP: ChannelStats(delivered=1),
        Channel.PUSH: ChannelStats(suppressed=1),
    }
    assert stats.engagement == {EngagementType.OPENED: 2, EngagementType.CLICKED: 1}
    assert stats.success_rate == pytest.approx(3 / 5)


def _send(nid: str, channel: Channel, status: DeliveryStatus) -> tuple[LedgerEntry, ChannelResult]:
    entry = LedgerEntry(
        key=f"{nid}:{channel.value}", notification_id=nid, channel=channel, target="t"
    )
    return entry, ChannelResult(channel=channel, status=status, target="t", attempts=1)


async def test_the_last_delivery_writes_the_final_status(store: Store) -> None:
    """With `finish`, the delivery that lands last (no row left `sending`) writes the status the
    run's `overall_status` gives for the rows, in its own transaction; a retry that finds its
    ledger entry, or the run's own final record, sees it written and changes nothing."""
    off = ChannelResult(channel=Channel.SMS, status=DeliveryStatus.SUPPRESSED, reason="off")
    planned = [ChannelResult(channel=c, status=DeliveryStatus.SENDING) for c in _TWO]
    await record(store, "n-1", channels=[off, *planned])

    first = await store.record_send(*_send("n-1", Channel.EMAIL, DeliveryStatus.SENT), finish=True)
    assert first == RecordedSend(new=True, final_status=None)  # in-app is still sending
    stored = await store.get_notification("n-1")
    assert stored is not None and stored.status is NotificationStatus.SENDING

    last = await store.record_send(
        *_send("n-1", Channel.IN_APP, DeliveryStatus.DELIVERED), finish=True
    )
    assert last == RecordedSend(new=True, final_status=NotificationStatus.SENT)
    stored = await store.get_notification("n-1")
    assert stored is not None
    assert stored.status is overall_status(stored.channels) is NotificationStatus.SENT
    assert stored.reason is None
    assert {c.channel: c.status for c in stored.channels} == {
        Channel.SMS: DeliveryStatus.SUPPRESSED,
        Channel.EMAIL: DeliveryStatus.SENT,
        Channel.IN_APP: DeliveryStatus.DELIVERED,
    }
    # A retry of either delivery finds the ledger entry, and the status written.
    again = await store.record_send(*_send("n-1", Channel.EMAIL, DeliveryStatus.SENT), finish=True)
    assert again == RecordedSend(new=False, final_status=NotificationStatus.SENT)
    assert await store.finish_if_last("n-1") is NotificationStatus.SENT
    # Without `finish` (runs before FINAL_BY_DELIVERY_PATCH) nothing is asked or written.
    await record(store, "n-2", channels=planned[:1])
    plain = await store.record_send(*_send("n-2", Channel.EMAIL, DeliveryStatus.SENT))
    assert plain == RecordedSend(new=True, final_status=None)
    stored = await store.get_notification("n-2")
    assert stored is not None and stored.status is NotificationStatus.SENDING


async def test_a_failed_channel_leaves_the_final_status_to_the_run(store: Store) -> None:
    """A failed delivery writes nothing: its row stays `sending` until the run records it, so
    the other channel's delivery cannot finish the notification, and the run writes it."""
    planned = [ChannelResult(channel=c, status=DeliveryStatus.SENDING) for c in _TWO]
    await record(store, "n-1", channels=planned)
    sent = await store.record_send(
        *_send("n-1", Channel.IN_APP, DeliveryStatus.DELIVERED), finish=True
    )
    assert sent == RecordedSend(new=True, final_status=None)
    assert await store.finish_if_last("n-1") is None
    stored = await store.get_notification("n-1")
    assert stored is not None and stored.status is NotificationStatus.SENDING
    # Once the run recorded the failure, a late retry finds a final status it did not write.
    failed = ChannelResult(channel=Channel.EMAIL, status=DeliveryStatus.FAILED, reason="bounced")
    await record(store, "n-1", status=NotificationStatus.SENT, channels=[failed])
    assert await store.finish_if_last("n-1") is NotificationStatus.SENT


async def test_the_final_status_moves_forward_only(store: Store) -> None:
    """Only a notification still `sending` takes the status from its last delivery: one the run
    has recorded otherwise keeps what the run wrote."""
    planned = [ChannelResult(channel=Channel.EMAIL, status=DeliveryStatus.SENDING)]
    await record(store, "n-1", channels=planned)
    await record(store, "n-1", status=NotificationStatus.EXPIRED, reason="expired")
    sent = await store.record_send(*_send("n-1", Channel.EMAIL, DeliveryStatus.SENT), finish=True)
    assert sent == RecordedSend(new=True, final_status=None)
    stored = await store.get_notification("n-1")
    assert stored is not None and stored.status is NotificationStatus.EXPIRED
    assert stored.reason == "expired"


async def test_the_final_status_in_sql_is_overall_status(store: Store) -> None:
    """The statement that writes the final status takes `overall_status`'s rules: for every
    combination of landed channel statuses it writes what the run computes."""
    landed = [s for s in DeliveryStatus if s.final]
    channels = list(Channel)
    assert len(landed) <= len(channels)
    for mask in range(1, 2 ** len(landed)):
        statuses = [s for i, s in enumerate(landed) if mask >> i & 1]
        pairs = zip(channels, statuses, strict=False)  # fewer statuses than channels
        results = [ChannelResult(channel=c, status=s) for c, s in pairs]
        await record(store, f"n-{mask}", channels=results)
        written = await store.finish_if_last(f"n-{mask}")
        assert written is overall_status(results), statuses
        stored = await store.get_notification(f"n-{mask}")
        assert stored is not None and stored.status is written
