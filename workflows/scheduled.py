"""ScheduledSendWorkflow: what one firing of a Temporal Schedule does (`tidings schedule ...`).

The schedule starts this workflow at each scheduled time (Temporal appends the time to the
workflow id, so two firings never share a run). It reads that time from the
`TemporalScheduledStartTime` search attribute the schedule sets, and sends one ordinary
NotificationWorkflow whose id is made of the schedule and that time: a repeated start for the
same time finds the notification and sends nothing. A digest action flushes the user's digest
instead (an activity: a workflow cannot signal-with-start); a broadcast action records the
broadcast and starts its BroadcastWorkflow, both keyed by the schedule and that time.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.common import (
    RetryPolicy,
    SearchAttributeKey,
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDReusePolicy,
)
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.workflow import ParentClosePolicy

with workflow.unsafe.imports_passed_through():
    from activities.broadcast import BroadcastActivities
    from activities.broadcast_io import CreateBroadcastInput
    from activities.digest import DigestActivities
    from tidings.models import NotificationStatus
    from tidings.recurring import run_broadcast_id, run_notification_id
    from workflows import search_attributes as sa
    from workflows.broadcast import BroadcastWorkflow
    from workflows.broadcast_io import BroadcastInput
    from workflows.digest_io import FlushDigestInput, ScheduledSendInput, ScheduledSendResult
    from workflows.notification import NotificationWorkflow
    from workflows.queues import broadcast_workflow_id, workflow_id, workflow_queue

SCHEDULED_START = SearchAttributeKey.for_datetime("TemporalScheduledStartTime")
# A schedule's action workflow id ends with the scheduled time: "<id>-2026-11-29T09:00:00Z".
_ID_TIME = re.compile(r"-(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?Z)$")
FLUSH_RETRY = RetryPolicy(maximum_interval=timedelta(minutes=1))


@workflow.defn(name="ScheduledSendWorkflow")
class ScheduledSendWorkflow:
    @workflow.run
    async def run(self, input: ScheduledSendInput) -> ScheduledSendResult:
        at = self._scheduled_time()
        if input.digest_user_id is not None and input.digest_key is not None:
            await workflow.execute_activity_method(
                DigestActivities.flush_digest,
                FlushDigestInput(
                    user_id=input.digest_user_id,
                    key=input.digest_key,
                    task_queue_base=input.task_queue_base,
                    reason=f"schedule {input.schedule_id} at {at.isoformat()}",
                ),
                start_to_close_timeout=timedelta(seconds=30),
                retry_policy=FLUSH_RETRY,
                summary=f"flush digest {input.digest_key}",
            )
            return ScheduledSendResult(scheduled_at=at, started=True)
        if input.broadcast is not None:
            return await self._broadcast(input, input.broadcast, at)
        assert input.notification is not None  # the client gives exactly one action
        notification_id = run_notification_id(input.schedule_id, at)
        prepared = input.notification.model_copy(update={"notification_id": notification_id})
        request = prepared.request
        try:
            await workflow.start_child_workflow(
                NotificationWorkflow.run,
                prepared,
                id=workflow_id(notification_id),
                task_queue=workflow_queue(input.task_queue_base, prepared.priority),
                parent_close_policy=ParentClosePolicy.ABANDON,
                id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                search_attributes=TypedSearchAttributes(
                    [
                        SearchAttributePair(sa.USER, request.user_id),
                        SearchAttributePair(sa.TEMPLATE, request.template_id),
                        SearchAttributePair(sa.PRIORITY, prepared.priority.value),
                        SearchAttributePair(sa.STATUS, NotificationStatus.SCHEDULED.value),
                        SearchAttributePair(sa.CHANNELS, [c.value for c in request.channels or []]),
                    ]
                ),
                static_summary=f"{request.template_id} to {request.user_id}"
                f" (schedule {input.schedule_id}, {at.isoformat()})",
            )
            started = True
        except WorkflowAlreadyStartedError:
            started = False  # this scheduled time's notification exists already
        return ScheduledSendResult(
            scheduled_at=at, notification_id=notification_id, started=started
        )

    async def _broadcast(
        self, input: ScheduledSendInput, broadcast: BroadcastInput, at: datetime
    ) -> ScheduledSendResult:
        """Start this scheduled time's broadcast: its row, then its workflow, both keyed by
        the schedule and the time, so a repeated firing starts nothing new. (A new branch
        taken only by inputs that carry a broadcast, so earlier runs replay unchanged.)"""
        bid = run_broadcast_id(input.schedule_id, at)
        prepared = broadcast.model_copy(update={"broadcast_id": bid})
        await workflow.execute_activity_method(
            BroadcastActivities.create_broadcast_record,
            CreateBroadcastInput(
                broadcast_id=bid,
                template_id=prepared.template_id,
                template_version=prepared.template_version,
                audience=prepared.audience,
                channels=prepared.channels,
                priority=prepared.priority,
            ),
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=FLUSH_RETRY,
            summary=f"record broadcast {bid}",
        )
        channels = [c.value for c in prepared.channels] if prepared.channels else []
        try:
            await workflow.start_child_workflow(
                BroadcastWorkflow.run,
                prepared,
                id=broadcast_workflow_id(bid),
                task_queue=input.task_queue_base,
                parent_close_policy=ParentClosePolicy.ABANDON,
                id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                search_attributes=TypedSearchAttributes(
                    [
                        SearchAttributePair(sa.BROADCAST, bid),
                        SearchAttributePair(sa.TEMPLATE, prepared.template_id),
                        SearchAttributePair(sa.PRIORITY, prepared.priority.value),
                        SearchAttributePair(sa.STATUS, "running"),
                        SearchAttributePair(sa.CHANNELS, channels),
                    ]
                ),
                static_summary=f"broadcast {bid}: {prepared.template_id}"
                f" (schedule {input.schedule_id}, {at.isoformat()})",
            )
            started = True
        except WorkflowAlreadyStartedError:
            started = False  # this scheduled time's broadcast exists already
        return ScheduledSendResult(scheduled_at=at, broadcast_id=bid, started=started)

    def _scheduled_time(self) -> datetime:
        """The firing's scheduled time (not when the run happened to start): the schedule's
        search attribute, else the time Temporal appended to the workflow id, else (a run
        started by hand) the run's own start."""
        info = workflow.info()
        scheduled = info.typed_search_attributes.get(SCHEDULED_START)
        if scheduled is None:
            m = _ID_TIME.search(info.workflow_id)
            scheduled = datetime.fromisoformat(m.group(1)) if m else workflow.now()
        return scheduled.replace(microsecond=0)
