"""At send time, a channel whose render exceeds the budget fails for good with the reason, once,
and the other channels are delivered. (The edge refuses such requests; this is the worker's
side, for a template stored before the budget existed or data that slipped past.)"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest_asyncio
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowHandle
from temporalio.testing import WorkflowEnvironment

from tests.support import Stack, running_stack
from tidings.models import (
    Channel,
    DeliveryStatus,
    NotificationRequest,
    NotificationResult,
    NotificationStatus,
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


async def _send_stored(
    stack: Stack, time_env: WorkflowEnvironment, definition: TemplateDefinition, key: str
) -> WorkflowHandle[NotificationWorkflow, NotificationResult]:
    """Send a template stored directly (registration would refuse it, and so would the client's
    own render) on every one of its channels, and skip past the run's waits."""
    template = await stack.store.add_template_version(definition)
    request = NotificationRequest(
        user_id="user_001",
        template_id=template.id,
        data={"xs": list(range(300))},
        channels=template.channels,
        idempotency_key=key,
    )
    prepared = NotificationInput(
        notification_id=key,
        request=request,
        template_version=template.version,
        priority=Priority.MEDIUM,
        engagement_window_hours=1,
        task_queue_base=stack.settings.task_queue,
    )
    await stack.tidings._start(prepared)
    await time_env.sleep(timedelta(hours=2))
    temporal = stack.tidings.temporal
    return temporal.get_workflow_handle_for(NotificationWorkflow.run, workflow_id(key))


async def test_a_runaway_render_fails_its_channel_for_good(
    stack: Stack, time_env: WorkflowEnvironment
) -> None:
    definition = TemplateDefinition(
        id="runaway-html",
        channels=[Channel.EMAIL, Channel.IN_APP],
        content={"subject": "Hi", "text": "plain", "html": LOOPY},
    )
    handle = await _send_stored(stack, time_env, definition, "runaway-1")
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


async def test_a_runaway_in_app_render_fails_its_channel_not_the_run(
    stack: Stack, time_env: WorkflowEnvironment
) -> None:
    """In-app is a local activity on new runs (IN_APP_LOCAL_PATCH), whose non-retryable failure
    can reach the run unwrapped: it is still the channel's FAILED result with the reason."""
    definition = TemplateDefinition(
        id="runaway-inbox", channels=[Channel.IN_APP], content={"subject": "Hi", "text": LOOPY}
    )
    handle = await _send_stored(stack, time_env, definition, "runaway-2")
    history = await handle.fetch_history()
    failed = EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED
    assert not [e for e in history.events if e.event_type == failed]
    result = await asyncio.wait_for(handle.result(), timeout=30)
    assert result.status is NotificationStatus.FAILED
    [in_app] = result.channels
    assert in_app.status is DeliveryStatus.FAILED
    assert "render budget of channel in_app" in (in_app.reason or "")
    assert not [e for e in history.events if e.HasField("activity_task_scheduled_event_attributes")]
    stored = await stack.store.get_notification("runaway-2")
    assert stored is not None and stored.status is NotificationStatus.FAILED
