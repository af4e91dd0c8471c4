"""Starting the NotificationWorkflow of a broadcast recipient who must wait (quiet hours, a
frequency cap), the way the client starts any notification: the workflow id is the business key
(`notification/bc-<broadcast>-<user>`) with USE_EXISTING, so a retried page starts nobody twice."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence

from temporalio.client import Client
from temporalio.common import (
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.exceptions import WorkflowAlreadyStartedError

from tidings.broadcasts import DeferredRecipient
from tidings.models import NotificationRequest, NotificationStatus
from workflows import search_attributes as sa
from workflows.io import NotificationInput
from workflows.notification import NotificationWorkflow
from workflows.queues import workflow_id, workflow_queue

START_CONCURRENCY = 16


class DeferredStarter:
    def __init__(self, client: Client, *, task_queue: str, engagement_window_hours: float) -> None:
        self._client = client
        self._task_queue = task_queue
        self._window = engagement_window_hours
        self._slots = asyncio.Semaphore(START_CONCURRENCY)

    async def __call__(self, recipients: Sequence[DeferredRecipient]) -> None:
        await asyncio.gather(*(self._start(r) for r in recipients))

    async def _start(self, r: DeferredRecipient) -> None:
        prepared = NotificationInput(
            notification_id=r.notification_id,
            request=NotificationRequest(
                user_id=r.user_id,
                template_id=r.template_id,
                data=dict(r.data),
                channels=r.channels,
                priority=r.priority,
            ),
            template_version=r.template_version,
            priority=r.priority,
            engagement_window_hours=self._window,
            task_queue_base=self._task_queue,
        )
        async with self._slots:
            # A finished run of the same recipient was started by an earlier attempt.
            with contextlib.suppress(WorkflowAlreadyStartedError):
                await self._client.start_workflow(
                    NotificationWorkflow.run,
                    prepared,
                    id=workflow_id(r.notification_id),
                    task_queue=workflow_queue(self._task_queue, r.priority),
                    id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
                    id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                    search_attributes=TypedSearchAttributes(
                        [
                            SearchAttributePair(sa.USER, r.user_id),
                            SearchAttributePair(sa.TEMPLATE, r.template_id),
                            SearchAttributePair(sa.PRIORITY, r.priority.value),
                            SearchAttributePair(sa.STATUS, NotificationStatus.SCHEDULED.value),
                            SearchAttributePair(sa.CHANNELS, [c.value for c in r.channels or []]),
                            SearchAttributePair(sa.BROADCAST, r.broadcast_id),
                        ]
                    ),
                    static_summary=(
                        f"{r.template_id} v{r.template_version} to {r.user_id}"
                        f" ({r.priority.value}), broadcast {r.broadcast_id}"
                    ),
                )
