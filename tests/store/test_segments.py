"""Segments on SQLite and PostgreSQL: every field and operator against users built for it,
keyset pages, saved segments, and rules refused with the path of the bad part. Also a user's
engagement profile across a DST change and in a +05:30 timezone."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tidings.models import (
    Channel,
    ChannelResult,
    DeliveryStatus,
    EngagementEvent,
    EngagementType,
    NotificationStatus,
    Preferences,
    Priority,
    User,
)
from tidings.segments import SegmentDefinition, SegmentError, parse_rule
from tidings.store import Store

ALL = {"ann", "bob", "cat", "dan"}


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


async def _notify(
    store: Store, nid: str, user: str, channel: Channel, status: DeliveryStatus
) -> None:
    await store.upsert_notification(
        notification_id=nid,
        user_id=user,
        template_id="welcome",
        template_version=1,
        priority=Priority.MEDIUM,
        status=NotificationStatus.SENT
        if status is not DeliveryStatus.FAILED
        else NotificationStatus.FAILED,
        channels=[ChannelResult(channel=channel, status=status, attempts=1, at=datetime.now(UTC))],
    )


async def _event(
    store: Store,
    nid: str,
    kind: EngagementType,
    at: datetime,
    channel: Channel | None = None,
    key: str = "1",
) -> None:
    await store.record_engagement(
        EngagementEvent(notification_id=nid, type=kind, channel=channel, at=at, event_id=key)
    )


@pytest.fixture
async def people(store: Store) -> Store:
    users = [
        User(
            id="ann",
            email="ann@example.com",
            locale="en",
            timezone="Europe/Berlin",
            attributes={"plan": "pro", "age": 30, "vip": True},
        ),
        User(id="bob", locale="de", attributes={"plan": "free", "age": "unknown"}),
        User(
            id="cat",
            email="cat@example.com",
            locale="en-GB",
            timezone="Asia/Kolkata",
            attributes={"plan": "pro_trial", "age": 45.5},
        ),
        User(id="dan", locale="fr"),
    ]
    for u in users:
        await store.upsert_user(u)
    await store.set_preferences(
        Preferences(user_id="dan", channels={Channel.EMAIL: False, Channel.PUSH: True})
    )
    now = datetime.now(UTC)
    for i in range(3):
        await _notify(store, f"ann{i}", "ann", Channel.EMAIL, DeliveryStatus.DELIVERED)
    await _event(store, "ann0", EngagementType.OPENED, now - timedelta(days=1))
    await _event(
        store, "ann0", EngagementType.OPENED, now - timedelta(hours=2), key="2"
    )  # a repeat
    await _event(store, "ann1", EngagementType.CLICKED, now - timedelta(days=3))
    await _notify(store, "bob0", "bob", Channel.EMAIL, DeliveryStatus.SENT)
    await _event(store, "bob0", EngagementType.DISMISSED, now)  # not engagement
    await _notify(store, "cat0", "cat", Channel.PUSH, DeliveryStatus.DELIVERED)
    await _event(store, "cat0", EngagementType.OPENED, now - timedelta(days=40))
    await _notify(store, "dan0", "dan", Channel.SMS, DeliveryStatus.FAILED)
    return store


CASES: list[tuple[dict[str, Any], set[str]]] = [
    ({"field": "id", "op": "eq", "value": "ann"}, {"ann"}),
    ({"field": "id", "op": "ne", "value": "ann"}, {"bob", "cat", "dan"}),
    ({"field": "id", "op": "in", "value": ["ann", "bob"]}, {"ann", "bob"}),
    ({"field": "id", "op": "not_in", "value": ["ann"]}, {"bob", "cat", "dan"}),
    ({"field": "id", "op": "prefix", "value": "b"}, {"bob"}),
    ({"field": "id", "op": "prefix", "value": "%"}, set()),  # a wildcard is a character
    ({"field": "locale", "op": "prefix", "value": "en"}, {"ann", "cat"}),
    ({"field": "timezone", "op": "in", "value": ["UTC", "Asia/Kolkata"]}, {"bob", "cat", "dan"}),
    ({"field": "timezone", "op": "eq", "value": "Europe/Berlin"}, {"ann"}),
    ({"field": "email", "op": "exists"}, {"ann", "cat"}),
    ({"field": "email", "op": "not_exists"}, {"bob", "dan"}),
    ({"field": "phone", "op": "exists"}, set()),
    ({"field": "created_at", "op": "within_days", "value": 1}, ALL),
    ({"field": "created_at", "op": "after", "value": "2000-01-01T00:00:00Z"}, ALL),
    ({"field": "created_at", "op": "before", "value": "2000-01-01T00:00:00+00:00"}, set()),
    ({"field": "attributes.plan", "op": "eq", "value": "pro"}, {"ann"}),
    ({"field": "attributes.plan", "op": "ne", "value": "pro"}, {"bob", "cat", "dan"}),
    ({"field": "attributes.plan", "op": "in", "value": ["pro", "free"]}, {"ann", "bob"}),
    ({"field": "attributes.plan", "op": "not_in", "value": ["pro", "free"]}, {"cat", "dan"}),
    ({"field": "attributes.plan", "op": "prefix", "value": "pro"}, {"ann", "cat"}),
    ({"field": "attributes.age", "op": "gt", "value": 40}, {"cat"}),
    ({"field": "attributes.age", "op": "gte", "value": 30}, {"ann", "cat"}),
    ({"field": "attributes.age", "op": "lt", "value": 40}, {"ann"}),
    ({"field": "attributes.age", "op": "lte", "value": 45.5}, {"ann", "cat"}),
    ({"field": "attributes.age", "op": "eq", "value": 30}, {"ann"}),
    ({"field": "attributes.age", "op": "eq", "value": "unknown"}, {"bob"}),
    ({"field": "attributes.age", "op": "prefix", "value": "3"}, set()),  # a number, not text
    ({"field": "attributes.vip", "op": "eq", "value": True}, {"ann"}),
    ({"field": "attributes.vip", "op": "eq", "value": False}, set()),
    ({"field": "attributes.vip", "op": "ne", "value": True}, {"bob", "cat", "dan"}),
    ({"field": "attributes.age", "op": "exists"}, {"ann", "bob", "cat"}),
    ({"field": "attributes.age", "op": "not_exists"}, {"dan"}),
    ({"field": "channels.email", "op": "eq", "value": False}, {"dan"}),
    ({"field": "channels.email", "op": "eq", "value": True}, {"ann", "bob", "cat"}),
    ({"field": "channels.push", "op": "eq", "value": True}, ALL),
    ({"field": "engagement.opened", "op": "gte", "value": 1}, {"ann"}),
    ({"field": "engagement.opened", "op": "gte", "value": 2}, {"ann"}),  # a click is an open
    ({"field": "engagement.opened", "op": "gt", "value": 2}, set()),
    ({"field": "engagement.opened", "op": "eq", "value": 0}, {"bob", "cat", "dan"}),
    ({"field": "engagement.opened", "op": "eq", "value": 2}, {"ann"}),
    ({"field": "engagement.opened", "op": "lt", "value": 2}, {"bob", "cat", "dan"}),
    ({"field": "engagement.opened", "op": "lte", "value": 1}, {"bob", "cat", "dan"}),
    ({"field": "engagement.opened", "op": "gte", "value": 1, "days": 60}, {"ann", "cat"}),
    ({"field": "engagement.clicked", "op": "gte", "value": 1}, {"ann"}),
    ({"field": "engagement.converted", "op": "gte", "value": 1}, set()),
    ({"field": "engagement.rate", "op": "gt", "value": 0.5}, {"ann", "cat"}),
    ({"field": "engagement.rate", "op": "lt", "value": 0.5}, {"bob"}),
    ({"field": "engagement.rate", "op": "gte", "value": 1}, {"cat"}),
    ({"field": "engagement.rate", "op": "lte", "value": 0.7}, {"ann", "bob"}),
    (
        {
            "all": [
                {"field": "locale", "op": "prefix", "value": "en"},
                {"field": "email", "op": "exists"},
            ]
        },
        {"ann", "cat"},
    ),
    (
        {
            "any": [
                {"field": "id", "op": "eq", "value": "bob"},
                {"field": "attributes.age", "op": "gt", "value": 40},
            ]
        },
        {"bob", "cat"},
    ),
    (
        {
            "all": [
                {
                    "any": [
                        {"field": "locale", "op": "eq", "value": "fr"},
                        {"field": "locale", "op": "eq", "value": "de"},
                    ]
                },
                {"field": "email", "op": "not_exists"},
            ]
        },
        {"bob", "dan"},
    ),
]


async def _members(store: Store, name: str) -> list[str]:
    ids: list[str] = []
    after = None
    while True:
        page = await store.segment_page(name, after, 2)
        ids += page
        if len(page) < 2:
            return ids
        after = page[-1]


async def test_every_field_and_operator(people: Store) -> None:
    for i, (rules, expected) in enumerate(CASES):
        name = f"s{i}"
        _, created = await people.create_segment(SegmentDefinition(name=name, rules=rules))
        assert created
        ids = await _members(people, name)
        assert ids == sorted(expected), (rules, ids)
        assert await people.segment_count(name) == len(expected), rules


async def test_pages_follow_the_user_id(people: Store) -> None:
    await people.create_segment(
        SegmentDefinition(
            name="every", rules={"field": "created_at", "op": "within_days", "value": 5}
        )
    )
    assert await people.segment_page("every", None, 3) == ["ann", "bob", "cat"]
    assert await people.segment_page("every", "cat", 3) == ["dan"]
    assert await people.segment_page("every", "dan", 3) == []
    with pytest.raises(LookupError, match="segment nope not found"):
        await people.segment_page("nope", None, 3)


async def test_saved_segments_are_listed_kept_and_deleted(store: Store) -> None:
    rules = {"field": "locale", "op": "eq", "value": "en"}
    saved, created = await store.create_segment(SegmentDefinition(name="english", rules=rules))
    assert created and saved.rules == rules
    again, created = await store.create_segment(
        SegmentDefinition(name="english", rules={"field": "locale", "op": "eq", "value": "de"})
    )
    assert not created and again.rules == rules
    assert [s.name for s in await store.list_segments()] == ["english"]
    assert await store.delete_segment("english")
    assert not await store.delete_segment("english")
    assert await store.get_segment("english") is None


BAD: list[tuple[Any, str, str]] = [
    ([], "rules", "give an object"),
    ({"all": []}, "rules.all", "non-empty list"),
    (
        {
            "all": [
                {"field": "id", "op": "eq", "value": "a"},
                {"field": "id", "op": "like", "value": "a"},
            ]
        },
        "rules.all[1].op",
        "unknown operator 'like'",
    ),
    (
        {"any": [{"field": "shoe_size", "op": "eq", "value": 1}]},
        "rules.any[0].field",
        "unknown field 'shoe_size'",
    ),
    (
        {"field": "channels.pigeon", "op": "eq", "value": True},
        "rules.field",
        "unknown channel 'pigeon'",
    ),
    ({"field": "locale", "op": "eq", "value": 3}, "rules.value", "give a string"),
    ({"field": "locale", "op": "in", "value": []}, "rules.value", "needs a list"),
    ({"field": "locale", "op": "in", "value": ["en", 1]}, "rules.value[1]", "give a string"),
    ({"field": "email", "op": "exists", "value": True}, "rules.value", "takes no value"),
    ({"field": "attributes.age", "op": "gt", "value": "10"}, "rules.value", "compares numbers"),
    ({"field": "attributes.x", "op": "eq"}, "rules.value", "needs a value"),
    (
        {"field": "attributes.x", "op": "eq", "value": {"a": 1}},
        "rules.value",
        "string, number or boolean",
    ),
    (
        {"field": "created_at", "op": "after", "value": "2026-01-01T00:00:00"},
        "rules.value",
        "with an offset",
    ),
    (
        {"field": "created_at", "op": "after", "value": "yesterday"},
        "rules.value",
        "not an ISO timestamp",
    ),
    ({"field": "engagement.opened", "op": "gte", "value": 1.5}, "rules.value", "whole number"),
    ({"field": "engagement.rate", "op": "gt", "value": 2}, "rules.value", "between 0 and 1"),
    ({"field": "engagement.opened", "op": "gte", "value": 1, "days": 0}, "rules.days", "1 to 3650"),
    (
        {"field": "locale", "op": "eq", "value": "en", "days": 3},
        "rules.days",
        "engagement fields only",
    ),
    ({"field": "locale", "op": "eq", "value": "en", "weight": 3}, "rules.weight", "unknown key"),
    (
        {"all": [{"field": "id", "op": "eq", "value": "a"}], "any": []},
        "rules.any",
        "unexpected beside 'all'",
    ),
    ({"field": "attributes.a b", "op": "exists"}, "rules.field", "unknown field"),
]


@pytest.mark.parametrize("case", range(len(BAD)))
def test_bad_rules_are_refused_with_the_path(case: int) -> None:
    rules, path, reason = BAD[case]
    with pytest.raises(SegmentError) as caught:
        parse_rule(rules)
    assert caught.value.path == path
    assert reason in caught.value.reason


def test_deep_or_large_rules_are_refused() -> None:
    deep: dict[str, Any] = {"field": "id", "op": "eq", "value": "a"}
    for _ in range(7):
        deep = {"all": [deep]}
    with pytest.raises(SegmentError, match="nest at most"):
        parse_rule(deep)
    many = {"any": [{"field": "id", "op": "eq", "value": str(i)} for i in range(101)]}
    with pytest.raises(ValueError, match="at most 100 conditions"):
        SegmentDefinition(name="big", rules=many)


async def test_a_profile_counts_hours_in_the_users_own_time_across_dst(store: Store) -> None:
    await store.upsert_user(User(id="ann", timezone="Europe/Berlin"))
    await _notify(store, "e1", "ann", Channel.EMAIL, DeliveryStatus.DELIVERED)
    await _notify(store, "e2", "ann", Channel.EMAIL, DeliveryStatus.SENT)
    await _notify(store, "p1", "ann", Channel.PUSH, DeliveryStatus.DELIVERED)
    await _notify(store, "p2", "ann", Channel.PUSH, DeliveryStatus.DELIVERED)
    # Saturday 28 March 2026 08:00 UTC is 09:00 CET; Monday 30 March 08:10 UTC is 10:10 CEST.
    await _event(store, "e1", EngagementType.OPENED, utc("2026-03-28T08:00"), Channel.EMAIL)
    await _event(store, "e2", EngagementType.OPENED, utc("2026-03-30T08:10"), Channel.EMAIL)
    await _event(store, "e2", EngagementType.CLICKED, utc("2026-03-30T08:20"), Channel.EMAIL, "2")
    # Sunday 25 October 2026: 00:30 UTC is 02:30 CEST, 01:30 UTC is 02:30 CET (the hour repeats).
    await _event(store, "p1", EngagementType.OPENED, utc("2026-10-25T00:30"), Channel.PUSH)
    await _event(store, "p1", EngagementType.OPENED, utc("2026-10-25T01:30"), Channel.PUSH, "2")
    await _event(store, "p2", EngagementType.DISMISSED, utc("2026-10-26T01:30"), Channel.PUSH)
    profile = await store.engagement_profile("ann")
    assert profile.hours_of_week == {"0-10": 2, "5-9": 1, "6-2": 2}
    assert profile.best_hours == ["0-10", "6-2", "5-9"]
    assert (profile.notifications, profile.engaged) == (4, 3)
    channels = {c.channel: c for c in profile.channels}
    assert (channels[Channel.EMAIL].sent, channels[Channel.EMAIL].opened) == (2, 2)
    assert (channels[Channel.PUSH].sent, channels[Channel.PUSH].opened) == (2, 1)
    assert channels[Channel.EMAIL].clicked == 1
    assert profile.preferred_channel is Channel.EMAIL
    assert profile.last_engagement == utc("2026-10-25T01:30")


async def test_a_profile_in_a_half_hour_timezone_splits_at_the_local_hour(store: Store) -> None:
    await store.upsert_user(User(id="cat", timezone="Asia/Kolkata"))
    await _notify(store, "k1", "cat", Channel.PUSH, DeliveryStatus.DELIVERED)
    # Thursday 1 October 2026: 10:20 UTC is 15:50 IST, 10:40 UTC is 16:10 IST.
    await _event(store, "k1", EngagementType.OPENED, utc("2026-10-01T10:20"))
    await _event(store, "k1", EngagementType.CLICKED, utc("2026-10-01T10:40"), key="2")
    profile = await store.engagement_profile("cat")
    assert profile.hours_of_week == {"3-15": 1, "3-16": 1}
    assert profile.channels[0].opened == 0  # events without a channel count in no channel
    assert profile.engaged == 1 and profile.preferred_channel is None
    with pytest.raises(LookupError, match="user nobody not found"):
        await store.engagement_profile("nobody")
