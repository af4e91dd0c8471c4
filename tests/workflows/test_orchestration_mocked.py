"""NotificationWorkflow's orchestration branches with its activities replaced by functions
registered under the same names (as samples-python does), on the time-skipping server.

These pin behaviour, not internals: what each branch ends as (status, per-channel results, reasons)
and which activities it called in what order. The real activities are covered against real
servers in test_notification.py, test_fallback.py and tests/integration.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import pytest
from temporalio import activity
from temporalio.client import Client, WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.errors import NOT_FOUND, PERMANENT, TRANSIENT
from activities.io import DeliverInput, DeliverOutput, PlanInput, PlanResult, RecordInput
from tidings.models import (
    Channel,
    DeliveryStatus,
    EngagementEvent,
    NotificationRequest,
    NotificationResult,
    NotificationStatus,
    Priority,
)
from workflows.io import CancelInput, NotificationInput
from workflows.notification import NotificationWorkflow
from workflows.queues import channel_queue, workflow_id, workflow_queue

# A deliver answer: a DeliveryStatus to succeed with, or an ApplicationError to fail the attempt.
Answer = DeliveryStatus | ApplicationError


def permanent(reason: str) -> ApplicationError:
    return ApplicationError(reason, type=PERMANENT, non_retryable=True)


def transient(reason: str) -> ApplicationError:
    return ApplicationError(reason, type=TRANSIENT)


@dataclass
class Script:
    """What the mocked activities answer, and what they were asked."""

    plans: list[Callable[[PlanInput], PlanResult] | ApplicationError]
    # Per channel, one answer per attempt; the last one repeats.
    deliveries: dict[Channel, list[Answer]] = field(default_factory=dict)
    plan_calls: list[PlanInput] = field(default_factory=list)
    deliver_calls: list[tuple[Channel, int]] = field(default_factory=list)  # (channel, attempt)
    records: list[RecordInput] = field(default_factory=list)

    def activities(self) -> list[Callable[..., Any]]:
        @activity.defn(name="plan_delivery")
        async def plan_delivery(input: PlanInput) -> PlanResult:
            self.plan_calls.append(input)
            answer = self.plans[min(len(self.plan_calls), len(self.plans)) - 1]
            if isinstance(answer, ApplicationError):
                raise answer
            return answer(input)

        @activity.defn(name="deliver")
        async def deliver(input: DeliverInput) -> DeliverOutput:
            attempt = activity.info().attempt
            self.deliver_calls.append((input.channel, attempt))
            answers = self.deliveries.get(input.channel, [DeliveryStatus.SENT])
            answer = answers[min(attempt, len(answers)) - 1]
            if isinstance(answer, ApplicationError):
                raise answer
            return DeliverOutput(status=answer, target=f"{input.channel.value}-target")

        @activity.defn(name="record_notification")
        async def record_notification(input: RecordInput) -> None:
            self.records.append(input)

        @activity.defn(name="record_engagement")
        async def record_engagement(event: EngagementEvent) -> bool:
            return True

        @activity.defn(name="record_channel")
        async def record_channel(input: Any) -> None:
            """Registered ahead of the workflow recording each channel as it lands (issue 7,
            defect 1), so these tests keep running when it does."""

        return [plan_delivery, deliver, record_notification, record_engagement, record_channel]

    @property
    def delivered_channels(self) -> list[Channel]:
        """Channels in the order their first attempt started."""
        return list(dict.fromkeys(c for c, _ in self.deliver_calls))


def send_now(
    channels: list[Channel], fallback: list[Channel] | None = None
) -> Callable[[PlanInput], PlanResult]:
    return lambda input: PlanResult(
        channels=channels, send_at=input.not_before, fallback=fallback or []
    )


def defer(by: timedelta, reason: str) -> Callable[[PlanInput], PlanResult]:
    return lambda input: PlanResult(
        channels=[Channel.EMAIL], send_at=input.not_before + by, deferred_reason=reason
    )


@contextlib.asynccontextmanager
async def workers(client: Client, script: Script, queue: str) -> AsyncIterator[None]:
    """One Worker per queue the workflow uses, every one with the same mocked activities."""
    acts = script.activities()
    queues = [workflow_queue(queue, Priority.MEDIUM)] + [
        channel_queue(queue, c, Priority.MEDIUM) for c in Channel
    ]
    async with contextlib.AsyncExitStack() as stack:
        for q in queues:
            await stack.enter_async_context(
                Worker(client, task_queue=q, workflows=[NotificationWorkflow], activities=acts)
            )
        yield


def notification_input(
    queue: str,
    channels: list[Channel],
    *,
    fallback: list[Channel] | None = None,
    expires_at: datetime | None = None,
) -> NotificationInput:
    request = NotificationRequest(
        user_id="ada", template_id="hello", channels=channels, expires_at=expires_at
    )
    return NotificationInput(
        notification_id=queue,
        request=request,
        template_version=1,
        priority=Priority.MEDIUM,
        engagement_window_hours=0.01,
        task_queue_base=queue,
        fallback=fallback or [],
    )


async def run(
    env: WorkflowEnvironment,
    script: Script,
    *,
    channels: list[Channel],
    fallback: list[Channel] | None = None,
    expires_in: timedelta | None = None,
) -> NotificationResult:
    queue = f"mocked-{uuid.uuid4().hex[:8]}"
    now: datetime = await env.get_current_time()
    expires_at = now + expires_in if expires_in else None
    input = notification_input(queue, channels, fallback=fallback, expires_at=expires_at)
    async with workers(env.client, script, queue):
        handle = await env.client.start_workflow(
            NotificationWorkflow.run,
            input,
            id=workflow_id(queue),
            task_queue=workflow_queue(queue, Priority.MEDIUM),
        )
        await env.sleep(timedelta(days=2))
        return await handle.result()


def statuses(result: NotificationResult) -> list[tuple[Channel, DeliveryStatus]]:
    return [(c.channel, c.status) for c in result.channels]


async def test_every_channel_failing_walks_the_fallback_order(
    time_env: WorkflowEnvironment,
) -> None:
    first_round = [Channel.WEBHOOK, Channel.SMS]
    script = Script(
        plans=[send_now(first_round, fallback=[Channel.EMAIL, Channel.IN_APP, Channel.PUSH])],
        deliveries={
            Channel.WEBHOOK: [permanent("HTTP 410")],
            Channel.SMS: [permanent("invalid number")],
            Channel.EMAIL: [permanent("mailbox does not exist")],
            Channel.IN_APP: [DeliveryStatus.DELIVERED],
        },
    )
    result = await run(time_env, script, channels=first_round, fallback=[Channel.EMAIL])
    assert result.status is NotificationStatus.SENT
    assert statuses(result) == [
        (Channel.WEBHOOK, DeliveryStatus.FAILED),
        (Channel.SMS, DeliveryStatus.FAILED),
        (Channel.EMAIL, DeliveryStatus.FAILED),
        (Channel.IN_APP, DeliveryStatus.DELIVERED),
    ]
    # Fallback runs one channel at a time, in order, and stops at the first success.
    assert script.delivered_channels[2:] == [Channel.EMAIL, Channel.IN_APP]
    assert set(script.delivered_channels[:2]) == set(first_round)
    fallback_reason = result.channels[3].reason or ""
    assert fallback_reason.startswith("fallback after webhook, sms")
    assert result.channels[0].reason == "HTTP 410"


async def test_every_channel_and_every_fallback_failing_ends_failed(
    time_env: WorkflowEnvironment,
) -> None:
    script = Script(
        plans=[send_now([Channel.WEBHOOK], fallback=[Channel.EMAIL])],
        deliveries={c: [permanent(f"{c.value} refused")] for c in Channel},
    )
    result = await run(time_env, script, channels=[Channel.WEBHOOK])
    assert result.status is NotificationStatus.FAILED
    assert statuses(result) == [
        (Channel.WEBHOOK, DeliveryStatus.FAILED),
        (Channel.EMAIL, DeliveryStatus.FAILED),
    ]
    assert script.records[-1].status is NotificationStatus.FAILED  # the database saw the end


async def test_transient_errors_are_retried_and_permanent_ones_are_not(
    time_env: WorkflowEnvironment,
) -> None:
    script = Script(
        plans=[send_now([Channel.WEBHOOK, Channel.EMAIL])],
        deliveries={
            Channel.WEBHOOK: [
                transient("HTTP 503"),
                transient("HTTP 503"),
                DeliveryStatus.DELIVERED,
            ],
            Channel.EMAIL: [permanent("mailbox does not exist")],
        },
    )
    result = await run(time_env, script, channels=[Channel.WEBHOOK, Channel.EMAIL])
    assert result.status is NotificationStatus.SENT  # at least one channel went out
    assert sorted(script.deliver_calls) == [
        (Channel.EMAIL, 1),
        (Channel.WEBHOOK, 1),
        (Channel.WEBHOOK, 2),
        (Channel.WEBHOOK, 3),
    ]
    by_channel = {c.channel: c for c in result.channels}
    assert by_channel[Channel.WEBHOOK].status is DeliveryStatus.DELIVERED
    assert by_channel[Channel.EMAIL].status is DeliveryStatus.FAILED
    assert by_channel[Channel.EMAIL].reason == "mailbox does not exist"


async def test_a_deferral_is_recorded_then_sent_at_the_deferred_time(
    time_env: WorkflowEnvironment,
) -> None:
    reason = "quiet hours until 08:00 Europe/Paris"
    script = Script(plans=[defer(timedelta(hours=3), reason), send_now([Channel.EMAIL])])
    result = await run(time_env, script, channels=[Channel.EMAIL])
    assert result.status is NotificationStatus.SENT
    first, second = script.plan_calls
    # Re-planned at the deferred time, not before; sent only after that.
    assert second.not_before - first.not_before >= timedelta(hours=3)
    assert script.deliver_calls == [(Channel.EMAIL, 1)]
    # The plan's own activity records the deferral (FOLDED_RECORDS_PATCH): it is asked to,
    # and no status record of the run's repeats it (test_notification covers the row it writes).
    assert first.record is not None and second.record is not None
    assert not [r for r in script.records if r.reason == reason]
    assert result.reason is None  # the deferral's reason no longer applies once sent


async def test_a_user_deleted_before_the_send_ends_failed_without_sending(
    time_env: WorkflowEnvironment,
) -> None:
    gone = ApplicationError("user 'ada' not found", type=NOT_FOUND, non_retryable=True)
    script = Script(plans=[gone])
    result = await run(time_env, script, channels=[Channel.EMAIL])
    assert result.status is NotificationStatus.FAILED
    assert result.reason == "user 'ada' not found"
    assert len(script.plan_calls) == 1  # NotFound is not retried
    assert script.deliver_calls == []
    assert script.records[-1].status is NotificationStatus.FAILED


async def test_deferred_past_its_expiry_it_expires_unsent(time_env: WorkflowEnvironment) -> None:
    script = Script(plans=[defer(timedelta(hours=8), "quiet hours until 07:00 UTC")])
    result = await run(time_env, script, channels=[Channel.EMAIL], expires_in=timedelta(hours=1))
    assert result.status is NotificationStatus.EXPIRED
    assert statuses(result) == [(Channel.EMAIL, DeliveryStatus.EXPIRED)]
    assert script.deliver_calls == []
    assert script.records[-1].status is NotificationStatus.EXPIRED


def send_now_with_in_app(channels: list[Channel]) -> Callable[[PlanInput], PlanResult]:
    """A plan that delivers in-app itself when the run asks it to (IN_APP_WITH_PLAN_PATCH)."""

    def plan(input: PlanInput) -> PlanResult:
        delivered = None
        if input.in_app is not None:
            delivered = DeliverOutput(status=DeliveryStatus.DELIVERED, target="inbox", attempt=1)
        return PlanResult(channels=channels, send_at=input.not_before, in_app=delivered)

    return plan


async def test_the_plan_delivers_in_app_and_the_run_sends_only_the_rest(
    time_env: WorkflowEnvironment,
) -> None:
    channels = [Channel.EMAIL, Channel.IN_APP]
    script = Script(plans=[send_now_with_in_app(channels)])
    result = await run(time_env, script, channels=channels)
    asked = script.plan_calls[0].in_app
    assert asked is not None and asked.channel is Channel.IN_APP
    assert (asked.record, asked.finish) == (True, True)  # its row, and maybe the final status
    assert script.delivered_channels == [Channel.EMAIL]  # in-app: no send of the run's own
    assert result.status is NotificationStatus.SENT
    assert statuses(result) == [
        (Channel.EMAIL, DeliveryStatus.SENT),
        (Channel.IN_APP, DeliveryStatus.DELIVERED),
    ]


async def test_a_cancel_while_the_plan_may_be_sending_is_refused(
    time_env: WorkflowEnvironment,
) -> None:
    """The plan may deliver in-app before it returns: a cancel (or reschedule) arriving while it
    runs is refused, not accepted and then contradicted by an inbox item."""
    planning, release = asyncio.Event(), asyncio.Event()
    channels = [Channel.IN_APP]

    async def held(input: PlanInput) -> PlanResult:
        planning.set()
        await release.wait()
        return send_now_with_in_app(channels)(input)

    @activity.defn(name="plan_delivery")
    async def plan_delivery(input: PlanInput) -> PlanResult:
        return await held(input)

    script = Script(plans=[send_now(channels)])
    acts = [plan_delivery, *script.activities()[1:]]
    queue = f"mocked-{uuid.uuid4().hex[:8]}"
    input = notification_input(queue, channels)
    async with Worker(
        time_env.client,
        task_queue=workflow_queue(queue, Priority.MEDIUM),
        workflows=[NotificationWorkflow],
        activities=acts,
    ):
        handle = await time_env.client.start_workflow(
            NotificationWorkflow.run,
            input,
            id=workflow_id(queue),
            task_queue=workflow_queue(queue, Priority.MEDIUM),
        )
        await planning.wait()
        cancel = handle.execute_update(
            "cancel", CancelInput(reason="too late"), result_type=NotificationResult
        )
        with pytest.raises(WorkflowUpdateFailedError) as refused:
            # Accepted, it would wait for a cancellation that never comes: bounded.
            await asyncio.wait_for(cancel, timeout=60)
        assert "being sent" in str(refused.value.cause)
        release.set()
        result = await handle.result()
    assert result.status is NotificationStatus.SENT
    assert statuses(result) == [(Channel.IN_APP, DeliveryStatus.DELIVERED)]
