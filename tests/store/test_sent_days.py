"""The engagement rate's rollup (`user_sent_days`, migration 0019, kept by triggers) equals a
recount from the notifications after every kind of write, on SQLite and PostgreSQL; the
`engagement.rate` rule, counted from it and paged from the notifications, selects the users a
count by hand selects, at any time of the day; and every window of a rule starts at a UTC
midnight."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from sqlalchemy import create_engine, delete, select, text, update

from tests.store.test_notifications import record
from tidings.models import EngagementEvent, EngagementType, NotificationStatus, User
from tidings.segments import SegmentDefinition
from tidings.store import Store
from tidings.store.engine import alembic_config
from tidings.store.facts import EPOCH
from tidings.store.tables import NotificationRow, UserRow, UserSentDayRow

NOW = datetime(2030, 3, 31, 15, 20, 7, tzinfo=UTC)
DAYS = 30
SINCE = NOW - timedelta(days=DAYS)  # 2030-03-01 15:20:07: a time inside the window's first day

Rollup = dict[tuple[str, int], tuple[int, int]]


async def _rollup(store: Store) -> Rollup:
    async with store.engine.connect() as conn:
        rows = (await conn.execute(select(UserSentDayRow))).all()
    return {(r.user_id, r.day): (r.sent, r.opened) for r in rows}


async def _recount(store: Store) -> Rollup:
    """Per user and UTC day of creation, the sent notifications and the opened ones among
    them, from the notifications' rows; days with nothing sent have no row."""
    async with store.engine.connect() as conn:
        rows = (await conn.execute(select(NotificationRow))).all()
    out: dict[tuple[str, int], list[int]] = defaultdict(lambda: [0, 0])
    for n in rows:
        if n.status == "sent":
            counts = out[(n.user_id, (n.created_at.date() - EPOCH).days)]
            counts[0] += 1
            counts[1] += n.last_opened_at is not None
    return {key: (sent, opened) for key, (sent, opened) in out.items()}


async def _exact(store: Store) -> Rollup:
    got = await _rollup(store)
    assert got == await _recount(store)
    return got


async def _set(store: Store, nid: str, **values: Any) -> None:
    """A write Tidings itself does not make (a creation time or owner changed, a delete):
    the triggers must follow it all the same."""
    async with store.engine.begin() as conn:
        await conn.execute(update(NotificationRow).where(NotificationRow.id == nid).values(values))


async def _open(store: Store, nid: str, key: str, at: datetime = NOW) -> None:
    await store.record_engagement(
        EngagementEvent(notification_id=nid, type=EngagementType.OPENED, at=at, event_id=key)
    )


def _day(at: datetime) -> int:
    return (at.date() - EPOCH).days


async def test_the_rollup_follows_every_transition(store: Store) -> None:
    today = _day(datetime.now(UTC))
    # Inserted as sent: one sent, none opened.
    await record(store, "a", status=NotificationStatus.SENT)
    assert await _exact(store) == {("ada", today): (1, 0)}
    # Scheduled, then sending: nothing; then sent: counted.
    await record(store, "b", status=NotificationStatus.SCHEDULED)
    await record(store, "b", status=NotificationStatus.SENDING)
    assert await _exact(store) == {("ada", today): (1, 0)}
    await record(store, "b", status=NotificationStatus.SENT)
    assert await _exact(store) == {("ada", today): (2, 0)}
    # The same status written again changes nothing.
    await record(store, "b", status=NotificationStatus.SENT)
    assert await _exact(store) == {("ada", today): (2, 0)}
    # The first open after sending counts once; a second open (and a click) do not again.
    await _open(store, "b", "1")
    assert await _exact(store) == {("ada", today): (2, 1)}
    await _open(store, "b", "2", NOW + timedelta(hours=1))
    await store.record_engagement(
        EngagementEvent(notification_id="b", type=EngagementType.CLICKED, at=NOW, event_id="3")
    )
    assert await _exact(store) == {("ada", today): (2, 1)}
    # An open recorded while sending counts once the notification is sent.
    await record(store, "c", status=NotificationStatus.SENDING)
    await _open(store, "c", "1")
    assert await _exact(store) == {("ada", today): (2, 1)}
    await record(store, "c", status=NotificationStatus.SENT)
    assert await _exact(store) == {("ada", today): (3, 2)}
    # Leaving `sent` takes the notification and its open away.
    await record(store, "c", status=NotificationStatus.FAILED)
    assert await _exact(store) == {("ada", today): (2, 1)}
    # Moved to the window's first (partial) day, to the second before the window, to another
    # user: each day and user keeps exactly its own.
    await _set(store, "b", created_at=SINCE)
    await _set(store, "a", created_at=SINCE - timedelta(seconds=1))
    assert await _exact(store) == {("ada", _day(SINCE)): (2, 1)}
    await _set(store, "a", created_at=SINCE - timedelta(days=1))
    await _set(store, "b", user_id="bob")
    assert await _exact(store) == {
        ("ada", _day(SINCE) - 1): (1, 0),
        ("bob", _day(SINCE)): (1, 1),
    }
    # Deleted: the day's row goes with its last notification.
    async with store.engine.begin() as conn:
        await conn.execute(delete(NotificationRow).where(NotificationRow.id == "b"))
    assert await _exact(store) == {("ada", _day(SINCE) - 1): (1, 0)}
    # Another open of a notification that is not sent changes nothing either.
    await _open(store, "c", "2")
    assert await _exact(store) == {("ada", _day(SINCE) - 1): (1, 0)}


# (user, created at, status, opened): around 15:20:07 on the window's first day (where a window
# exact to the second would start), the midnights around it, and the end; users sent nothing in
# the window and users sent something only on its first day.
_AT = {
    "day before": SINCE - timedelta(days=1),
    "before": SINCE - timedelta(seconds=1),
    "since": SINCE,
    "first day, later": SINCE + timedelta(hours=3),
    "first day, earlier": SINCE - timedelta(hours=3),
    "first midnight": datetime.combine(SINCE.date(), datetime.min.time(), UTC),
    "next midnight": datetime.combine(SINCE.date() + timedelta(days=1), datetime.min.time(), UTC),
    "middle": NOW - timedelta(days=10),
    "now": NOW,
}
_NOTIFICATIONS: list[tuple[str, str, str, bool]] = [
    ("ann", "before", "sent", True),
    ("ann", "since", "sent", False),
    ("ann", "middle", "sent", True),
    ("ann", "middle", "failed", True),
    ("bob", "first day, later", "sent", True),  # only on the partial day
    ("cat", "first day, earlier", "sent", True),  # only before the window
    ("cat", "next midnight", "sent", False),
    ("dan", "first midnight", "sent", True),
    ("dan", "now", "sent", False),
    ("eve", "middle", "sending", False),  # sent nothing
    ("fay", "first day, later", "sent", False),
    ("fay", "middle", "sent", True),
    ("fay", "now", "sent", True),
    ("gus", "before", "sent", True),
    ("gus", "first day, earlier", "sent", True),
    ("gus", "first day, later", "sent", False),
    ("gus", "next midnight", "sent", True),
    ("ivy", "day before", "sent", True),  # in the window only a day earlier
    ("ivy", "middle", "sent", False),
]
USERS = ["ann", "bob", "cat", "dan", "eve", "fay", "gus", "hal", "ivy"]  # hal: no notification


def _midnight(at: datetime) -> datetime:
    return datetime.combine(at.date(), time(), UTC)


def _share_by_hand(now: datetime) -> dict[str, float]:
    since = _midnight(now) - timedelta(days=DAYS)  # the README's definition of a window
    counts: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for user, at, status, opened in _NOTIFICATIONS:
        if status == "sent" and _AT[at] >= since:
            counts[user][0] += 1
            counts[user][1] += opened
    return {user: opened / sent for user, (sent, opened) in counts.items()}


@pytest.fixture
async def rates(store: Store) -> Store:
    for user in USERS:
        await store.upsert_user(User(id=user))
    for i, (user, at, status, opened) in enumerate(_NOTIFICATIONS):
        nid = f"n{i}"
        await record(store, nid, user_id=user, status=NotificationStatus.SENDING)
        await _set(store, nid, created_at=_AT[at])
        if opened:
            await _open(store, nid, "1")
        await record(store, nid, user_id=user, status=NotificationStatus(status))
    await _exact(store)
    return store


async def _members(store: Store, name: str, now: datetime) -> list[str]:
    ids: list[str] = []
    after = None
    while page := await store.segment_page(name, after, 3, now=now):
        ids += page
        after = page[-1]
    return ids


@pytest.mark.parametrize(
    "now",
    [
        NOW,  # afternoon
        _midnight(NOW),  # the first moment of the day: the same window
        _midnight(NOW) - timedelta(microseconds=1),  # the day before's last: a day earlier
        _midnight(NOW) + timedelta(days=1, microseconds=-1),  # the day's last: the same window
        _midnight(NOW) + timedelta(days=1),  # the next day: the first day leaves the window
    ],
)
async def test_count_and_pages_select_the_users_counted_by_hand(
    rates: Store, now: datetime
) -> None:
    shares = _share_by_hand(now)
    for i, (op, value) in enumerate(
        [("gt", 0.5), ("gte", 0.5), ("lt", 0.5), ("lte", 0.5), ("gte", 1), ("lte", 0)]
    ):
        rule = {"field": "engagement.rate", "op": op, "value": value, "days": DAYS}
        name = f"rate{i}"
        await rates.create_segment(SegmentDefinition(name=name, rules=rule))
        compare = {
            "gt": float.__gt__,
            "gte": float.__ge__,
            "lt": float.__lt__,
            "lte": float.__le__,
        }[op]
        expected = sorted(u for u, share in shares.items() if compare(share, float(value)))
        assert await _members(rates, name, now) == expected, (rule, now)
        assert await rates.segment_count(name, now=now) == len(expected), (rule, now)
    # Combined with another condition, the count still takes the users' own rows only.
    await rates.create_segment(
        SegmentDefinition(
            name="rate_not_ann",
            rules={
                "all": [
                    {"field": "engagement.rate", "op": "gt", "value": 0.5, "days": DAYS},
                    {"field": "id", "op": "ne", "value": "ann"},
                ]
            },
        )
    )
    expected = sorted(u for u, share in shares.items() if share > 0.5 and u != "ann")
    assert await rates.segment_count("rate_not_ann", now=now) == len(expected)
    assert await _members(rates, "rate_not_ann", now) == expected


async def test_every_window_of_a_rule_starts_at_a_utc_midnight(store: Store) -> None:
    """`days` days back from today's UTC midnight, whatever the time of day and whatever the
    condition: a user's creation, an open, a rate."""
    start = _midnight(NOW) - timedelta(days=DAYS)
    for user, at in (("in", start), ("out", start - timedelta(microseconds=1))):
        await store.upsert_user(User(id=user))
        async with store.engine.begin() as conn:
            await conn.execute(update(UserRow).where(UserRow.id == user).values(created_at=at))
        await record(store, user, user_id=user, status=NotificationStatus.SENDING)
        await _set(store, user, created_at=at)
        await _open(store, user, "1", at)
        await record(store, user, user_id=user, status=NotificationStatus.SENT)
    rules = {
        "created": {"field": "created_at", "op": "within_days", "value": DAYS},
        "opened": {"field": "engagement.opened", "op": "gte", "value": 1, "days": DAYS},
        "rate": {"field": "engagement.rate", "op": "gte", "value": 1, "days": DAYS},
    }
    for name, rule in rules.items():
        await store.create_segment(SegmentDefinition(name=name, rules=rule))
    day_end = _midnight(NOW) + timedelta(days=1, microseconds=-1)
    for now, members in ((_midnight(NOW), ["in"]), (day_end, ["in"]), (NOW, ["in"])):
        for name in rules:
            assert await _members(store, name, now) == members, (name, now)
            assert await store.segment_count(name, now=now) == len(members), (name, now)
    for name in rules:  # a day later, the first day has left the window
        assert await _members(store, name, day_end + timedelta(microseconds=1)) == [], name
    # A day earlier, the day before it is in.
    earlier = _midnight(NOW) - timedelta(microseconds=1)
    for name in rules:
        assert await _members(store, name, earlier) == ["in", "out"], name
        assert await store.segment_count(name, now=earlier) == 2, name


async def test_upgrading_fills_the_rollup_from_the_notifications(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    cfg = alembic_config()
    cfg.set_main_option("sqlalchemy.url", f"sqlite+aiosqlite:///{path}")
    await asyncio.to_thread(command.upgrade, cfg, "0018")
    sync = create_engine(f"sqlite:///{path}")
    rows = [
        ("n1", "ann", "sent", "2026-01-01 23:59:59.999999", "2026-01-02 08:00:00.000000"),
        ("n2", "ann", "sent", "2026-01-02 00:00:00.000000", None),
        ("n3", "ann", "sent", "2026-01-02 10:00:00", "2026-01-02 11:00:00"),
        ("n4", "ann", "failed", "2026-01-02 10:00:00", None),
        ("n5", "bob", "sending", "2026-01-02 10:00:00", None),
        ("n6", "bob", "sent", "2026-01-03 10:00:00", "2026-01-03 10:00:01"),
    ]
    with sync.begin() as conn:
        for nid, user, status, created, opened in rows:
            conn.execute(
                text(
                    "INSERT INTO notifications (id, user_id, template_id, template_version,"
                    " priority, status, created_at, updated_at, last_opened_at) VALUES (:id,"
                    " :user, 't', 1, 'medium', :status, :created, :created, :opened)"
                ),
                {"id": nid, "user": user, "status": status, "created": created, "opened": opened},
            )
    sync.dispose()
    store = await Store.open(f"sqlite+aiosqlite:///{path}")
    try:
        day = (datetime(2026, 1, 1).date() - EPOCH).days
        assert await _exact(store) == {
            ("ann", day): (1, 1),
            ("ann", day + 1): (2, 1),
            ("bob", day + 2): (1, 1),
        }
        # And the triggers run from there.
        await record(store, "n5", user_id="bob", status=NotificationStatus.SENT)
        await _exact(store)
    finally:
        await store.close()
