"""Planning a broadcast page: the single notification's policy applied to each recipient, with
the counters and the per-channel lists the batches take (pure, no database)."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

from tidings.broadcasts import PagePlan, PageRecipient, plan_page
from tidings.frequency import CapPolicy, FrequencyCaps
from tidings.models import (
    Channel,
    Preferences,
    Priority,
    QuietHours,
    Template,
    TemplateContent,
    User,
)
from tidings.planning import RecentSends

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
TEMPLATE = Template(
    id="news",
    category="marketing",
    channels=[Channel.EMAIL, Channel.IN_APP],
    content=TemplateContent(subject="Hi", text="Hello"),
    version=1,
)


def recipient(
    user_id: str, *, email: bool = True, recent: int = 0, **prefs: object
) -> PageRecipient:
    return PageRecipient(
        user=User(id=user_id, email=f"{user_id}@example.com" if email else None),
        preferences=Preferences.model_validate({"user_id": user_id, **prefs}),
        has_devices=False,
        recent=RecentSends(recent, NOW - timedelta(minutes=30) if recent else None),
    )


def test_sendable_suppressed_and_deferred_with_counters() -> None:
    page = [
        recipient("a"),
        recipient("b", channels={"email": False}),
        recipient("c", email=False),
        recipient("d", quiet_hours=QuietHours(start=time(11), end=time(13))),
    ]
    plan = plan_page(
        broadcast_id="bc",
        recipients=page,
        template=TEMPLATE,
        channels=None,
        priority=Priority.MEDIUM,
        now=NOW,
        configured=[Channel.EMAIL, Channel.IN_APP],
        caps=FrequencyCaps(),
    )
    assert plan.sendable == {Channel.EMAIL: ["a"], Channel.IN_APP: ["a", "b", "c"]}
    assert {(u, c) for u, c, _ in plan.suppressed} == {("b", Channel.EMAIL), ("c", Channel.EMAIL)}
    [(user, channels, until, reason)] = plan.deferred
    assert (user, channels, until) == (
        "d",
        [Channel.EMAIL, Channel.IN_APP],
        NOW + timedelta(hours=1),
    )
    assert "quiet hours" in reason
    email, in_app = plan.counters.channels[Channel.EMAIL], plan.counters.channels[Channel.IN_APP]
    assert plan.counters.recipients == 4
    assert (email.targeted, email.suppressed, email.deferred) == (4, 2, 1)
    assert (in_app.targeted, in_app.suppressed, in_app.deferred) == (4, 0, 1)


def test_frequency_caps_defer_or_suppress_and_critical_ignores_them() -> None:
    page = [recipient("busy", recent=3), recipient("calm", recent=1)]

    def plan(priority: Priority, caps: FrequencyCaps) -> PagePlan:
        return plan_page(
            broadcast_id="bc",
            recipients=page,
            template=TEMPLATE,
            channels=[Channel.EMAIL],
            priority=priority,
            now=NOW,
            configured=[Channel.EMAIL],
            caps=caps,
        )

    deferred = plan(Priority.LOW, FrequencyCaps({"marketing": 2}))
    assert deferred.sendable == {Channel.EMAIL: ["calm"]}
    assert [(u, until) for u, _, until, _ in deferred.deferred] == [
        ("busy", NOW + timedelta(minutes=30))
    ]
    suppressed = plan(Priority.LOW, FrequencyCaps({"marketing": 2}, CapPolicy.SUPPRESS))
    assert [u for u, _, _ in suppressed.suppressed] == ["busy"]
    critical = plan(Priority.CRITICAL, FrequencyCaps({"marketing": 2}))
    assert critical.sendable == {Channel.EMAIL: ["busy", "calm"]}
