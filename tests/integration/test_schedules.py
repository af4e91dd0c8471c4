"""Recurring sends on the dev server (the time-skipping server has no Schedules): the times a
Europe/Berlin schedule computes across the spring daylight-saving change, trigger-now sending an
ordinary notification, one notification per scheduled time, pause/resume/delete, a digest
action, and bad input creating nothing."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import pytest_asyncio
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment

from starter.client_broadcasts import BroadcastRequest
from tests.cli.helpers import terminate_queue
from tests.support import Stack, running_stack
from tidings.broadcast_models import notification_id
from tidings.errors import InvalidRequest, NotFound
from tidings.models import Channel, NotificationRequest
from tidings.recurring import run_broadcast_id, run_notification_id
from workflows.digest_io import ScheduledSendInput, ScheduledSendResult
from workflows.scheduled import ScheduledSendWorkflow

NOTIFY = {"user_id": "user_001", "template_id": "welcome", "channels": ["in_app"]}
WELCOME = {"app_name": "MyApp", "user_name": "John"}


@pytest_asyncio.fixture(loop_scope="session")
async def stack(dev_env: WorkflowEnvironment, tmp_path: Path) -> AsyncIterator[Stack]:
    async with running_stack(dev_env.client, tmp_path) as s:
        await s.seed()
        made: list[str] = []
        s.made = made  # type: ignore[attr-defined]
        try:
            yield s
        finally:
            for schedule_id in made:
                with contextlib.suppress(RPCError):
                    await dev_env.client.get_schedule_handle(schedule_id).delete()
            await terminate_queue(dev_env.client, s.settings.task_queue)


def new_id(stack: Stack) -> str:
    schedule_id = f"s-{uuid.uuid4().hex[:10]}"
    stack.made.append(schedule_id)  # type: ignore[attr-defined]
    return schedule_id


async def test_berlin_times_keep_local_9am_across_the_spring_change(stack: Stack) -> None:
    schedule_id = new_id(stack)
    view = await stack.tidings.create_schedule(
        schedule_id=schedule_id,
        cron=["0 9 27-31 3 *"],  # 09:00 on the last days of March: the change is among them
        time_zone="Europe/Berlin",
        notification={**NOTIFY, "data": WELCOME},
        paused=True,
    )
    now = datetime.now(UTC)
    year = now.year if now < datetime(now.year, 3, 27, tzinfo=UTC) else now.year + 1
    berlin = ZoneInfo("Europe/Berlin")
    expected = [datetime(year, 3, d, 9, tzinfo=berlin).astimezone(UTC) for d in range(27, 32)]
    assert view.next_runs[:5] == expected
    offsets = {t.hour for t in view.next_runs[:5]}
    assert offsets == {8, 7}  # 08:00 UTC before the change, 07:00 UTC after it
    assert view.time_zone == "Europe/Berlin" and view.paused


async def test_weekday_calendar_in_new_york(stack: Stack) -> None:
    view = await stack.tidings.create_schedule(
        schedule_id=new_id(stack),
        calendars=[{"hour": 9, "minute": 30, "day_of_week": "mon-fri"}],
        time_zone="America/New_York",
        notification={**NOTIFY, "data": WELCOME},
        paused=True,
    )
    local = [t.astimezone(ZoneInfo("America/New_York")) for t in view.next_runs]
    assert local and all((t.hour, t.minute) == (9, 30) and t.weekday() < 5 for t in local)


async def test_trigger_now_sends_an_ordinary_notification(stack: Stack) -> None:
    t = stack.tidings
    schedule_id = new_id(stack)
    await t.create_schedule(
        schedule_id=schedule_id,
        cron=["0 9 * * mon"],
        time_zone="Europe/Berlin",
        notification={**NOTIFY, "data": WELCOME},
    )
    await t.trigger_schedule(schedule_id)
    view = await t.describe_schedule(schedule_id)
    for _ in range(100):
        if view.recent_runs:
            break
        await asyncio.sleep(0.1)
        view = await t.describe_schedule(schedule_id)
    [fired] = view.recent_runs
    notification_id = run_notification_id(schedule_id, fired)
    for _ in range(100):  # the firing's workflow starts the notification a moment later
        with contextlib.suppress(NotFound):
            await t.status(notification_id)
            break
        await asyncio.sleep(0.1)
    sent = await t.wait_sent(notification_id)
    assert sent.status.value == "sent" and sent.template_id == "welcome"

    paused = await t.pause_schedule(schedule_id, "holiday")
    assert paused.paused and paused.note == "holiday"
    assert not (await t.resume_schedule(schedule_id)).paused
    assert schedule_id in [s.schedule_id for s in await t.list_schedules()]
    await t.delete_schedule(schedule_id)
    with pytest.raises(NotFound):
        await t.describe_schedule(schedule_id)


async def test_one_notification_per_scheduled_time(
    stack: Stack, dev_env: WorkflowEnvironment
) -> None:
    """Two starts for the same scheduled time (a retried start, a reset) send once."""
    request = NotificationRequest.model_validate({**NOTIFY, "data": WELCOME})
    prepared = await stack.tidings._prepare(request)  # what create_schedule pins
    action = ScheduledSendInput(
        schedule_id="manual", task_queue_base=stack.settings.task_queue, notification=prepared
    )
    wf_id = f"scheduled/manual-{uuid.uuid4().hex[:6]}-2031-03-30T07:00:00Z"
    results: list[ScheduledSendResult] = []
    for _ in range(2):
        results.append(
            await dev_env.client.execute_workflow(
                ScheduledSendWorkflow.run, action, id=wf_id, task_queue=stack.settings.task_queue
            )
        )
    assert [r.started for r in results] == [True, False]
    assert results[0].notification_id == results[1].notification_id
    assert results[0].notification_id == "schedule:manual:20310330T070000Z"
    assert results[0].scheduled_at == datetime(2031, 3, 30, 7, tzinfo=UTC)
    await stack.tidings.wait_sent("schedule:manual:20310330T070000Z")
    await dev_env.client.get_workflow_handle(
        "notification/schedule:manual:20310330T070000Z"
    ).terminate("test finished")


async def test_digest_action_flushes_the_users_digest(stack: Stack) -> None:
    t = stack.tidings
    await t.register_template(
        {
            "id": "digest_t",
            "channels": ["in_app"],
            "content": {"subject": "{{ total }} events", "text": "{{ total }}"},
            "sample_data": {"total": 1},
        }
    )
    await t.register_digest(key="news", template_id="digest_t", window_seconds=86_400)
    await t.digest_event("user_001", "news", "n1")
    schedule_id = new_id(stack)
    await t.create_schedule(
        schedule_id=schedule_id,
        cron=["0 9 * * *"],
        digest={"user_id": "user_001", "key": "news"},
    )
    await t.trigger_schedule(schedule_id)
    for _ in range(100):
        status = await t.digest_status("user_001", "news")
        if status.batches_sent == 1 and not status.running:
            break
        await asyncio.sleep(0.1)
    assert (status.batches_sent, status.events_sent) == (1, 1)


async def test_broadcast_action_one_broadcast_per_scheduled_time(
    stack: Stack, dev_env: WorkflowEnvironment
) -> None:
    """A schedule's broadcast: checked at creation, started on trigger under an id made of the
    schedule and the scheduled time; a repeated start for that time starts nothing new."""
    t = stack.tidings
    schedule_id = new_id(stack)
    view = await t.create_schedule(
        schedule_id=schedule_id,
        cron=["0 9 * * mon"],
        time_zone="Europe/Berlin",
        broadcast={
            "template_id": "welcome",
            "audience": ["user_001", "user_002"],
            "data": WELCOME,
            "channels": ["in_app"],
        },
    )
    assert view.action == "broadcast welcome to 2 users"
    await t.trigger_schedule(schedule_id)
    for _ in range(100):
        view = await t.describe_schedule(schedule_id)
        if view.recent_runs:
            break
        await asyncio.sleep(0.1)
    [fired] = view.recent_runs
    bid = run_broadcast_id(schedule_id, fired)
    for _ in range(200):
        record = await stack.store.get_broadcast(bid)
        if record is not None and record.status == "completed":
            break
        await asyncio.sleep(0.1)
    assert record is not None and record.status == "completed"
    assert record.counters.channels[Channel.IN_APP].sent == 2

    # The same scheduled time again (a retried start): the broadcast exists, nothing new.
    action = ScheduledSendInput(
        schedule_id=schedule_id,
        task_queue_base=stack.settings.task_queue,
        broadcast=await t._prepare_broadcast(
            BroadcastRequest("welcome", ["user_001"], WELCOME, ["in_app"])
        ),
    )
    again = await dev_env.client.execute_workflow(
        ScheduledSendWorkflow.run,
        action,
        id=f"scheduled/{schedule_id}-again-{fired.strftime('%Y-%m-%dT%H:%M:%SZ')}",
        task_queue=stack.settings.task_queue,
    )
    assert (again.broadcast_id, again.started) == (bid, False)
    inbox = await t.store.list_inbox("user_001")
    assert [i.notification_id for i in inbox].count(notification_id(bid, "user_001")) == 1


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"cron": ["61 9 * * *"]}, "cron"),
        ({"cron": ["0 9 * *"]}, "cron"),
        ({"cron": ["0 9 * * funday"]}, "cron"),
        ({"cron": [], "calendars": [{"hour": 25}]}, "calendars.0"),
        ({"cron": []}, "cron"),
        ({"time_zone": "Mars/Olympus"}, "time_zone"),
        ({"notification": {**NOTIFY, "template_id": "nope"}}, "notification.template_id"),
        ({"notification": {**NOTIFY, "user_id": "nobody"}}, "notification.user_id"),
        ({"notification": None}, "notification"),
        ({"digest": {"user_id": "user_001", "key": "nope"}, "notification": None}, "digest.key"),
        (
            {"broadcast": {"template_id": "nope", "audience": "all"}, "notification": None},
            "broadcast.template_id",
        ),
        (
            {
                "broadcast": {
                    "template_id": "welcome",
                    "audience": "segment:nope",
                    "data": WELCOME,
                },
                "notification": None,
            },
            "broadcast.audience.segment",
        ),
        (
            {"broadcast": {"template_id": "welcome", "audience": "all", "data": WELCOME}},
            "notification",  # two actions
        ),
    ],
)
async def test_bad_input_names_the_field_and_creates_nothing(
    stack: Stack, fields: dict[str, Any], field: str
) -> None:
    schedule_id = new_id(stack)
    spec = {
        "schedule_id": schedule_id,
        "cron": ["0 9 * * *"],
        "time_zone": "Europe/Berlin",
        "notification": {**NOTIFY, "data": WELCOME},
        **fields,
    }
    with pytest.raises(InvalidRequest) as e:
        await stack.tidings.create_schedule(spec)
    assert e.value.field == field, e.value
    with pytest.raises(NotFound):
        await stack.tidings.describe_schedule(schedule_id)
