"""What NotificationWorkflow shows while it works: each channel recorded the moment it lands,
handlers that work before run() starts, engagement that counts once, and a run that no log
handler can stick. Time-skipping server, real activities, real SQLite, real SMTP and webhook."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
import pytest_asyncio
from temporalio.client import WorkflowHistory
from temporalio.testing import WorkflowEnvironment

from starter.client import Tidings
from tests.support import RecordingTidings, Stack, make_settings, running_stack
from tidings import frequency
from tidings.models import (
    Channel,
    DeliveryStatus,
    NotificationResult,
    NotificationStatus,
    Priority,
)
from tidings.store import Store
from worker.main import build_senders, close_senders, run_workers, workers_for
from workflows import search_attributes as sa
from workflows.notification import IN_APP_WITH_PLAN_PATCH
from workflows.policies import MAX_ENGAGEMENT_EVENTS
from workflows.queues import channel_queue

WELCOME = {"app_name": "MyApp", "user_name": "John"}


@pytest_asyncio.fixture(loop_scope="session")
async def stack(time_env: WorkflowEnvironment, tmp_path: Path) -> AsyncIterator[Stack]:
    async with running_stack(time_env.client, tmp_path) as s:
        await s.seed()
        yield s


async def _until(
    tidings: Tidings, notification_id: str, done: object, within: float = 20.0
) -> NotificationResult:
    """Poll the status query until `done(result)` holds (the run works in real time here)."""
    deadline = asyncio.get_running_loop().time() + within
    while True:
        result = await tidings.status(notification_id)
        if done(result):  # type: ignore[operator]
            return result
        assert asyncio.get_running_loop().time() < deadline, f"never got there: {result}"
        await asyncio.sleep(0.05)


def _by_channel(result: NotificationResult) -> dict[Channel, DeliveryStatus]:
    return {c.channel: c.status for c in result.channels}


async def test_a_retrying_webhook_does_not_hide_the_email_that_went_out(
    stack: Stack, time_env: WorkflowEnvironment
) -> None:
    await stack.add_user("hooked", webhook_url=f"{stack.receiver.url}/hooks/tidings")
    await stack.tidings.register_template(
        {
            "id": "both",
            "category": "updates",
            "channels": ["email", "webhook"],
            "content": {"subject": "Hi {{ n }}", "text": "number {{ n }}"},
            "sample_data": {"n": 0},
        }
    )
    stack.receiver.respond_with(503, times=1000)  # the endpoint is down for a long while
    ref = await stack.tidings.notify(user_id="hooked", template_id="both", data={"n": 1})

    live = await _until(
        stack.tidings,
        ref.notification_id,
        lambda r: _by_channel(r).get(Channel.EMAIL) is DeliveryStatus.SENT,
    )
    assert live.status is NotificationStatus.SENDING
    assert _by_channel(live)[Channel.WEBHOOK] is DeliveryStatus.SENDING
    assert len(stack.sink.messages) == 1
    # The read model has the email's row already, and the webhook's as `sending`.
    stored = await stack.store.get_notification(ref.notification_id)
    assert stored is not None and stored.status is NotificationStatus.SENDING
    assert _by_channel(stored) == {
        Channel.EMAIL: DeliveryStatus.SENT,
        Channel.WEBHOOK: DeliveryStatus.SENDING,
    }
    # ... so the frequency caps count the email that went out.
    count, _ = await stack.store.recent_sends(
        user_id="hooked",
        category="updates",
        since=await time_env.get_current_time() - frequency.WINDOW,
    )
    assert count == 1

    stack.receiver.clear()  # the endpoint recovers; the next retry gets through
    await time_env.sleep(timedelta(minutes=5))
    done = await _until(
        stack.tidings, ref.notification_id, lambda r: r.status is NotificationStatus.SENT
    )
    assert _by_channel(done) == {
        Channel.EMAIL: DeliveryStatus.SENT,
        Channel.WEBHOOK: DeliveryStatus.DELIVERED,
    }
    stored = await stack.store.get_notification(ref.notification_id)
    assert stored is not None and _by_channel(stored) == _by_channel(done)


async def test_reschedule_and_cancel_sent_while_no_worker_polls(
    time_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    """The updates reach the run in its first workflow task, before run() has started."""
    settings = make_settings(tmp_path)
    store = await Store.open(settings.resolved_database_url)
    tidings = RecordingTidings(settings, store, time_env.client)
    tidings.started = []
    try:
        await tidings.upsert_user({"id": "early", "email": "early@example.com"})
        await tidings.register_template(
            {
                "id": "hello",
                "channels": ["email"],
                "content": {"subject": "Hello", "text": "Hello"},
            }
        )
        now = await time_env.get_current_time()
        later, sooner = now + timedelta(days=2), now + timedelta(days=1)
        moved = await tidings.notify(user_id="early", template_id="hello", scheduled_at=later)
        dropped = await tidings.notify(user_id="early", template_id="hello", scheduled_at=later)
        # No worker yet: both updates wait for the first workflow task.
        rescheduling = asyncio.create_task(tidings.reschedule(moved.notification_id, sooner))
        cancelling = asyncio.create_task(tidings.cancel(dropped.notification_id, "changed mind"))
        await asyncio.sleep(1.0)
        assert not rescheduling.done() and not cancelling.done()

        async with httpx.AsyncClient() as http:
            senders = build_senders(settings, store, http)
            stop = asyncio.Event()
            task = asyncio.create_task(
                run_workers(workers_for(settings, time_env.client, store, senders), stop)
            )
            try:
                rescheduled = await asyncio.wait_for(rescheduling, 30)
                cancelled = await asyncio.wait_for(cancelling, 30)
                assert rescheduled.status is NotificationStatus.SCHEDULED
                assert rescheduled.send_at == sooner
                assert cancelled.status is NotificationStatus.CANCELLED
                assert cancelled.reason == "changed mind"
                await tidings.cancel(moved.notification_id)  # leave nothing waiting
            finally:
                stop.set()
                await task
                await close_senders(senders)
    finally:
        await store.close()


async def test_the_same_engagement_counts_once(stack: Stack) -> None:
    ref = await stack.tidings.notify(
        user_id="user_002", template_id="welcome", data=WELCOME, channels=["in_app"]
    )
    await stack.tidings.wait_sent(ref.notification_id)
    for _ in range(5):
        await stack.tidings.engage(ref.notification_id, "opened", channel=Channel.IN_APP)
    for event_id in ("link-a", "link-b", "link-a"):
        await stack.tidings.engage(ref.notification_id, "clicked", event_id=event_id)
    result = await _until(stack.tidings, ref.notification_id, lambda r: len(r.engagement) == 3)
    assert [(e.type.value, e.event_id) for e in result.engagement] == [
        ("opened", None),
        ("clicked", "link-a"),
        ("clicked", "link-b"),
    ]
    await asyncio.sleep(0.5)  # any repeat that would be recorded has been by now
    stored = await stack.store.get_notification(ref.notification_id)
    assert stored is not None and len(stored.engagement) == 3
    assert (await stack.tidings.status(ref.notification_id)).engagement_dropped == 0


class _RaisingHandler(logging.Handler):
    """A handler that cannot run inside the workflow sandbox, as the dev stack's once could not."""

    def emit(self, record: logging.LogRecord) -> None:
        raise RuntimeError("this handler cannot run here")


@pytest.fixture
def raising_log_handler() -> Iterator[None]:
    # On the workflow logger only: the rest of the process may log as it likes.
    handler = _RaisingHandler()
    workflow_logger = logging.getLogger("temporalio.workflow")
    workflow_logger.addHandler(handler)
    try:
        yield
    finally:
        workflow_logger.removeHandler(handler)


@pytest.mark.usefixtures("raising_log_handler")
async def test_engagement_past_the_cap_is_counted_not_logged(stack: Stack) -> None:
    ref = await stack.tidings.notify(
        user_id="user_002", template_id="welcome", data=WELCOME, channels=["in_app"]
    )
    await stack.tidings.wait_sent(ref.notification_id)
    extra = 3
    for i in range(MAX_ENGAGEMENT_EVENTS + extra):
        await stack.tidings.engage(ref.notification_id, "clicked", event_id=f"click-{i}")
    result = await _until(
        stack.tidings, ref.notification_id, lambda r: r.engagement_dropped == extra, within=60
    )
    assert len(result.engagement) == MAX_ENGAGEMENT_EVENTS
    # The run is healthy: it still answers and takes updates' validators, and ends normally.
    await stack.tidings.engage(ref.notification_id, "converted", event_id="beyond")
    later = await _until(
        stack.tidings, ref.notification_id, lambda r: r.engagement_dropped == extra + 1
    )
    assert later.status is NotificationStatus.SENT


async def test_the_last_delivery_records_the_final_status(stack: Stack) -> None:
    """One recording local activity per notification sent on two channels: the plan, which
    records SENDING with each channel's row. Each channel's row is written by its own delivery
    as it lands (FOLDED_RECORDS_PATCH), and the one that lands last writes the final status in
    the same transaction (FINAL_BY_DELIVERY_PATCH), so the run has no final record to make. The
    plan's own local activity delivers in-app (IN_APP_WITH_PLAN_PATCH): only email is an
    activity task on a channel queue, and there is no other local activity."""
    ref = await stack.tidings.notify(
        user_id="user_001", template_id="welcome", data=WELCOME, channels=["email", "in_app"]
    )
    sent = await stack.tidings.wait_sent(ref.notification_id)
    assert _by_channel(sent) == {
        Channel.EMAIL: DeliveryStatus.SENT,
        Channel.IN_APP: DeliveryStatus.DELIVERED,  # in-app lands in the inbox: delivered
    }
    stored = await stack.store.get_notification(ref.notification_id)
    assert stored is not None and stored.status is NotificationStatus.SENT
    assert _by_channel(stored) == _by_channel(sent)
    handle = stack.tidings.temporal.get_workflow_handle(f"notification/{ref.notification_id}")
    history = await handle.fetch_history()
    markers = [
        e.marker_recorded_event_attributes
        for e in history.events
        if e.HasField("marker_recorded_event_attributes")
    ]
    names = [m.marker_name for m in markers]
    assert names.count("core_patch") == 1, names  # one marker stands for every patch
    local = [
        json.loads(m.details["data"].payloads[0].data)["activity_type"]
        for m in markers
        if m.marker_name == "core_local_activity"
    ]
    assert local == ["plan_delivery"], local
    patch = json.loads(markers[names.index("core_patch")].details["patch-data"].payloads[0].data)
    assert patch["id"] == IN_APP_WITH_PLAN_PATCH
    queued = [
        e.activity_task_scheduled_event_attributes.task_queue.name
        for e in history.events
        if e.HasField("activity_task_scheduled_event_attributes")
    ]
    assert queued == [channel_queue(stack.settings.task_queue, Channel.EMAIL, Priority.MEDIUM)]


async def test_the_web_ui_status_is_upserted_once_with_the_outcome(stack: Stack) -> None:
    """LEAN_RECORDS_PATCH: TidingsStatus is set at start and upserted once more, with the
    outcome and the channels tried, not also at SENDING (each upsert is a visibility write);
    the database still has every channel, written by the plan and the deliveries."""
    ref = await stack.tidings.notify(
        user_id="user_001", template_id="welcome", data=WELCOME, channels=["email", "in_app"]
    )
    sent = await stack.tidings.wait_sent(ref.notification_id)
    handle = stack.tidings.temporal.get_workflow_handle(f"notification/{ref.notification_id}")
    history = await handle.fetch_history()
    upserts = [
        dict(e.upsert_workflow_search_attributes_event_attributes.search_attributes.indexed_fields)
        for e in history.events
        if e.HasField("upsert_workflow_search_attributes_event_attributes")
    ]
    ours = [u for u in upserts if "TidingsStatus" in u]
    assert len(ours) == 1, [sorted(u) for u in upserts]
    assert json.loads(ours[0]["TidingsStatus"].data) == "sent"
    assert sorted(json.loads(ours[0]["TidingsChannels"].data)) == ["email", "in_app"]
    assert len(upserts) == 2, [sorted(u) for u in upserts]  # and the SDK's change version
    described = await handle.describe()
    assert described.typed_search_attributes.get(sa.STATUS) == "sent"
    stored = await stack.store.get_notification(ref.notification_id)
    assert stored is not None and stored.status is NotificationStatus.SENT
    assert _by_channel(stored) == _by_channel(sent)


def _local_activities(history: WorkflowHistory) -> list[str]:
    return [
        json.loads(e.marker_recorded_event_attributes.details["data"].payloads[0].data)[
            "activity_type"
        ]
        for e in history.events
        if e.marker_recorded_event_attributes.marker_name == "core_local_activity"
    ]


async def test_a_failed_channel_keeps_the_runs_final_record(stack: Stack) -> None:
    """A failed delivery wrote nothing, so its row is `sending` until the run writes it: no
    delivery's transaction can end the notification, and the run records it as before."""
    stack.sink.reject_permanently.add("john.doe@example.com")
    ref = await stack.tidings.notify(
        user_id="user_001", template_id="welcome", data=WELCOME, channels=["email"]
    )
    failed = await stack.tidings.wait_sent(ref.notification_id)
    assert failed.status is NotificationStatus.FAILED
    stored = await stack.store.get_notification(ref.notification_id)
    assert stored is not None and stored.status is NotificationStatus.FAILED
    assert _by_channel(stored) == {Channel.EMAIL: DeliveryStatus.FAILED}
    handle = stack.tidings.temporal.get_workflow_handle(f"notification/{ref.notification_id}")
    local = _local_activities(await handle.fetch_history())
    # As before: the failed channel as it lands, then the final status.
    assert local == ["plan_delivery", "record_channel", "record_notification"], local

    # Beside a channel that got through: whichever landed last, the run writes the failure
    # (with the final status, or as it lands and then the in-app delivery finishes).
    both = await stack.tidings.notify(
        user_id="user_001", template_id="welcome", data=WELCOME, channels=["email", "in_app"]
    )
    sent = await stack.tidings.wait_sent(both.notification_id)
    assert sent.status is NotificationStatus.SENT
    stored = await stack.store.get_notification(both.notification_id)
    assert stored is not None and stored.status is NotificationStatus.SENT
    assert _by_channel(stored) == {
        Channel.EMAIL: DeliveryStatus.FAILED,
        Channel.IN_APP: DeliveryStatus.DELIVERED,
    }
    handle = stack.tidings.temporal.get_workflow_handle(f"notification/{both.notification_id}")
    local = _local_activities(await handle.fetch_history())
    assert {"record_notification", "record_channel"} & set(local), local
