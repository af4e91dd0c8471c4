"""A notification's facts (tidings.store.facts, kept by triggers) always equal a recount from
its raw deliveries and events, whatever the order and path of the writes that made them; so do
the deliveries' facts and creation times and each user's latest engagement."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select

from tests.store.test_notifications import record
from tests.store.test_sent_days import _recount as _recount_days
from tests.store.test_sent_days import _rollup
from tidings.models import (
    Channel,
    ChannelResult,
    DeliveryStatus,
    EngagementEvent,
    EngagementType,
    NotificationStatus,
)
from tidings.receipts import DeliveryReceipt
from tidings.store import LedgerEntry, Store
from tidings.store.tables import (
    ConversionRow,
    DeliveryRow,
    EngagementRow,
    NotificationRow,
    UserEngagementRow,
)

T0 = datetime(2030, 3, 1, 9, 0, tzinfo=UTC)
FACTS = [
    "any_sent",
    "any_delivered",
    "any_failed",
    "any_suppressed",
    "last_opened_at",
    "last_clicked_at",
    "last_converted_at",
]


async def _facts(store: Store) -> dict[str, dict[str, Any]]:
    columns = [getattr(NotificationRow, name) for name in FACTS]
    async with store.engine.connect() as conn:
        rows = (await conn.execute(select(NotificationRow.id, *columns))).all()
    return {r.id: {name: getattr(r, name) for name in FACTS} for r in rows}


async def _recount(store: Store) -> dict[str, dict[str, Any]]:
    async with store.engine.connect() as conn:
        ids = (await conn.scalars(select(NotificationRow.id))).all()
        deliveries = (await conn.execute(select(DeliveryRow))).all()
        events = (await conn.execute(select(EngagementRow))).all()
    out: dict[str, dict[str, Any]] = {}
    for nid in ids:
        statuses = {d.status for d in deliveries if d.notification_id == nid}

        def last(types: set[str], nid: str = nid) -> datetime | None:
            times = [e.at for e in events if e.notification_id == nid and e.type in types]
            return max(times, default=None)

        out[nid] = {
            "any_sent": bool(statuses & {"sent", "delivered"}),
            "any_delivered": "delivered" in statuses,
            "any_failed": "failed" in statuses,
            "any_suppressed": "suppressed" in statuses,
            "last_opened_at": last({"opened", "clicked"}),
            "last_clicked_at": last({"clicked"}),
            "last_converted_at": last({"converted"}),
        }
    return out


async def _delivery_facts(store: Store) -> dict[tuple[str, str], tuple[Any, ...]]:
    async with store.engine.connect() as conn:
        rows = (await conn.execute(select(DeliveryRow))).all()
    return {
        (d.notification_id, d.channel): (
            d.first_opened_at,
            d.first_clicked_at,
            d.first_converted_at,
            d.created_at,
        )
        for d in rows
    }


async def _delivery_recount(store: Store) -> dict[tuple[str, str], tuple[Any, ...]]:
    async with store.engine.connect() as conn:
        deliveries = (await conn.execute(select(DeliveryRow))).all()
        events = (await conn.execute(select(EngagementRow))).all()
        created = dict(
            (await conn.execute(select(NotificationRow.id, NotificationRow.created_at))).all()
        )

    def first(d: Any, types: set[str]) -> datetime | None:
        times = [
            e.at
            for e in events
            if e.notification_id == d.notification_id
            and e.type in types
            and e.channel in (d.channel, None)
        ]
        return min(times, default=None)

    return {
        (d.notification_id, d.channel): (
            first(d, {"opened", "clicked"}),
            first(d, {"clicked"}),
            first(d, {"converted"}),
            created[d.notification_id],
        )
        for d in deliveries
    }


async def _users(store: Store) -> dict[str, tuple[Any, ...]]:
    async with store.engine.connect() as conn:
        rows = (await conn.execute(select(UserEngagementRow))).all()
    return {r.user_id: (r.last_opened_at, r.last_clicked_at, r.last_converted_at) for r in rows}


async def _users_recount(store: Store) -> dict[str, tuple[Any, ...]]:
    """Each user's latest open (or click), click and conversion over the raw events; users
    who never engaged have no row."""
    async with store.engine.connect() as conn:
        owner = dict(
            (await conn.execute(select(NotificationRow.id, NotificationRow.user_id))).all()
        )
        events = (await conn.execute(select(EngagementRow))).all()
    out: dict[str, tuple[Any, ...]] = {}
    for user in set(owner.values()):
        mine = [e for e in events if owner[e.notification_id] == user]

        def last(types: set[str], mine: list[Any] = mine) -> datetime | None:
            return max((e.at for e in mine if e.type in types), default=None)

        latest = (last({"opened", "clicked"}), last({"clicked"}), last({"converted"}))
        if latest != (None, None, None):
            out[user] = latest
    return out


async def _conversions(store: Store) -> dict[tuple[str, str, str], float | None]:
    async with store.engine.connect() as conn:
        rows = (await conn.execute(select(ConversionRow))).all()
    return {(r.notification_id, r.channel, r.currency): r.value for r in rows}


async def _conversions_recount(store: Store) -> dict[tuple[str, str, str], float | None]:
    """Per notification, channel ("" for none) and currency ("" unless a string), the sum of
    the numeric values of its raw `converted` events (None while none had one)."""
    async with store.engine.connect() as conn:
        events = (await conn.execute(select(EngagementRow))).all()
    out: dict[tuple[str, str, str], float | None] = {}
    for e in events:
        if e.type != "converted":
            continue
        currency = e.metadata.get("currency")
        key = (e.notification_id, e.channel or "", currency if isinstance(currency, str) else "")
        value = e.metadata.get("value")
        number = (
            float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None
        )
        total = out.get(key)
        out[key] = number if total is None else total + (number or 0.0)
    return out


async def _all_equal_a_recount(store: Store) -> None:
    assert await _facts(store) == await _recount(store)
    assert await _delivery_facts(store) == await _delivery_recount(store)
    assert await _users(store) == await _users_recount(store)
    assert await _conversions(store) == await _conversions_recount(store)


def _event(nid: str, kind: EngagementType, minutes: int, **kw: Any) -> EngagementEvent:
    return EngagementEvent(notification_id=nid, type=kind, at=T0 + timedelta(minutes=minutes), **kw)


async def test_facts_equal_a_recount_after_mixed_writes(store: Store) -> None:
    email_sent = ChannelResult(channel=Channel.EMAIL, status=DeliveryStatus.SENT, at=T0)
    sms_off = ChannelResult(channel=Channel.SMS, status=DeliveryStatus.SUPPRESSED, reason="off")
    # n-1: created with its channels in one write, then engaged out of order.
    await record(store, "n-1", channels=[email_sent, sms_off])
    await store.record_engagement(_event("n-1", EngagementType.CLICKED, 30, channel=Channel.EMAIL))
    await store.record_engagement(_event("n-1", EngagementType.OPENED, 10))  # earlier, no channel
    await store.record_engagement(_event("n-1", EngagementType.OPENED, 5, channel=Channel.PUSH))
    await store.record_engagement(_event("n-1", EngagementType.CLICKED, 30, channel=Channel.EMAIL))
    await store.record_engagement(
        _event("n-1", EngagementType.CONVERTED, 90, metadata={"value": 5, "currency": "EUR"})
    )
    # n-2: sending, failed on push, then SMS accepted and settled by a receipt before the
    # workflow's own late `sent`.
    await record(store, "n-2")
    await store.upsert_delivery(
        "n-2", ChannelResult(channel=Channel.PUSH, status=DeliveryStatus.FAILED, reason="gone")
    )
    await store.upsert_delivery(
        "n-2", ChannelResult(channel=Channel.SMS, status=DeliveryStatus.SENDING)
    )
    assert (await _facts(store))["n-2"]["any_sent"] is False
    await store.ledger_put(
        LedgerEntry(
            key="n-2:sms",
            notification_id="n-2",
            channel=Channel.SMS,
            target="+1555***0100",
            provider_message_id="SM1",
            sent_at=T0,
        )
    )
    receipt = DeliveryReceipt(
        notification_id="n-2", channel=Channel.SMS, status=DeliveryStatus.DELIVERED
    )
    assert await store.apply_receipt(receipt) is not None
    assert (await _facts(store))["n-2"]["any_delivered"] is True
    await store.upsert_delivery(
        "n-2", ChannelResult(channel=Channel.SMS, status=DeliveryStatus.SENT, at=T0)
    )
    recorded = await store.record_event(_event("n-2", EngagementType.OPENED, 5))
    assert recorded.new
    # n-3: never sent; a stray event still counts in its facts (analytics filter on any_sent).
    await record(store, "n-3", status=NotificationStatus.FAILED)
    await store.record_engagement(_event("n-3", EngagementType.OPENED, 1))

    await _all_equal_a_recount(store)
    facts = await _facts(store)
    per_channel = await _delivery_facts(store)
    # The click came through email; the channel-less open counts for every channel.
    assert per_channel[("n-1", "email")][:2] == (
        T0 + timedelta(minutes=10),
        T0 + timedelta(minutes=30),
    )
    assert per_channel[("n-1", "sms")][:2] == (T0 + timedelta(minutes=10), None)
    assert facts["n-1"]["last_opened_at"] == T0 + timedelta(minutes=30)  # the click, not the open
    assert facts["n-1"]["last_converted_at"] == T0 + timedelta(minutes=90)
    assert (facts["n-1"]["any_sent"], facts["n-1"]["any_suppressed"]) == (True, True)
    assert facts["n-2"] == {
        "any_sent": True,
        "any_delivered": True,
        "any_failed": True,
        "any_suppressed": False,
        "last_opened_at": T0 + timedelta(minutes=5),
        "last_clicked_at": None,
        "last_converted_at": None,
    }
    assert facts["n-3"]["any_sent"] is False and facts["n-3"]["last_opened_at"] is not None


async def test_facts_follow_events_recorded_many_at_once(store: Store) -> None:
    """Marking a whole inbox read records its `opened` events in one call (record_events)."""
    sent = ChannelResult(channel=Channel.IN_APP, status=DeliveryStatus.SENT, at=T0)
    for nid in ("m-1", "m-2"):
        await record(store, nid, status=NotificationStatus.SENT, channels=[sent])
    opened = [
        _event(nid, EngagementType.OPENED, 3, channel=Channel.IN_APP) for nid in ("m-1", "m-2")
    ]
    assert all(r.new for r in (await store.record_events(opened)).values())
    await _all_equal_a_recount(store)
    assert (await _facts(store))["m-1"]["last_opened_at"] == T0 + timedelta(minutes=3)


async def test_a_receipt_that_fails_a_sent_delivery_clears_its_flags(store: Store) -> None:
    sms_sent = ChannelResult(channel=Channel.SMS, status=DeliveryStatus.SENT, at=T0)
    await record(store, "r-1", status=NotificationStatus.SENT, channels=[sms_sent])
    assert (await _facts(store))["r-1"]["any_sent"] is True
    await store.ledger_put(
        LedgerEntry(
            key="r-1:sms",
            notification_id="r-1",
            channel=Channel.SMS,
            target="+1555***0100",
            provider_message_id="SM9",
            sent_at=T0,
        )
    )
    failed = DeliveryReceipt(
        notification_id="r-1", channel=Channel.SMS, status=DeliveryStatus.FAILED, reason="30003"
    )
    assert await store.apply_receipt(failed) is not None
    facts = (await _facts(store))["r-1"]
    assert (facts["any_sent"], facts["any_failed"]) == (False, True)
    await _all_equal_a_recount(store)


async def test_events_before_their_delivery_late_and_repeated(store: Store) -> None:
    """An event can reach the database before the delivery it came through (the delivery
    takes it when written); a late event moves the latest times, an earlier one the first
    times; a repeated event (same id) changes nothing."""
    await record(store, "e-1", user_id="bo")
    opened = _event("e-1", EngagementType.OPENED, 20, channel=Channel.PUSH, event_id="o1")
    assert await store.record_engagement(opened)
    await store.upsert_delivery(
        "e-1", ChannelResult(channel=Channel.PUSH, status=DeliveryStatus.SENT, at=T0)
    )
    assert (await _delivery_facts(store))[("e-1", "push")][0] == T0 + timedelta(minutes=20)
    late = _event("e-1", EngagementType.CLICKED, 60 * 24 * 9, channel=Channel.PUSH)
    assert await store.record_engagement(late)
    earlier = _event("e-1", EngagementType.OPENED, 2, event_id="o0")
    assert await store.record_engagement(earlier)
    again = _event("e-1", EngagementType.OPENED, 1, channel=Channel.PUSH, event_id="o1")
    assert not await store.record_engagement(again)  # the same event id: not recorded
    dismissed = _event("e-1", EngagementType.DISMISSED, 99)
    assert await store.record_engagement(dismissed)
    await _all_equal_a_recount(store)
    assert (await _delivery_facts(store))[("e-1", "push")][:2] == (
        T0 + timedelta(minutes=2),
        T0 + timedelta(days=9),
    )
    assert (await _users(store))["bo"] == (T0 + timedelta(days=9), T0 + timedelta(days=9), None)


async def test_user_engagement_follows_a_notification_moved_to_another_user(store: Store) -> None:
    await record(store, "u-1", user_id="cy")
    await record(store, "u-2", user_id="cy")
    await store.record_engagement(_event("u-1", EngagementType.CONVERTED, 40))
    await store.record_engagement(_event("u-2", EngagementType.OPENED, 10))
    await record(store, "u-1", user_id="di")  # the same notification rewritten for another user
    await _all_equal_a_recount(store)
    users = await _users(store)
    assert users["cy"] == (T0 + timedelta(minutes=10), None, None)
    assert users["di"] == (None, None, T0 + timedelta(minutes=40))


async def test_conversions_sum_late_repeated_and_valueless_conversions(store: Store) -> None:
    """The conversions' sums (migration 0017) equal a recount whatever arrives: a repeated
    event (same id) is not added twice, a late one is, a conversion without a value or with a
    non-numeric one adds nothing, currencies and channels are kept apart. Values are exact
    binary fractions, so the sums are exact in any order."""
    sent = ChannelResult(channel=Channel.EMAIL, status=DeliveryStatus.SENT, at=T0)
    await record(store, "c-1", channels=[sent])
    await record(store, "c-2", channels=[sent])
    converted = EngagementType.CONVERTED

    def conversion(nid: str, minutes: int, **kw: Any) -> EngagementEvent:
        return _event(nid, converted, minutes, **kw)

    eur = {"value": 19.5, "currency": "EUR"}
    assert await store.record_engagement(conversion("c-1", 5, event_id="k1", metadata=eur))
    assert not await store.record_engagement(conversion("c-1", 6, event_id="k1", metadata=eur))
    assert await store.record_engagement(
        conversion(
            "c-1", 60 * 24 * 40, event_id="k2", metadata={"value": 0.25, "currency": "EUR"}
        )  # late
    )
    assert await store.record_engagement(
        conversion(
            "c-1", 7, channel=Channel.EMAIL, event_id="k3", metadata={"value": 3, "currency": "EUR"}
        )
    )
    assert await store.record_engagement(conversion("c-1", 8, event_id="k4", metadata={"value": 2}))
    assert await store.record_engagement(
        conversion("c-2", 9, event_id="k5", metadata={"currency": "USD"})
    )
    assert await store.record_engagement(
        conversion("c-2", 10, event_id="k6", metadata={"value": "lots", "currency": "USD"})
    )
    # Without an id, a conversion counts once per notification and channel.
    assert await store.record_engagement(conversion("c-1", 12, metadata=eur))
    assert not await store.record_engagement(conversion("c-1", 13, metadata=eur))
    many = [
        conversion("c-2", 11 + i, event_id=f"g{i}", metadata={"value": 1.5, "currency": "GBP"})
        for i in range(2)
    ]
    assert all(r.new for r in (await store.record_events(many)).values())
    await _all_equal_a_recount(store)
    assert await _conversions(store) == {
        ("c-1", "", "EUR"): 39.25,
        ("c-1", "email", "EUR"): 3.0,
        ("c-1", "", ""): 2.0,
        ("c-2", "", "USD"): None,
        ("c-2", "", "GBP"): 3.0,
    }


async def test_facts_follow_a_delivery_that_finishes_its_notification(store: Store) -> None:
    """The last delivery's transaction writes its row and the notification's final status
    (`record_send(finish=True)`): the row's triggers keep the facts, the status needs none."""
    sending = [ChannelResult(channel=c, status=DeliveryStatus.SENDING) for c in _PAIR]
    await record(store, "f-1", channels=sending)
    for channel, status in ((Channel.EMAIL, DeliveryStatus.SENT), (Channel.IN_APP, None)):
        entry = LedgerEntry(
            key=f"f-1:{channel.value}", notification_id="f-1", channel=channel, target="t"
        )
        landed = ChannelResult(channel=channel, status=status or DeliveryStatus.DELIVERED, at=T0)
        await store.record_send(entry, landed, finish=True)
    stored = await store.get_notification("f-1")
    assert stored is not None and stored.status is NotificationStatus.SENT
    facts = (await _facts(store))["f-1"]
    assert (facts["any_sent"], facts["any_delivered"], facts["any_failed"]) == (True, True, False)
    await _all_equal_a_recount(store)
    # The status it wrote counts in the engagement rate's rollup, as the run's record would.
    assert await _rollup(store) == await _recount_days(store) != {}


_PAIR = (Channel.EMAIL, Channel.IN_APP)
