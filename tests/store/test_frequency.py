"""Store.recent_sends: what frequency caps count, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from tidings.frequency import CapPolicy, FrequencyCaps
from tidings.models import (
    Channel,
    ChannelResult,
    DeliveryStatus,
    NotificationStatus,
    Priority,
    TemplateContent,
    TemplateDefinition,
)
from tidings.store import Store

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


async def _sent(
    store: Store,
    nid: str,
    *,
    template: str = "promo",
    at: datetime,
    priority: Priority = Priority.LOW,
    status: DeliveryStatus = DeliveryStatus.SENT,
    user: str = "u1",
) -> None:
    await store.upsert_notification(
        notification_id=nid,
        user_id=user,
        template_id=template,
        template_version=1,
        priority=priority,
        status=NotificationStatus.SENT,
        channels=[ChannelResult(channel=Channel.EMAIL, status=status, at=at)],
    )


async def test_counts_sends_in_the_window_by_category(store: Store) -> None:
    content = TemplateContent(subject="s", text="t")
    for tid, category in (("promo", "marketing"), ("promo2", "marketing"), ("otp", "security")):
        await store.add_template_version(
            TemplateDefinition(id=tid, category=category, channels=["email"], content=content)
        )
    await _sent(store, "old", at=T0 - timedelta(minutes=61))  # outside the window
    await _sent(store, "a", at=T0 - timedelta(minutes=50))
    await _sent(store, "b", template="promo2", at=T0 - timedelta(minutes=10))
    await _sent(store, "crit", at=T0 - timedelta(minutes=5), priority=Priority.CRITICAL)
    await _sent(store, "failed", at=T0 - timedelta(minutes=5), status=DeliveryStatus.FAILED)
    await _sent(store, "otp", template="otp", at=T0 - timedelta(minutes=5))
    await _sent(store, "other-user", at=T0 - timedelta(minutes=5), user="u2")

    since = T0 - timedelta(hours=1)
    count, earliest = await store.recent_sends(user_id="u1", category="marketing", since=since)
    assert (count, earliest) == (2, T0 - timedelta(minutes=50))
    assert earliest is not None and earliest.tzinfo is not None
    assert await store.recent_sends(
        user_id="u1", category="marketing", since=since, exclude="a"
    ) == (1, T0 - timedelta(minutes=10))
    assert await store.recent_sends(user_id="u3", category="marketing", since=since) == (0, None)

    decision = FrequencyCaps({"marketing": 2}).decide(
        category="marketing", count=count, earliest=earliest
    )
    assert not decision.allowed and decision.defer_until == T0 + timedelta(minutes=10)
    suppress = FrequencyCaps({"*": 2}, CapPolicy.SUPPRESS).decide(
        category="marketing", count=count, earliest=earliest
    )
    assert not suppress.allowed and suppress.defer_until is None
    assert (
        FrequencyCaps({"marketing": 3})
        .decide(category="marketing", count=count, earliest=earliest)
        .allowed
    )
