"""What send-time optimisation and channel recommendation read (Store.engagement_hours,
population_engagement_hours, channel_engagement), on SQLite and PostgreSQL, and
plan_from_store putting them together."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from tidings import send_time
from tidings.frequency import FrequencyCaps
from tidings.models import (
    Channel,
    ChannelResult,
    DeliveryStatus,
    EngagementEvent,
    EngagementType,
    NotificationStatus,
    Preferences,
    Priority,
    QuietHours,
    TemplateContent,
    TemplateDefinition,
    User,
)
from tidings.planning import PlanRequest, plan_from_store
from tidings.store import Store

T0 = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)  # a Monday


async def _notification(
    store: Store, nid: str, user: str, channel: Channel, at: datetime, opened: list[datetime]
) -> None:
    await store.upsert_notification(
        notification_id=nid,
        user_id=user,
        template_id="digest",
        template_version=1,
        priority=Priority.MEDIUM,
        status=NotificationStatus.SENT,
        channels=[ChannelResult(channel=channel, status=DeliveryStatus.SENT, at=at)],
    )
    for i, when in enumerate(opened):
        await store.record_engagement(
            EngagementEvent(
                notification_id=nid,
                type=EngagementType.OPENED if i == 0 else EngagementType.CLICKED,
                channel=channel,
                at=when,
                event_id=f"{nid}-{i}",
            )
        )


async def _digest_request(
    store: Store, user_id: str, optimal_latest: datetime | None = None
) -> PlanRequest:
    """A plan request for a new `digest` template on email and in-app."""
    template = await store.add_template_version(
        TemplateDefinition(
            id="digest",
            channels=[Channel.EMAIL, Channel.IN_APP],
            content=TemplateContent(subject="s", text="t"),
        )
    )
    return PlanRequest(
        notification_id="n",
        user_id=user_id,
        template_id="digest",
        template_version=template.version,
        priority=Priority.MEDIUM,
        not_before=T0,
        optimal_latest=optimal_latest,
    )


async def test_engagement_hours_are_counted_per_utc_hour(store: Store) -> None:
    await store.upsert_user(User(id="ada", timezone="Asia/Kolkata"))
    await store.upsert_user(User(id="bob", timezone="UTC"))
    at = T0 - timedelta(days=7)
    await _notification(
        store,
        "n1",
        "ada",
        Channel.EMAIL,
        at,
        [at + timedelta(minutes=5), at + timedelta(minutes=50)],
    )
    await _notification(store, "n2", "ada", Channel.EMAIL, at, [at + timedelta(hours=3)])
    await _notification(store, "old", "ada", Channel.EMAIL, at, [T0 - timedelta(days=200)])
    await _notification(store, "n3", "bob", Channel.EMAIL, at, [at])
    # A dismissal is not engagement.
    await store.record_engagement(
        EngagementEvent(notification_id="n2", type=EngagementType.DISMISSED, at=at)
    )
    since = T0 - send_time.HISTORY
    hours = sorted(await store.engagement_hours("ada", since=since))
    quarter = timedelta(minutes=15)
    assert hours == [(at, 1), (at + 3 * quarter, 1), (at + timedelta(hours=3), 1)]
    population = sorted(await store.population_engagement_hours(since=since))
    assert population == [
        ("Asia/Kolkata", at, 1),
        ("Asia/Kolkata", at + 3 * quarter, 1),
        ("Asia/Kolkata", at + timedelta(hours=3), 1),
        ("UTC", at, 1),
    ]
    # 08:05 UTC is 13:35 in Kolkata, 08:50 is 14:20, 11:00 is 16:30 (a Monday).
    local = send_time.local_histogram(hours, "Asia/Kolkata")
    assert [h for h, c in enumerate(local) if c] == [13, 14, 16]
    everyone = await store.population_histogram(since=since)
    assert everyone[13] == everyone[14] == everyone[16] == 1 and everyone[8] == 1  # UTC user


async def test_channel_engagement_counts_sends_and_engaged_sends(store: Store) -> None:
    await store.upsert_user(User(id="ada"))
    at = T0 - timedelta(days=3)
    for i in range(4):
        await _notification(store, f"e{i}", "ada", Channel.EMAIL, at, [at] if i == 0 else [])
    await _notification(store, "p0", "ada", Channel.PUSH, at, [at, at])  # two events, one send
    await _notification(store, "gone", "ada", Channel.PUSH, T0 - timedelta(days=400), [])
    counts = await store.channel_engagement("ada", since=T0 - timedelta(days=90))
    assert counts == {Channel.EMAIL: (4, 1), Channel.PUSH: (1, 1)}


async def test_plan_from_store_chooses_the_hour_then_applies_quiet_hours(store: Store) -> None:
    await store.upsert_user(User(id="ada", email="ada@example.com", timezone="Europe/Berlin"))
    # Ada opens on Mondays at 22:00 Berlin (21:00 UTC in winter), for six weeks.
    for k in range(1, 7):
        at = datetime(2026, 11, 30, 21, 10, tzinfo=UTC) - timedelta(weeks=k)
        await _notification(store, f"h{k}", "ada", Channel.EMAIL, at, [at])
    request = await _digest_request(store, "ada", optimal_latest=T0 + timedelta(hours=24))
    plan = await plan_from_store(store, request, configured=set(Channel), caps=FrequencyCaps())
    offset = send_time.minute_offset("ada")
    assert plan.send_at == datetime(2026, 11, 30, 21, offset, tzinfo=UTC)
    assert plan.send_time_reason is not None and "user's best hour" in plan.send_time_reason
    assert plan.deferred_reason == plan.send_time_reason
    # Too few sends per channel to rank: the template's order, and why.
    assert plan.channels == [Channel.EMAIL, Channel.IN_APP]
    assert plan.channel_reason is not None and plan.channel_reason.startswith("template order")

    # Quiet hours from 21:30 Berlin: the chosen 22:xx is held until they end at 07:00.
    await store.set_preferences(
        Preferences(user_id="ada", quiet_hours=QuietHours(start="21:30", end="07:00"))
    )
    plan = await plan_from_store(store, request, configured=set(Channel), caps=FrequencyCaps())
    assert plan.send_at == datetime(2026, 12, 1, 6, 0, tzinfo=UTC)
    assert plan.deferred_reason == "quiet hours until 07:00 Europe/Berlin"
    assert plan.send_time_reason is not None  # still says what was chosen first


async def test_plan_from_store_orders_channels_by_engagement_unless_the_user_chose(
    store: Store,
) -> None:
    """The engagement is read with the user, in the plan's one read; a user who switched one of
    the template's channels keeps the template's order."""
    await store.upsert_user(User(id="ines", email="ines@example.com"))
    for d in range(1, 7):
        at = T0 - timedelta(days=d)
        await _notification(store, f"app{d}", "ines", Channel.IN_APP, at, [at])
        await _notification(store, f"mail{d}", "ines", Channel.EMAIL, at, [])
    request = await _digest_request(store, "ines")
    plan = await plan_from_store(store, request, configured=set(Channel), caps=FrequencyCaps())
    assert plan.channels == [Channel.IN_APP, Channel.EMAIL]
    assert plan.channel_reason == "ordered by the user's engagement: in_app 6/6, email 0/6"
    await store.set_preferences(Preferences(user_id="ines", channels={Channel.EMAIL: True}))
    plan = await plan_from_store(store, request, configured=set(Channel), caps=FrequencyCaps())
    assert plan.channels == [Channel.EMAIL, Channel.IN_APP]
