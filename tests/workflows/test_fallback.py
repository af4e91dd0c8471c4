"""Channel fallback (a channel failed for good -> the next one) and escalation (delivered but not
opened in time -> the next one), on the time-skipping server with the real activities."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest_asyncio
from temporalio.testing import WorkflowEnvironment

from tests.support import Stack, running_stack
from tidings.models import Channel, DeliveryStatus, NotificationResult, NotificationStatus
from workflows.notification import NotificationWorkflow
from workflows.queues import workflow_id

ALERT = {
    "id": "outage",
    "channels": ["webhook", "in_app", "email"],
    "fallback": ["in_app", "email"],
    "content": {"subject": "Outage: {{ what }}", "text": "{{ what }} is down"},
    "sample_data": {"what": "api"},
}


@pytest_asyncio.fixture(loop_scope="session")
async def stack(time_env: WorkflowEnvironment, tmp_path: Path) -> AsyncIterator[Stack]:
    async with running_stack(time_env.client, tmp_path) as s:
        await s.add_user("ops", webhook_url=f"{s.receiver.url}/ops")
        await s.tidings.register_template(ALERT)
        yield s


async def _result(
    stack: Stack, env: WorkflowEnvironment, notification_id: str
) -> NotificationResult:
    await env.sleep(timedelta(days=4))
    handle = stack.tidings.temporal.get_workflow_handle_for(
        NotificationWorkflow.run, workflow_id(notification_id)
    )
    return await handle.result()


async def test_permanent_failure_falls_back_to_the_next_channel(
    stack: Stack, time_env: WorkflowEnvironment
) -> None:
    stack.receiver.respond_with(410, times=5)  # the endpoint is gone: permanent
    ref = await stack.tidings.notify(
        user_id="ops", template_id="outage", data={"what": "db"}, channels=["webhook"]
    )
    result = await _result(stack, time_env, ref.notification_id)
    assert result.status is NotificationStatus.SENT
    webhook, in_app = result.channels
    assert (webhook.channel, webhook.status) == (Channel.WEBHOOK, DeliveryStatus.FAILED)
    assert (in_app.channel, in_app.status) == (Channel.IN_APP, DeliveryStatus.DELIVERED)
    assert in_app.reason == "fallback after webhook failed"
    assert stack.sink.messages == []  # the first fallback succeeded: email was not needed
    assert len(stack.receiver.received) == 1  # permanent: not retried


async def test_fallback_walks_the_whole_order(stack: Stack, time_env: WorkflowEnvironment) -> None:
    stack.receiver.respond_with(410, times=5)
    ref = await stack.tidings.notify(
        user_id="ops",
        template_id="outage",
        data={"what": "db"},
        channels=["webhook"],
        fallback=["email"],  # the request's order overrides the template's
    )
    result = await _result(stack, time_env, ref.notification_id)
    assert [(c.channel, c.status) for c in result.channels] == [
        (Channel.WEBHOOK, DeliveryStatus.FAILED),
        (Channel.EMAIL, DeliveryStatus.SENT),
    ]
    assert [m.rcpt_tos for m in stack.sink.messages] == [["ops@example.com"]]


async def test_no_fallback_when_the_first_round_succeeds(
    stack: Stack, time_env: WorkflowEnvironment
) -> None:
    ref = await stack.tidings.notify(
        user_id="ops", template_id="outage", data={"what": "db"}, channels=["webhook"]
    )
    result = await _result(stack, time_env, ref.notification_id)
    assert [(c.channel, c.status) for c in result.channels] == [
        (Channel.WEBHOOK, DeliveryStatus.DELIVERED)
    ]


async def test_escalates_when_not_opened_in_time(
    stack: Stack, time_env: WorkflowEnvironment
) -> None:
    ref = await stack.tidings.notify(
        user_id="ops",
        template_id="outage",
        data={"what": "queue"},
        channels=["in_app"],
        fallback=["email"],
        escalate_after_minutes=30,
    )
    result = await _result(stack, time_env, ref.notification_id)
    in_app, email = result.channels
    assert in_app.status is DeliveryStatus.DELIVERED
    assert (email.channel, email.status) == (Channel.EMAIL, DeliveryStatus.SENT)
    assert email.reason == "escalated: not opened within 30 min"
    assert in_app.at is not None and email.at is not None
    assert email.at - in_app.at >= timedelta(minutes=30)


async def test_opened_in_time_does_not_escalate(
    stack: Stack, time_env: WorkflowEnvironment
) -> None:
    ref = await stack.tidings.notify(
        user_id="ops",
        template_id="outage",
        data={"what": "cache"},
        channels=["in_app"],
        fallback=["email"],
        escalate_after_minutes=30,
    )
    await stack.tidings.wait_sent(ref.notification_id)
    await stack.tidings.engage(ref.notification_id, "opened")
    result = await _result(stack, time_env, ref.notification_id)
    assert [c.channel for c in result.channels] == [Channel.IN_APP]
    assert stack.sink.messages == []


async def test_a_long_rate_limit_does_not_use_up_the_retries(stack: Stack) -> None:
    # 429 with Retry-After: 1 for 17 s means an attempt a second: more attempts than a count-
    # based policy allowed (15). The budget is time, so the send goes through once it lifts.
    stack.receiver.rate_limit_for(17, retry_after="1")
    ref = await stack.tidings.notify(
        user_id="ops", template_id="outage", data={"what": "dns"}, channels=["webhook"]
    )
    result = await stack.tidings.wait_sent(ref.notification_id, within=90)
    [webhook] = result.channels
    assert webhook.status is DeliveryStatus.DELIVERED
    assert webhook.attempts > 15
    assert len({r.headers["webhook-id"] for r in stack.receiver.received}) == 1
