"""NotificationWorkflow on the time-skipping server, with the real activities, a real SQLite
store, a real SMTP sink and a real webhook receiver. Only time is simulated."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import pytest_asyncio
from temporalio.api.enums.v1 import EventType
from temporalio.testing import WorkflowEnvironment

from tests.support import Stack, running_stack
from tidings.channels.webhook import verify
from tidings.errors import Conflict, InvalidRequest
from tidings.models import (
    Channel,
    DeliveryStatus,
    EngagementType,
    NotificationResult,
    NotificationStatus,
    Preferences,
    Priority,
    QuietHours,
)
from workflows.notification import NotificationWorkflow
from workflows.queues import workflow_id

WELCOME = {"app_name": "MyApp", "user_name": "John"}
# Explicit env.sleep() advances the time-skipping server; result() alone did not skip here.
stack_env: dict[str, WorkflowEnvironment] = {}


@pytest_asyncio.fixture(loop_scope="session")
async def stack(time_env: WorkflowEnvironment, tmp_path: Path) -> AsyncIterator[Stack]:
    async with running_stack(time_env.client, tmp_path) as s:
        await s.seed()
        stack_env[s.settings.task_queue] = time_env
        yield s


async def _result(
    stack: Stack, notification_id: str, *, after: timedelta = timedelta(days=7)
) -> NotificationResult:
    """Skip time past every wait the run can have (send time, retries, the engagement window),
    then read its result."""
    env = stack_env[stack.settings.task_queue]
    await env.sleep(after)
    handle = stack.tidings.temporal.get_workflow_handle_for(
        NotificationWorkflow.run, workflow_id(notification_id)
    )
    return await handle.result()


async def _attempts(stack: Stack, notification_id: str) -> int:
    """How many times the deliver activity started, from the workflow's own history."""
    handle = stack.tidings.temporal.get_workflow_handle(workflow_id(notification_id))
    history = await handle.fetch_history()
    started = [
        e.activity_task_started_event_attributes.attempt
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED
    ]
    return max(started, default=0)


async def test_scheduled_three_days_out_waits_then_sends(
    stack: Stack, time_env: WorkflowEnvironment
) -> None:
    now = await time_env.get_current_time()
    at = now + timedelta(days=3)
    ref = await stack.tidings.notify(
        user_id="user_001", template_id="welcome", data=WELCOME, scheduled_at=at
    )
    status = await stack.tidings.status(ref.notification_id)
    assert status.status is NotificationStatus.SCHEDULED
    assert status.send_at == at
    assert stack.sink.messages == []

    result = await _result(stack, ref.notification_id)
    assert result.status is NotificationStatus.SENT
    by_channel = {c.channel: c for c in result.channels}
    assert by_channel[Channel.EMAIL].status is DeliveryStatus.SENT
    assert by_channel[Channel.IN_APP].status is DeliveryStatus.DELIVERED
    assert by_channel[Channel.PUSH].status is DeliveryStatus.SUPPRESSED
    assert "user has no" in (by_channel[Channel.PUSH].reason or "")
    sent_at = by_channel[Channel.EMAIL].at
    assert sent_at is not None and sent_at >= at
    [mail] = stack.sink.messages
    assert mail.rcpt_tos == ["john.doe@example.com"]
    assert mail.subject == "Welcome to MyApp, John!"
    [item] = await stack.tidings.inbox("user_001")
    assert item.title == "Welcome to MyApp, John!"
    stored = await stack.store.get_notification(ref.notification_id)
    assert stored is not None and stored.status is NotificationStatus.SENT
    assert {c.channel: c.status for c in stored.channels}[Channel.EMAIL] is DeliveryStatus.SENT


async def test_reschedule_moves_the_send_time(stack: Stack, time_env: WorkflowEnvironment) -> None:
    now = await time_env.get_current_time()
    ref = await stack.tidings.notify(
        user_id="user_001",
        template_id="welcome",
        data=WELCOME,
        scheduled_at=now + timedelta(days=2),
        channels=["email"],
    )
    new_at = now + timedelta(hours=5)
    view = await stack.tidings.reschedule(ref.notification_id, new_at)
    assert view.send_at == new_at
    stored = await stack.store.get_notification(ref.notification_id)
    assert stored is not None
    result = await _result(stack, ref.notification_id)
    assert result.status is NotificationStatus.SENT
    [email] = result.channels
    assert email.at is not None
    assert new_at <= email.at < now + timedelta(days=2)

    with pytest.raises(InvalidRequest, match=r"at: .* is in the past"):
        await stack.tidings.reschedule(ref.notification_id, datetime(2001, 1, 1, tzinfo=UTC))
    with pytest.raises(Conflict, match="finished"):
        await stack.tidings.reschedule(ref.notification_id, now + timedelta(days=30))


async def test_cancel_before_send_sends_nothing(
    stack: Stack, time_env: WorkflowEnvironment
) -> None:
    now = await time_env.get_current_time()
    ref = await stack.tidings.notify(
        user_id="user_001",
        template_id="welcome",
        data=WELCOME,
        scheduled_at=now + timedelta(days=1),
        channels=["email", "in_app"],
    )
    view = await stack.tidings.cancel(ref.notification_id, reason="user unsubscribed")
    assert view.status is NotificationStatus.CANCELLED
    assert view.reason == "user unsubscribed"
    result = await _result(stack, ref.notification_id)
    assert result.status is NotificationStatus.CANCELLED
    assert result.reason == "user unsubscribed"
    assert {c.status for c in result.channels} == {DeliveryStatus.CANCELLED}
    assert stack.sink.messages == []
    assert await stack.tidings.inbox("user_001") == []
    stored = await stack.store.get_notification(ref.notification_id)
    assert stored is not None and stored.status is NotificationStatus.CANCELLED
    with pytest.raises(Conflict):
        await stack.tidings.cancel(ref.notification_id)


async def test_update_on_a_sent_notification_is_refused(stack: Stack) -> None:
    ref = await stack.tidings.notify(
        user_id="user_001", template_id="welcome", data=WELCOME, channels=["in_app"]
    )
    sent = await stack.tidings.wait_sent(ref.notification_id)
    assert sent.status is NotificationStatus.SENT
    with pytest.raises(Conflict, match="already sent"):
        await stack.tidings.cancel(ref.notification_id)


async def test_quiet_hours_defer_to_the_end_of_the_window(
    stack: Stack, time_env: WorkflowEnvironment
) -> None:
    now = await time_env.get_current_time()
    start = (now - timedelta(hours=1)).time().replace(microsecond=0)
    end = (now + timedelta(hours=3)).time().replace(second=0, microsecond=0)
    await stack.add_user("sleepy", timezone="UTC")
    await stack.tidings.set_preferences(
        Preferences(user_id="sleepy", quiet_hours=QuietHours(start=start, end=end))
    )
    ref = await stack.tidings.notify(
        user_id="sleepy", template_id="welcome", data=WELCOME, channels=["email"]
    )
    result = await _result(stack, ref.notification_id)
    assert result.status is NotificationStatus.SENT
    [email] = result.channels
    assert email.at is not None
    assert email.at.time() >= end or email.at.date() > now.date()
    assert email.at >= now + timedelta(hours=2)

    critical = await stack.tidings.notify(
        user_id="sleepy",
        template_id="welcome",
        data=WELCOME,
        channels=["email"],
        priority=Priority.CRITICAL,
    )
    sent = await stack.tidings.wait_sent(critical.notification_id)
    assert sent.status is NotificationStatus.SENT  # critical ignores quiet hours


async def test_expires_while_deferred_by_quiet_hours(
    stack: Stack, time_env: WorkflowEnvironment
) -> None:
    now = await time_env.get_current_time()
    await stack.add_user("night_owl", timezone="UTC")
    await stack.tidings.set_preferences(
        Preferences(
            user_id="night_owl",
            quiet_hours=QuietHours(
                start=(now - timedelta(minutes=30)).time().replace(microsecond=0),
                end=(now + timedelta(hours=6)).time().replace(second=0, microsecond=0),
            ),
        )
    )
    ref = await stack.tidings.notify(
        user_id="night_owl",
        template_id="welcome",
        data=WELCOME,
        channels=["email"],
        expires_at=now + timedelta(hours=1),
    )
    result = await _result(stack, ref.notification_id)
    assert result.status is NotificationStatus.EXPIRED
    assert [c.status for c in result.channels] == [DeliveryStatus.EXPIRED]
    assert stack.sink.messages == []


async def test_permanent_email_failure_is_not_retried(stack: Stack) -> None:
    stack.sink.reject_permanently.add("john.doe@example.com")
    ref = await stack.tidings.notify(
        user_id="user_001", template_id="welcome", data=WELCOME, channels=["email", "in_app"]
    )
    result = await stack.tidings.wait_sent(ref.notification_id)
    by_channel = {c.channel: c for c in result.channels}
    assert by_channel[Channel.EMAIL].status is DeliveryStatus.FAILED
    assert "550" in (by_channel[Channel.EMAIL].reason or "")
    assert by_channel[Channel.IN_APP].status is DeliveryStatus.DELIVERED  # unaffected
    assert result.status is NotificationStatus.SENT
    email_attempts = await _attempts(stack, ref.notification_id)
    assert email_attempts == 1
    assert stack.sink.messages == []


async def test_transient_email_failure_is_retried_until_it_succeeds(stack: Stack) -> None:
    stack.sink.fail_transiently(2)
    ref = await stack.tidings.notify(
        user_id="user_001", template_id="welcome", data=WELCOME, channels=["email"]
    )
    result = await _result(stack, ref.notification_id)
    assert [c.status for c in result.channels] == [DeliveryStatus.SENT]
    assert await _attempts(stack, ref.notification_id) == 3
    assert result.channels[0].attempts == 3
    assert len(stack.sink.messages) == 1


async def test_webhook_is_signed_and_delivered(stack: Stack) -> None:
    await stack.add_user("hooked", webhook_url=f"{stack.receiver.url}/hooks/tidings")
    await stack.tidings.register_template(
        {
            "id": "ping",
            "channels": ["webhook"],
            "content": {"subject": "Ping {{ n }}", "text": "ping number {{ n }}"},
            "sample_data": {"n": 0},
        }
    )
    ref = await stack.tidings.notify(user_id="hooked", template_id="ping", data={"n": 7})
    result = await stack.tidings.wait_sent(ref.notification_id)
    assert [c.status for c in result.channels] == [DeliveryStatus.DELIVERED]
    [request] = stack.receiver.received
    verify(stack.settings.webhook_secret.get_secret_value(), dict(request.headers), request.body)
    body = request.json()
    assert body["subject"] == "Ping 7" and body["notification_id"] == ref.notification_id


async def test_engagement_is_recorded_after_delivery(stack: Stack) -> None:
    ref = await stack.tidings.notify(
        user_id="user_002", template_id="welcome", data=WELCOME, channels=["in_app"]
    )
    await stack.tidings.wait_sent(ref.notification_id)
    await stack.tidings.engage(ref.notification_id, "opened", channel=Channel.IN_APP)
    await stack.tidings.engage(ref.notification_id, EngagementType.CONVERTED)
    result = await _result(stack, ref.notification_id)  # converted ends the window early
    assert [e.type for e in result.engagement] == [EngagementType.OPENED, EngagementType.CONVERTED]
    stored = await stack.store.get_notification(ref.notification_id)
    assert stored is not None
    assert sorted(e.type for e in stored.engagement) == ["converted", "opened"]
    with pytest.raises(Conflict, match="window has closed"):
        await stack.tidings.engage(ref.notification_id, "clicked")


async def test_engagement_before_delivery_is_refused(
    stack: Stack, time_env: WorkflowEnvironment
) -> None:
    now = await time_env.get_current_time()
    ref = await stack.tidings.notify(
        user_id="user_002",
        template_id="welcome",
        data=WELCOME,
        scheduled_at=now + timedelta(days=1),
    )
    with pytest.raises(Conflict, match="accepted after delivery"):
        await stack.tidings.engage(ref.notification_id, "opened")
    await stack.tidings.cancel(ref.notification_id)


async def test_repeated_trigger_returns_the_same_notification(stack: Stack) -> None:
    first = await stack.tidings.notify(
        user_id="user_001",
        template_id="welcome",
        data=WELCOME,
        channels=["email"],
        idempotency_key="signup-user_001",
    )
    await stack.tidings.wait_sent(first.notification_id)
    second = await stack.tidings.notify(
        user_id="user_001",
        template_id="welcome",
        data=WELCOME,
        channels=["email"],
        idempotency_key="signup-user_001",
    )
    assert first.created and second == first.model_copy(update={"created": False})
    await _result(stack, first.notification_id)
    third = await stack.tidings.notify(
        user_id="user_001",
        template_id="welcome",
        data=WELCOME,
        channels=["email"],
        idempotency_key="signup-user_001",
    )
    assert third == second  # even after the run has completed
    assert len(stack.sink.messages) == 1


async def test_template_version_is_pinned_for_the_life_of_the_run(
    stack: Stack, time_env: WorkflowEnvironment
) -> None:
    now = await time_env.get_current_time()
    ref = await stack.tidings.notify(
        user_id="user_001",
        template_id="welcome",
        data=WELCOME,
        channels=["email"],
        scheduled_at=now + timedelta(hours=2),
    )
    changed = next(t for t in (await stack.tidings.list_templates()) if t.id == "welcome")
    await stack.tidings.register_template(
        changed.model_copy(
            update={"content": changed.content.model_copy(update={"subject": "CHANGED"})}
        ).model_dump(exclude={"version", "created_at"})
    )
    result = await _result(stack, ref.notification_id)
    assert result.template_version == changed.version
    assert stack.sink.messages[0].subject == "Welcome to MyApp, John!"


@pytest.mark.parametrize(
    ("fields", "field", "reason"),
    [
        ({"user_id": "nobody"}, "user_id", "no user 'nobody'"),
        ({"template_id": "nope"}, "template_id", "no template 'nope'"),
        ({"data": {"app_name": "X"}}, "data", "user_name"),
        ({"channels": ["sms"]}, "channels", "does not support sms"),
        ({"channels": ["fax"]}, "channels.0", "Input should be"),
        ({"expires_at": datetime(2001, 1, 1).astimezone()}, "expires_at", "in the past"),
        ({"scheduled_at": datetime(2030, 1, 1)}, "scheduled_at", "timezone"),
        ({"data": {"blob": "x" * 20_000}}, "data", "limit is"),
        ({"priority": "urgent"}, "priority", "Input should be"),
    ],
)
async def test_bad_requests_start_nothing(
    stack: Stack, fields: dict[str, object], field: str, reason: str
) -> None:
    request = {"user_id": "user_001", "template_id": "welcome", "data": WELCOME, **fields}
    request["idempotency_key"] = f"bad-{field.replace('.', '-')}"
    with pytest.raises(InvalidRequest) as info:
        await stack.tidings.notify(request)
    assert info.value.field == field
    assert reason in info.value.reason
    assert await stack.store.list_notifications() == []
    with pytest.raises(Exception, match="not found"):
        await stack.tidings.temporal.get_workflow_handle(
            workflow_id(str(request["idempotency_key"]))
        ).describe()
