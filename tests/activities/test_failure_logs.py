"""Defect 8: one log line per failed attempt, with the classified reason and the attempt number;
a traceback only for an error nobody classified. Runs the real deliver activity on a real Worker
(the SDK's own failure logging is part of what is tested)."""

from __future__ import annotations

import logging
import uuid
from datetime import timedelta

import pytest
from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from activities.io import DeliverInput
from activities.notification import NotificationActivities
from tests.fakes import RecordingSender
from tidings.channels.base import RateLimitedError, TransientChannelError
from tidings.models import Channel
from tidings.store import Store
from worker.logs import install_log_filter


@workflow.defn(name="DeliverOnceForLogs")
class DeliverOnce:
    """Calls the deliver activity once, so each test sees exactly one failed attempt."""

    @workflow.run
    async def run(self, input: DeliverInput) -> str:
        try:
            await workflow.execute_activity(
                "deliver",
                input,
                start_to_close_timeout=timedelta(seconds=10),
                retry_policy=RetryPolicy(maximum_attempts=1),
            )
        except ActivityError:
            return "failed"
        return "sent"


async def _deliver_once(env: WorkflowEnvironment, store: Store, error: BaseException) -> str:
    install_log_filter()
    activities = NotificationActivities(store, {Channel.EMAIL: RecordingSender(script=[error])})
    queue = f"logs-{uuid.uuid4().hex[:8]}"
    async with Worker(
        env.client,
        task_queue=queue,
        workflows=[DeliverOnce],
        activities=[activities.deliver],
        workflow_runner=UnsandboxedWorkflowRunner(),
    ):
        return await env.client.execute_workflow(
            DeliverOnce.run,
            DeliverInput(
                notification_id="n-123",
                channel=Channel.EMAIL,
                user_id="ada",
                template_id="hello",
                template_version=1,
                data={"name": "Ada"},
            ),
            id=queue,
            task_queue=queue,
        )


def _warnings(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno >= logging.WARNING]


async def test_a_transient_failure_logs_one_line_without_a_traceback(
    time_env: WorkflowEnvironment, store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    assert await _deliver_once(time_env, store, TransientChannelError("HTTP 503")) == "failed"
    [record] = _warnings(caplog)
    assert record.getMessage() == "deliver email n-123 attempt 1 failed: transient: HTTP 503"
    assert record.exc_info is None
    assert "Traceback" not in caplog.text


async def test_a_rate_limit_says_when_it_retries(
    time_env: WorkflowEnvironment, store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    await _deliver_once(time_env, store, RateLimitedError("HTTP 429", retry_after=3))
    [record] = _warnings(caplog)
    assert record.getMessage().endswith("failed: rate limited: HTTP 429 (retry in 3s)")
    assert "Traceback" not in caplog.text


async def test_an_unclassified_error_keeps_its_traceback(
    time_env: WorkflowEnvironment, store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    assert await _deliver_once(time_env, store, KeyError("token")) == "failed"
    [record] = _warnings(caplog)
    assert record.getMessage().startswith("Completing activity as failed")
    assert record.exc_info is not None and isinstance(record.exc_info[1], KeyError)
    assert "Traceback" in caplog.text and "KeyError: 'token'" in caplog.text
