"""At send time, a channel whose render exceeds the budget fails for good with the reason, once,
and the other channels are delivered. (The edge refuses such requests; this is the worker's
side, for a template stored before the budget existed or data that slipped past.)"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest_asyncio
from temporalio.testing import WorkflowEnvironment

from tests.support import Stack, running_stack
from tidings.models import (
    Channel,
    DeliveryStatus,
    NotificationRequest,
    Priority,
    TemplateDefinition,
)
from workflows.io import NotificationInput
from workflows.notification import NotificationWorkflow
from workflows.queues import workflow_id

LOOPY = "{% for a in xs %}{% for b in xs %}{% for c in xs %}{% endfor %}{% endfor %}{% endfor %}"


@pytest_asyncio.fixture(loop_scope="session")
async def stack(time_env: WorkflowEnvironment, tmp_path: Path) -> AsyncIterator[Stack]:
    async with running_stack(time_env.client, tmp_path) as s:
        await s.seed()
        yield s


async def test_a_runaway_render_fails_its_channel_for_good(
    stack: Stack, time_env: WorkflowEnvironment
) -> None:
    # Stored directly: registration would refuse it, and so would the client's own render.
    template = await stack.store.add_template_version(
        TemplateDefinition(
            id="runaway-html",
            channels=[Channel.EMAIL, Channel.IN_APP],
            content={"subject": "Hi", "text": "plain", "html": LOOPY},
        )
    )
    request = NotificationRequest(
        user_id="user_001",
        template_id=template.id,
        data={"xs": list(range(300))},
        channels=[Channel.EMAIL, Channel.IN_APP],
        idempotency_key="runaway-1",
    )
    prepared = NotificationInput(
        notification_id="runaway-1",
        request=request,
        template_version=template.version,
        priority=Priority.MEDIUM,
        engagement_window_hours=1,
        task_queue_base=stack.settings.task_queue,
    )
    await stack.tidings._start(prepared)

    await time_env.sleep(timedelta(hours=2))
    handle = stack.tidings.temporal.get_workflow_handle_for(
        NotificationWorkflow.run, workflow_id("runaway-1")
    )
    result = await handle.result()
    channels = {c.channel: c for c in result.channels}
    assert channels[Channel.EMAIL].status is DeliveryStatus.FAILED
    reason = channels[Channel.EMAIL].reason or ""
    assert "html" in reason and "render budget of channel email" in reason
    assert channels[Channel.IN_APP].status is DeliveryStatus.DELIVERED
    assert stack.sink.messages == []  # nothing half-sent
    history = await handle.fetch_history()
    starts = [e for e in history.events if e.activity_task_started_event_attributes.attempt]
    assert all(e.activity_task_started_event_attributes.attempt == 1 for e in starts)
