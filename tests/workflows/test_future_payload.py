"""A start from a newer client, whose input carries fields this version does not know, is decoded
by the current worker and delivered: the rolling-deploy promise, end to end."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
import pytest_asyncio
from temporalio.api.common.v1 import Payload
from temporalio.client import WorkflowFailureError
from temporalio.common import RawValue
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment

from tests.support import Stack, running_stack
from tidings.models import Channel, DeliveryStatus, NotificationResult, Priority
from workflows.converter import UNDECODABLE
from workflows.queues import workflow_id, workflow_queue

WELCOME = {"app_name": "MyApp", "user_name": "John"}


@pytest_asyncio.fixture(loop_scope="session")
async def stack(time_env: WorkflowEnvironment, tmp_path: Path) -> AsyncIterator[Stack]:
    async with running_stack(time_env.client, tmp_path) as s:
        await s.seed()
        yield s


async def test_the_worker_decodes_an_input_from_a_newer_version(
    stack: Stack, time_env: WorkflowEnvironment
) -> None:
    template = await stack.tidings.get_template("welcome")
    future_input = {  # what a newer client sends: plain JSON with fields we do not know
        "notification_id": "future-1",
        "template_version": template.version,
        "priority": "medium",
        "engagement_window_hours": 1,
        "task_queue_base": stack.settings.task_queue,
        "experiment_id": "exp-7",
        "request": {
            "user_id": "user_001",
            "template_id": "welcome",
            "data": WELCOME,
            "channels": ["email"],
            "idempotency_key": "future-1",
            "experiment_id": "exp-7",
            "delivery_hints": {"batch": True},
        },
    }
    handle = await time_env.client.start_workflow(
        "NotificationWorkflow",
        future_input,
        id=workflow_id("future-1"),
        task_queue=workflow_queue(stack.settings.task_queue, Priority.MEDIUM),
        result_type=NotificationResult,
    )
    stack.tidings.started.append(handle.id)
    await time_env.sleep(timedelta(hours=2))
    # Bounded: with the strict converter the workflow task fails forever and this never ends.
    # Without auto-skipping: waiting on a result lets the shared test server jump its clock
    # years ahead, which every later test on it then lives with.
    with time_env.auto_time_skipping_disabled():
        result = await asyncio.wait_for(handle.result(), timeout=30)
    assert [(c.channel, c.status) for c in result.channels] == [
        (Channel.EMAIL, DeliveryStatus.SENT)
    ]
    assert [m.subject for m in stack.sink.messages] == ["Welcome to MyApp, John!"]


async def test_an_input_that_cannot_be_decoded_fails_the_run_with_the_reason(
    stack: Stack, time_env: WorkflowEnvironment
) -> None:
    """What the edge would refuse, sent past it: the run fails once, its task does not retry."""
    # Nested past pydantic-core's JSON recursion limit; written by hand, since no pydantic
    # serializer would produce it.
    nested = '{"x": ' * 300 + "{}" + "}" * 300
    head = '{"notification_id": "broken-1", "template_version": 1, "priority": "medium",'
    broken = head + ' "request": {"user_id": "user_001", "template_id": "welcome", "data": '
    broken += nested + "}}"
    payload = Payload(metadata={"encoding": b"json/plain"}, data=broken.encode())
    handle = await time_env.client.start_workflow(
        "NotificationWorkflow",
        RawValue(payload),
        id=workflow_id("broken-1"),
        task_queue=workflow_queue(stack.settings.task_queue, Priority.MEDIUM),
    )
    with time_env.auto_time_skipping_disabled(), pytest.raises(WorkflowFailureError) as failed:
        await asyncio.wait_for(handle.result(), timeout=30)
    cause = failed.value.cause
    assert isinstance(cause, ApplicationError) and cause.type == UNDECODABLE
    assert "cannot decode NotificationInput" in cause.message
    history = await handle.fetch_history()
    assert not [e for e in history.events if e.HasField("workflow_task_failed_event_attributes")]
