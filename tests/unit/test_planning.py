"""The planning policy (tidings.planning): channels, configured providers, fallback order,
quiet-hours deferral, frequency caps; and the reads it needs, against a real SQLite store."""

from __future__ import annotations

from collections.abc import Collection
from datetime import UTC, datetime, time, timedelta

import pytest

from tidings.errors import NotFound
from tidings.frequency import CapPolicy, FrequencyCaps
from tidings.models import (
    Channel,
    ChannelResult,
    DeliveryStatus,
    NotificationStatus,
    Preferences,
    Priority,
    QuietHours,
    Template,
    TemplateContent,
    TemplateDefinition,
    User,
)
from tidings.planning import (
    Plan,
    PlanRequest,
    RecentSends,
    counts_against_cap,
    plan,
    plan_from_store,
)
from tidings.store import Store

NOW = datetime(2026, 3, 4, 12, 0, tzinfo=UTC)  # 12:00 UTC, 13:00 in Paris
TEMPLATE = Template(
    id="promo",
    version=1,
    category="marketing",
    channels=[Channel.EMAIL, Channel.SMS, Channel.IN_APP],
    content=TemplateContent(subject="s", text="t"),
)
USER = User(id="ada", email="ada@example.com", phone="+14155550100", timezone="Europe/Paris")
EVERY = frozenset(Channel)


def request(**overrides: object) -> PlanRequest:
    values: dict[str, object] = {
        "notification_id": "n-1",
        "user_id": USER.id,
        "template_id": TEMPLATE.id,
        "template_version": 1,
        "priority": Priority.MEDIUM,
        "not_before": NOW,
        **overrides,
    }
    return PlanRequest(**values)  # type: ignore[arg-type]


def decide(
    req: PlanRequest | None = None,
    *,
    preferences: Preferences | None = None,
    configured: Collection[Channel] = EVERY,
    caps: FrequencyCaps | None = None,
    recent: RecentSends | None = None,
) -> Plan:
    return plan(
        request=req or request(),
        user=USER,
        template=TEMPLATE,
        preferences=preferences or Preferences(user_id=USER.id),
        has_devices=False,
        configured=configured,
        caps=caps or FrequencyCaps(),
        recent=recent,
    )


def test_sends_now_on_the_templates_channels() -> None:
    result = decide()
    assert result == Plan(
        channels=[Channel.EMAIL, Channel.SMS, Channel.IN_APP], suppressed={}, send_at=NOW
    )


def test_a_channel_without_a_configured_provider_is_suppressed_with_the_reason() -> None:
    result = decide(configured={Channel.EMAIL, Channel.IN_APP})
    assert result.channels == [Channel.EMAIL, Channel.IN_APP]
    assert result.suppressed == {Channel.SMS: "no sms provider is configured"}


def test_fallback_keeps_the_requested_order_minus_first_round_and_unusable_channels() -> None:
    result = decide(
        request(
            requested_channels=[Channel.EMAIL],
            fallback_channels=[Channel.PUSH, Channel.EMAIL, Channel.IN_APP, Channel.SMS],
        ),
        configured={Channel.EMAIL, Channel.IN_APP, Channel.PUSH},
    )
    # push: no device; email: already in the first round; sms: no provider.
    assert result.fallback == [Channel.IN_APP]


def test_quiet_hours_defer_the_send_and_say_until_when_in_the_users_time() -> None:
    quiet = Preferences(user_id=USER.id, quiet_hours=QuietHours(start=time(12), end=time(18)))
    result = decide(preferences=quiet)
    assert result.send_at == datetime(2026, 3, 4, 17, 0, tzinfo=UTC)
    assert result.deferred_reason == "quiet hours until 18:00 Europe/Paris"
    assert result.channels == [Channel.EMAIL, Channel.SMS, Channel.IN_APP]


def test_critical_ignores_quiet_hours_and_caps() -> None:
    quiet = Preferences(user_id=USER.id, quiet_hours=QuietHours(start=time(12), end=time(18)))
    caps = FrequencyCaps({"marketing": 1})
    assert not counts_against_cap(caps, Priority.CRITICAL, "marketing")
    result = decide(
        request(priority=Priority.CRITICAL),
        preferences=quiet,
        caps=caps,
        recent=RecentSends(5, NOW - timedelta(minutes=1)),
    )
    assert (result.send_at, result.deferred_reason) == (NOW, None)


def test_a_cap_reached_defers_until_the_oldest_send_leaves_the_window() -> None:
    caps = FrequencyCaps({"marketing": 2}, CapPolicy.DEFER)
    result = decide(caps=caps, recent=RecentSends(2, NOW - timedelta(minutes=45)))
    assert result.send_at == NOW + timedelta(minutes=15)
    assert result.deferred_reason is not None and "frequency cap" in result.deferred_reason
    assert result.channels  # deferred, not dropped


def test_a_cap_reached_under_suppress_drops_every_channel_and_the_fallback() -> None:
    caps = FrequencyCaps({"marketing": 1}, CapPolicy.SUPPRESS)
    result = decide(
        request(fallback_channels=[Channel.IN_APP], requested_channels=[Channel.EMAIL]),
        caps=caps,
        recent=RecentSends(1, NOW - timedelta(minutes=5)),
    )
    assert (result.channels, result.fallback, result.send_at) == ([], [], NOW)
    assert "frequency cap" in result.suppressed[Channel.EMAIL]


def test_under_the_cap_nothing_changes() -> None:
    caps = FrequencyCaps({"marketing": 3})
    assert decide(caps=caps, recent=RecentSends(2, NOW)) == decide()


# --- the reads, against a real SQLite store ----------------------------------------------------


async def _seed(store: Store) -> None:
    await store.upsert_user(USER)
    await store.add_template_version(
        TemplateDefinition(**TEMPLATE.model_dump(exclude={"version", "created_at"}))
    )


async def test_plan_from_store_reads_preferences_at_send_time(sqlite_store: Store) -> None:
    await _seed(sqlite_store)
    await sqlite_store.set_preferences(Preferences(user_id=USER.id, channels={Channel.SMS: False}))
    result = await plan_from_store(sqlite_store, request(), configured=EVERY, caps=FrequencyCaps())
    assert result.channels == [Channel.EMAIL, Channel.IN_APP]
    assert Channel.SMS in result.suppressed


async def test_plan_from_store_counts_recent_sends_except_this_one(sqlite_store: Store) -> None:
    await _seed(sqlite_store)
    for nid in ("n-1", "n-0"):  # n-1 is the notification being planned: not counted
        await sqlite_store.upsert_notification(
            notification_id=nid,
            user_id=USER.id,
            template_id=TEMPLATE.id,
            template_version=1,
            priority=Priority.LOW,
            status=NotificationStatus.SENT,
            channels=[
                ChannelResult(
                    channel=Channel.EMAIL,
                    status=DeliveryStatus.SENT,
                    at=NOW - timedelta(minutes=30),
                )
            ],
        )
    caps = FrequencyCaps({"marketing": 1}, CapPolicy.DEFER)
    result = await plan_from_store(sqlite_store, request(), configured=EVERY, caps=caps)
    assert result.send_at == NOW + timedelta(minutes=30)
    relaxed = FrequencyCaps({"marketing": 2}, CapPolicy.DEFER)
    assert (
        await plan_from_store(sqlite_store, request(), configured=EVERY, caps=relaxed)
    ).send_at == NOW


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"user_id": "gone"}, "user 'gone' not found"),
        ({"template_version": 9}, "template 'promo version 9' not found"),
    ],
)
async def test_a_user_or_template_deleted_while_waiting_is_not_found(
    sqlite_store: Store, overrides: dict[str, object], message: str
) -> None:
    await _seed(sqlite_store)
    with pytest.raises(NotFound, match=message):
        await plan_from_store(
            sqlite_store, request(**overrides), configured=EVERY, caps=FrequencyCaps()
        )
