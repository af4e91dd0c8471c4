"""The broadcast store on SQLite and PostgreSQL: keyset pages of the audience, the bulk reads
that plan a page, the claim-before-send recipient ledger and the recorded counters."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tidings.broadcast_models import (
    AllUsersAudience,
    BroadcastCounters,
    ChannelCounters,
    Outcome,
    RecipientStatus,
    SegmentAudience,
    UnknownSegment,
    UserIdsAudience,
)
from tidings.models import (
    Channel,
    ChannelResult,
    DeliveryStatus,
    Device,
    NotificationStatus,
    Platform,
    Preferences,
    Priority,
    TemplateContent,
    TemplateDefinition,
    User,
)
from tidings.segments import SegmentDefinition
from tidings.store import Store

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


async def _users(store: Store, n: int) -> list[str]:
    ids = [f"b{i:03d}" for i in range(n)]
    for user_id in ids:
        await store.upsert_user(User(id=user_id, email=f"{user_id}@example.com"))
    return ids


async def test_audience_pages_by_user_id(store: Store) -> None:
    ids = await _users(store, 7)
    everyone = AllUsersAudience()
    pages, after = [], ""
    while page := await store.audience_page(everyone, after, 3):
        pages.append(page)
        after = page[-1]
    assert pages == [ids[0:3], ids[3:6], ids[6:7]]
    listed = UserIdsAudience(user_ids=["b005", "ghost", "b001", "b003"])
    assert await store.audience_page(listed, "", 10) == ["b001", "b003", "b005"]
    assert await store.audience_page(listed, "b001", 10) == ["b003", "b005"]
    with pytest.raises(UnknownSegment, match="no segment 'vips'"):
        await store.audience_page(SegmentAudience(segment="vips"), "", 10)


async def test_a_saved_segment_is_an_audience(store: Store) -> None:
    ids = await _users(store, 6)
    for user_id in ids[::2]:
        await store.upsert_user(User(id=user_id, email=f"{user_id}@example.com", locale="de"))
    await store.create_segment(
        SegmentDefinition(name="german", rules={"field": "locale", "op": "eq", "value": "de"})
    )
    german = SegmentAudience(segment="german")
    assert await store.audience_page(german, "", 2) == ids[0:4:2]
    assert await store.audience_page(german, ids[2], 2) == [ids[4]]


async def test_page_reads_preferences_devices_and_recent_sends(store: Store) -> None:
    ids = await _users(store, 3)
    await store.set_preferences(Preferences(user_id="b001", channels={Channel.EMAIL: False}))
    await store.add_device(Device(user_id="b002", platform=Platform.FCM, token="token-b002"))
    await store.add_template_version(
        TemplateDefinition(
            id="promo",
            category="marketing",
            channels=[Channel.EMAIL],
            content=TemplateContent(subject="Hi", text="Hello"),
        )
    )
    for i, at in enumerate((T0 - timedelta(minutes=30), T0 - timedelta(minutes=10))):
        await store.upsert_notification(
            notification_id=f"n{i}",
            user_id="b000",
            template_id="promo",
            template_version=1,
            priority=Priority.LOW,
            status=NotificationStatus.SENT,
            channels=[ChannelResult(channel=Channel.EMAIL, status=DeliveryStatus.SENT, at=at)],
        )
    reads = await store.page_reads(ids, category="marketing", since=T0 - timedelta(hours=1))
    assert [u.id for u in reads.users] == ids
    assert reads.preferences["b001"].channels == {Channel.EMAIL: False}
    assert reads.with_devices == {"b002"}
    assert reads.recent == {"b000": (2, T0 - timedelta(minutes=30))}
    no_caps = await store.page_reads(ids, category=None, since=T0)
    assert no_caps.recent == {}


async def test_claims_before_send_and_outcomes(store: Store) -> None:
    await _users(store, 3)
    assert await store.create_broadcast(
        broadcast_id="bc1",
        template_id="promo",
        template_version=1,
        audience=AllUsersAudience(),
        channels=[Channel.EMAIL],
        priority=Priority.MEDIUM,
    )
    assert not await store.create_broadcast(
        broadcast_id="bc1",
        template_id="other",
        template_version=1,
        audience=AllUsersAudience(),
        channels=None,
        priority=Priority.LOW,
    )
    claimed = await store.claim_recipients("bc1", Channel.EMAIL, 1, ["b000", "b001", "b002"])
    assert set(claimed.values()) == {RecipientStatus.CLAIMED}
    await store.record_recipients(
        "bc1",
        Channel.EMAIL,
        1,
        [
            Outcome(
                "b000", RecipientStatus.SENT, target="b***@example.com", provider_message_id="<m0>"
            ),
            Outcome("b001", RecipientStatus.FAILED, error="refused"),
        ],
    )
    # A retried batch finds what the first attempt recorded; the claim changes nothing.
    again = await store.claim_recipients("bc1", Channel.EMAIL, 1, ["b000", "b001", "b002"])
    assert again == {
        "b000": RecipientStatus.SENT,
        "b001": RecipientStatus.FAILED,
        "b002": RecipientStatus.CLAIMED,
    }
    rows = await store.broadcast_recipients("bc1")
    assert [(r.user_id, r.status, r.batch) for r in rows] == [
        ("b000", RecipientStatus.SENT, 1),
        ("b001", RecipientStatus.FAILED, 1),
        ("b002", RecipientStatus.CLAIMED, 1),
    ]
    assert rows[0].provider_message_id == "<m0>" and rows[1].error == "refused"
    assert [
        r.user_id for r in await store.broadcast_recipients("bc1", after=("b000", "email"))
    ] == [
        "b001",
        "b002",
    ]
    counters = BroadcastCounters(
        recipients=3, channels={Channel.EMAIL: ChannelCounters(targeted=3, sent=1, failed=1)}
    )
    await store.record_broadcast_progress("bc1", status="completed", counters=counters, pages=1)
    record = await store.get_broadcast("bc1")
    assert record is not None
    assert (record.status, record.counters, record.pages) == ("completed", counters, 1)
    assert record.finished_at is not None and record.template_id == "promo"
    assert [b.id for b in await store.list_broadcasts()] == ["bc1"]
    assert await store.broadcast_status_counts("bc1") == {
        (Channel.EMAIL, "sent"): 1,
        (Channel.EMAIL, "failed"): 1,
        (Channel.EMAIL, "claimed"): 1,
    }
