"""The prototype's demo through a real `temporal server start-dev`, a real SMTP conversation and a
real webhook receiver, checking what actually arrived and what the Web UI's search would find."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest_asyncio
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from starter.dev import demo_data
from tests.support import Stack, running_stack
from tidings.channels.email import message_id_for
from tidings.channels.webhook import verify
from tidings.models import Channel, DeliveryStatus, NotificationStatus, Priority


@pytest_asyncio.fixture(loop_scope="session")
async def stack(dev_env: WorkflowEnvironment, tmp_path: Path) -> AsyncIterator[Stack]:
    async with running_stack(dev_env.client, tmp_path) as s:
        await s.seed()
        yield s


async def _search(client: Client, query: str, expected: int) -> list[str]:
    """Visibility is eventually consistent: poll briefly until the expected count shows."""
    ids: list[str] = []
    for _ in range(50):
        ids = [wf.id async for wf in client.list_workflows(query)]
        if len(ids) >= expected:
            break
        await asyncio.sleep(0.1)
    return ids


async def test_prototype_demo_end_to_end(stack: Stack) -> None:
    t = stack.tidings
    welcome = await t.notify(user_id="user_001", template_id="welcome", data=demo_data.WELCOME_DATA)
    order = await t.notify(
        user_id="user_002",
        template_id="order_confirmation",
        data=demo_data.ORDER_DATA,
        priority=Priority.HIGH,
    )
    alert = await t.notify(
        user_id="user_001",
        template_id="security_alert",
        data=demo_data.SECURITY_DATA,
        channels=[Channel.EMAIL, Channel.SMS],
        priority=Priority.CRITICAL,
    )
    bulk = await t.notify_many(
        ["user_001", "user_002"], "welcome", data=demo_data.BULK_WELCOME_DATA
    )
    refs = [welcome, order, alert, *bulk.refs]
    results = {r.notification_id: await t.wait_sent(r.notification_id) for r in refs}
    assert {r.status for r in results.values()} == {NotificationStatus.SENT}

    # What the SMTP server actually received: one message per notification, to the right person.
    received = {m.message_id: m for m in stack.sink.messages}
    assert len(received) == 5
    for ref in refs:
        mail = received[message_id_for(ref.notification_id, Channel.EMAIL, "tidings.localhost")]
        assert mail.body("plain")
    alert_mail = received[message_id_for(alert.notification_id, Channel.EMAIL, "tidings.localhost")]
    assert alert_mail.rcpt_tos == ["john.doe@example.com"]
    assert alert_mail.subject == "Security Alert: suspicious login attempt"
    assert alert_mail.body("html") is None  # the alert template has no HTML part
    welcome_mail = received[
        message_id_for(welcome.notification_id, Channel.EMAIL, "tidings.localhost")
    ]
    assert "<strong>John</strong>" in (welcome_mail.body("html") or "")

    # SMS is not built yet: suppressed with the reason, not an error; user_001 opted out anyway.
    sms = {c.channel: c for c in results[alert.notification_id].channels}[Channel.SMS]
    assert sms.status is DeliveryStatus.SUPPRESSED and sms.reason

    # In-app inbox rows: welcome + bulk welcome for user_001 (the alert has no in-app channel).
    inbox = await t.inbox("user_001")
    assert sorted(i.title for i in inbox) == [
        "Welcome to MyApp, John!",
        "Welcome to MyApp, Valued Customer!",
    ]

    # Every run is findable in the Web UI by user, and carries its final status.
    user_001 = {welcome.workflow_id, alert.workflow_id, bulk.refs[0].workflow_id}
    found = await _search(
        t.temporal,
        f"TidingsUser = 'user_001' AND TaskQueue STARTS_WITH '{stack.settings.task_queue}'",
        3,
    )
    assert set(found) == user_001
    sent = await _search(
        t.temporal,
        "TidingsStatus = 'sent' AND TidingsPriority = 'critical'"
        " AND TidingsUser = 'user_001' AND TidingsTemplate = 'security_alert'",
        1,
    )
    assert alert.workflow_id in sent

    stats = await t.stats()
    assert stats.channels[Channel.EMAIL].sent == 5
    assert stats.channels[Channel.IN_APP].delivered == 4


async def test_webhook_delivery_is_signed(stack: Stack) -> None:
    await stack.add_user("integrator", webhook_url=f"{stack.receiver.url}/in")
    await stack.tidings.register_template(
        {
            "id": "order_shipped",
            "channels": ["webhook", "email"],
            "content": {"subject": "Order {{ id }} shipped", "text": "Tracking: {{ tracking }}"},
            "sample_data": {"id": "1", "tracking": "T"},
        }
    )
    stack.receiver.fail_next(1, status=503)  # the first attempt fails; the retry delivers
    ref = await stack.tidings.notify(
        user_id="integrator", template_id="order_shipped", data={"id": "A7", "tracking": "Z9"}
    )
    result = await stack.tidings.wait_sent(ref.notification_id, within=60)
    statuses = {c.channel: c.status for c in result.channels}
    assert statuses == {
        Channel.WEBHOOK: DeliveryStatus.DELIVERED,
        Channel.EMAIL: DeliveryStatus.SENT,
    }
    first, second = stack.receiver.received
    assert first.headers["webhook-id"] == second.headers["webhook-id"]  # same key on retry
    verify(stack.settings.webhook_secret.get_secret_value(), second.headers, second.body)
    assert second.json()["subject"] == "Order A7 shipped"
