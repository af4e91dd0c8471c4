"""send_at="optimal" on the time-skipping server with the real activities and store: the run
waits on its own timer until the user's best hour in their timezone, survives a worker restart
during the wait, then sends; and the channel order it planned, with the reason."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.notification import NotificationActivities
from starter.client import Tidings
from tests.support import RecordingTidings, make_settings, running_stack
from tidings import personalise
from tidings.errors import InvalidRequest
from tidings.models import (
    Channel,
    ChannelResult,
    DeliveryStatus,
    EngagementEvent,
    EngagementType,
    NotificationResult,
    NotificationStatus,
    Preferences,
    Priority,
    QuietHours,
)
from tidings.send_time import minute_offset
from tidings.store import Store
from workflows.notification import NotificationWorkflow
from workflows.queues import workflow_id, workflow_queue

TEMPLATE = {
    "id": "digest",
    "channels": ["email", "in_app"],
    "content": {"subject": "Your digest", "text": "{{ greeting }}, {{ user.id }}"},
}


async def _history_at(
    store: Store, user_id: str, when: list[datetime], *, channel: Channel = Channel.EMAIL
) -> None:
    """Past notifications to `user_id`, sent on `channel` and opened there at `when`."""
    for i, at in enumerate(when):
        nid = f"past-{user_id}-{channel.value}-{i}"
        await store.upsert_notification(
            notification_id=nid,
            user_id=user_id,
            template_id="digest",
            template_version=1,
            priority=Priority.MEDIUM,
            status=NotificationStatus.SENT,
            channels=[ChannelResult(channel=channel, status=DeliveryStatus.SENT, at=at)],
        )
        await store.record_engagement(
            EngagementEvent(notification_id=nid, type=EngagementType.OPENED, channel=channel, at=at)
        )


def _expected(now: datetime, ahead: timedelta, timezone: str, user_id: str) -> datetime:
    """The start of the local hour `ahead` from now, plus the user's minute offset."""
    local = (now + ahead).astimezone(ZoneInfo(timezone))
    hour = local.replace(minute=minute_offset(user_id), second=0, microsecond=0)
    return hour.astimezone(ZoneInfo("UTC"))


async def _planned(
    tidings: Tidings, env: WorkflowEnvironment, notification_id: str
) -> NotificationResult:
    """The run's status once its first plan has landed."""
    status = await tidings.status(notification_id)
    for _ in range(50):
        if status.send_time_reason is not None:
            break
        await env.sleep(timedelta(seconds=1))
        status = await tidings.status(notification_id)
    return status


async def _timer_summaries(tidings: Tidings, notification_id: str) -> list[str]:
    handle = tidings.temporal.get_workflow_handle(workflow_id(notification_id))
    history = await handle.fetch_history()
    return [
        e.user_metadata.summary.data.decode()
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_TIMER_STARTED
        and e.user_metadata.HasField("summary")
    ]


async def test_optimal_waits_for_the_users_hour_through_a_worker_restart(
    time_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    zone = "Asia/Kolkata"  # +5:30, no DST: the expected hour does not depend on the date
    ahead = timedelta(hours=10)
    settings = make_settings(tmp_path)
    store = await Store.open(settings.resolved_database_url)
    tidings = RecordingTidings(settings, store, time_env.client)
    tidings.started = []
    # The first worker plans and starts the wait, then goes away. It keeps no workflow cache:
    # the time-skipping server would hold the next task for its sticky queue forever.
    activities = NotificationActivities(store, {})
    first = Worker(
        time_env.client,
        task_queue=workflow_queue(settings.task_queue, Priority.MEDIUM),
        workflows=[NotificationWorkflow],
        activities=[
            activities.plan_delivery,
            activities.record_notification,
            activities.record_channel,
            activities.record_engagement,
        ],
        max_cached_workflows=0,
    )
    try:
        async with first:
            await tidings.upsert_user({"id": "kim", "email": "kim@example.com", "timezone": zone})
            await tidings.register_template(TEMPLATE)
            now = await time_env.get_current_time()
            # Opened at the hour of the week of 10 hours from now, on each of the last 6 weeks.
            await _history_at(store, "kim", [now + ahead - timedelta(weeks=k) for k in range(1, 7)])
            ref = await tidings.notify(
                user_id="kim",
                template_id="digest",
                channels=["email"],
                send_at="optimal",
                optimal_within=timedelta(hours=24),
            )
            expected = _expected(now, ahead, zone, "kim")
            status = await _planned(tidings, time_env, ref.notification_id)
            assert status.status is NotificationStatus.SCHEDULED
            assert status.send_at == expected
            assert status.send_time_reason is not None
            assert "user's best hour" in status.send_time_reason
            assert zone in status.send_time_reason
            assert status.reason == status.send_time_reason
            summaries = await _timer_summaries(tidings, ref.notification_id)
            assert any("optimal send time" in s for s in summaries), summaries
            stored = await store.get_notification(ref.notification_id)
            assert stored is not None and stored.send_at == expected
    finally:
        await store.close()

    # No worker for a while, then a new one on the same queue and database.
    await time_env.sleep(ahead / 2)
    task_queue = settings.task_queue
    async with running_stack(time_env.client, tmp_path, task_queue=task_queue) as second:
        second.tidings.started.append(workflow_id(ref.notification_id))
        # Read from the database: a query now would go to the stopped worker's sticky queue.
        stored = await second.store.get_notification(ref.notification_id)
        assert stored is not None and stored.status is NotificationStatus.SCHEDULED
        assert second.sink.messages == []
        await time_env.sleep(ahead)
        for _ in range(300):
            stored = await second.store.get_notification(ref.notification_id)
            assert stored is not None
            if stored.status is NotificationStatus.SENT:
                break
            await asyncio.sleep(0.1)
        assert stored.status is NotificationStatus.SENT
        (email,) = stored.channels
        assert email.at is not None and email.at >= expected
        assert email.at - expected < timedelta(minutes=5)
        result = await second.tidings.status(ref.notification_id)
        assert result.send_time_reason == status.send_time_reason
        (mail,) = second.sink.messages
        # The greeting is for Kim's clock when the email went out, not this host's.
        greeting = personalise.greeting("en", expected.astimezone(ZoneInfo(zone)))
        assert (mail.body() or "").startswith(f"{greeting}, kim")


async def test_a_new_user_gets_the_populations_hour(
    time_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    async with running_stack(time_env.client, tmp_path) as stack:
        await stack.add_user("old", timezone="UTC")
        await stack.add_user("new", timezone="America/New_York")
        await stack.tidings.register_template(TEMPLATE)
        now = await time_env.get_current_time()
        # Everyone else (one user here) opens 5 hours from now, UTC; the new user has nothing.
        await _history_at(stack.store, "old", [now + timedelta(hours=5) - timedelta(weeks=1)] * 1)
        ref = await stack.tidings.notify(
            user_id="new", template_id="digest", channels=["email"], send_at="optimal"
        )
        status = await _planned(stack.tidings, time_env, ref.notification_id)
        assert status.send_time_reason is not None
        assert "everyone's best hour" in status.send_time_reason
        # Everyone's best hour is a local hour: the one "old" has in UTC, on New York's clock.
        wall = (now + timedelta(hours=5)).replace(minute=minute_offset("new"), second=0)
        wall = wall.replace(microsecond=0, tzinfo=ZoneInfo("America/New_York"))
        assert status.send_at == wall.astimezone(ZoneInfo("UTC"))
        await stack.tidings.cancel(ref.notification_id)


async def test_channels_ordered_by_the_users_engagement(
    time_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    async with running_stack(time_env.client, tmp_path) as stack:
        await stack.add_user("ines")
        await stack.tidings.register_template(TEMPLATE)
        now = await time_env.get_current_time()
        past = [now - timedelta(days=d) for d in range(1, 7)]
        await _history_at(stack.store, "ines", past, channel=Channel.IN_APP)  # 6/6 opened
        for i, at in enumerate(past):  # 6 emails, none opened
            await stack.store.upsert_notification(
                notification_id=f"unopened-{i}",
                user_id="ines",
                template_id="digest",
                template_version=1,
                priority=Priority.MEDIUM,
                status=NotificationStatus.SENT,
                channels=[ChannelResult(channel=Channel.EMAIL, status=DeliveryStatus.SENT, at=at)],
            )
        ref = await stack.tidings.notify(user_id="ines", template_id="digest")
        result = await stack.tidings.wait_sent(ref.notification_id)
        assert [c.channel for c in result.channels] == [Channel.IN_APP, Channel.EMAIL]
        assert result.channel_reason == "ordered by the user's engagement: in_app 6/6, email 0/6"


async def test_quiet_hours_set_during_the_wait_still_hold_the_send(
    time_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    async with running_stack(time_env.client, tmp_path) as stack:
        await stack.add_user("qin", timezone="UTC")
        await stack.tidings.register_template(TEMPLATE)
        now = await time_env.get_current_time()
        ahead = timedelta(hours=6)
        await _history_at(stack.store, "qin", [now + ahead - timedelta(weeks=k) for k in (1, 2)])
        ref = await stack.tidings.notify(
            user_id="qin", template_id="digest", channels=["email"], send_at="optimal"
        )
        status = await _planned(stack.tidings, time_env, ref.notification_id)
        chosen = _expected(now, ahead, "UTC", "qin")
        assert status.send_at == chosen
        # While it waits, the user sets quiet hours around the chosen time.
        quiet_end = chosen + timedelta(hours=2)
        await stack.tidings.set_preferences(
            Preferences(
                user_id="qin",
                quiet_hours=QuietHours(
                    start=(chosen - timedelta(minutes=30)).time(), end=quiet_end.time()
                ),
            )
        )
        await time_env.sleep(ahead + timedelta(minutes=30))  # past the chosen time
        held = await stack.tidings.status(ref.notification_id)
        assert held.status is NotificationStatus.SCHEDULED
        assert held.send_at == quiet_end
        assert held.reason == f"quiet hours until {quiet_end:%H:%M} UTC"
        assert held.send_time_reason == status.send_time_reason
        assert stack.sink.messages == []
        await time_env.sleep(timedelta(hours=3))
        result = await stack.tidings.wait_sent(ref.notification_id)
        assert result.status is NotificationStatus.SENT
        (email,) = result.channels
        assert email.at is not None and email.at >= quiet_end


async def test_a_bulk_keeps_its_optimal_window(
    time_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    async with running_stack(time_env.client, tmp_path) as stack:
        await stack.add_user("old", timezone="UTC")
        await stack.add_user("many", timezone="UTC")
        await stack.tidings.register_template(TEMPLATE)
        now = await time_env.get_current_time()
        # Everyone's best hour is 5 hours away, past the bulk's 2-hour window.
        await _history_at(stack.store, "old", [now + timedelta(hours=5) - timedelta(weeks=1)])
        result = await stack.tidings.notify_many(
            ["many"],
            "digest",
            channels=["email"],
            send_at="optimal",
            optimal_within=timedelta(hours=2),
        )
        (ref,) = result.refs
        status = await _planned(stack.tidings, time_env, ref.notification_id)
        # No hour in the window beats another, so it goes in the window's first hour; with the
        # window lost on the way (as it once was) it waited for everyone's hour, 5 hours away.
        assert status.send_time_reason is not None
        assert status.send_at is None or status.send_at <= now + timedelta(hours=2, minutes=1)
        with pytest.raises(InvalidRequest) as refused:
            await stack.tidings.notify_many(
                ["many"], "digest", send_at="optimal", optimal_within=timedelta(days=30)
            )
        assert refused.value.field == "optimal_within"
