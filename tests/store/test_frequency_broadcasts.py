"""Frequency caps count broadcasts as well as single notifications, on SQLite and PostgreSQL:
a user capped by a broadcast waits for (or loses) the next single notification, and a user
capped by single notifications waits in the next broadcast."""

from __future__ import annotations

from datetime import timedelta

from tidings import broadcasts, planning
from tidings.broadcast_models import Outcome, RecipientStatus, UserIdsAudience
from tidings.frequency import WINDOW, CapPolicy, FrequencyCaps
from tidings.models import (
    Channel,
    ChannelResult,
    DeliveryStatus,
    NotificationStatus,
    Preferences,
    Priority,
    Template,
    TemplateContent,
    TemplateDefinition,
    User,
)
from tidings.store import Store
from tidings.store.base import utcnow

CAPS = FrequencyCaps({"marketing": 1})


async def _setup(store: Store) -> Template:
    for user_id in ("u1", "u2", "u3"):
        await store.upsert_user(User(id=user_id, email=f"{user_id}@example.com"))
    return await store.add_template_version(
        TemplateDefinition(
            id="promo",
            category="marketing",
            channels=[Channel.EMAIL, Channel.IN_APP],
            content=TemplateContent(subject="Hi", text="Hello"),
        )
    )


async def _broadcast(
    store: Store, broadcast_id: str, outcomes: dict[str, RecipientStatus], priority: Priority
) -> None:
    await store.create_broadcast(
        broadcast_id=broadcast_id,
        template_id="promo",
        template_version=1,
        audience=UserIdsAudience(user_ids=list(outcomes)),
        channels=None,
        priority=priority,
    )
    for channel in (Channel.EMAIL, Channel.IN_APP):  # two channels: still one send
        await store.record_recipients(
            broadcast_id, channel, 0, [Outcome(u, s) for u, s in outcomes.items()]
        )


def _single_plan(user_id: str, template: Template, recent: planning.RecentSends) -> planning.Plan:
    now = utcnow()
    return planning.plan(
        request=planning.PlanRequest(
            notification_id=f"single-{user_id}",
            user_id=user_id,
            template_id="promo",
            template_version=1,
            priority=Priority.MEDIUM,
            not_before=now,
            requested_channels=None,
        ),
        user=User(id=user_id, email=f"{user_id}@example.com"),
        template=template,
        preferences=Preferences(user_id=user_id),
        has_devices=False,
        configured=[Channel.EMAIL, Channel.IN_APP],
        caps=CAPS,
        recent=recent,
    )


async def test_a_broadcast_caps_the_following_single_notification(store: Store) -> None:
    template = await _setup(store)
    before = utcnow()
    await _broadcast(
        store,
        "bc1",
        {
            "u1": RecipientStatus.DELIVERED,
            "u2": RecipientStatus.SUPPRESSED,
            "u3": RecipientStatus.DEFERRED,  # counted by its own notification, not here
        },
        Priority.MEDIUM,
    )
    await _broadcast(store, "urgent", {"u2": RecipientStatus.SENT}, Priority.CRITICAL)
    since = utcnow() - WINDOW
    count, earliest = await store.recent_sends(user_id="u1", category="marketing", since=since)
    assert count == 1 and earliest is not None and earliest >= before
    assert await store.recent_sends(user_id="u2", category="marketing", since=since) == (0, None)
    assert await store.recent_sends(user_id="u3", category="marketing", since=since) == (0, None)
    assert await store.recent_sends(
        user_id="u1", category="marketing", since=utcnow() + timedelta(seconds=1)
    ) == (0, None)

    deferred = _single_plan("u1", template, planning.RecentSends(count, earliest))
    assert deferred.send_at == earliest + WINDOW
    assert deferred.deferred_reason is not None and "frequency cap" in deferred.deferred_reason
    suppressed = planning.plan(
        request=planning.PlanRequest(
            notification_id="single-u1",
            user_id="u1",
            template_id="promo",
            template_version=1,
            priority=Priority.MEDIUM,
            not_before=utcnow(),
            requested_channels=None,
        ),
        user=User(id="u1", email="u1@example.com"),
        template=template,
        preferences=Preferences(user_id="u1"),
        has_devices=False,
        configured=[Channel.EMAIL, Channel.IN_APP],
        caps=FrequencyCaps({"marketing": 1}, CapPolicy.SUPPRESS),
        recent=planning.RecentSends(count, earliest),
    )
    assert not suppressed.channels and set(suppressed.suppressed) == {
        Channel.EMAIL,
        Channel.IN_APP,
    }


async def test_single_notifications_and_other_broadcasts_cap_a_broadcast(store: Store) -> None:
    template = await _setup(store)
    sent_at = utcnow() - timedelta(minutes=20)
    await store.upsert_notification(
        notification_id="n1",
        user_id="u1",
        template_id="promo",
        template_version=1,
        priority=Priority.LOW,
        status=NotificationStatus.SENT,
        channels=[ChannelResult(channel=Channel.EMAIL, status=DeliveryStatus.SENT, at=sent_at)],
    )
    await _broadcast(store, "earlier", {"u2": RecipientStatus.SENT}, Priority.MEDIUM)
    # The broadcast being planned has already reached u3 (a page planned twice): its own
    # send must not cap it, or the recorded delivery would be overwritten as deferred.
    await _broadcast(store, "now", {"u3": RecipientStatus.DELIVERED}, Priority.MEDIUM)
    now = utcnow()
    reads = await store.page_reads(
        ["u1", "u2", "u3"], category="marketing", since=now - WINDOW, broadcast_id="now"
    )
    assert reads.recent["u1"] == (1, sent_at)
    assert reads.recent["u2"][0] == 1
    assert "u3" not in reads.recent
    plan = broadcasts.plan_page(
        broadcast_id="now",
        recipients=broadcasts.recipients_from(reads, caps_apply=True),
        template=template,
        channels=[Channel.IN_APP],
        priority=Priority.MEDIUM,
        now=now,
        configured=[Channel.EMAIL, Channel.IN_APP],
        caps=CAPS,
    )
    assert plan.sendable == {Channel.IN_APP: ["u3"]}
    deferred = {user_id: until for user_id, _, until, _ in plan.deferred}
    assert deferred["u1"] == sent_at + WINDOW
    assert set(deferred) == {"u1", "u2"}
