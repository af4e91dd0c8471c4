"""Starting the NotificationWorkflow of a broadcast recipient who must wait (quiet hours, a
frequency cap), the way the client starts any notification: the workflow id is the business key
(`notification/bc-<broadcast>-<user>`) with USE_EXISTING, so a retried page starts nobody twice."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence

from temporalio.client import Client
from temporalio.exceptions import WorkflowAlreadyStartedError

from tidings.broadcasts import DeferredRecipient
from tidings.models import NotificationRequest
from workflows.io import NotificationInput
from workflows.starts import start_notification

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
                await start_notification(self._client, prepared, broadcast_id=r.broadcast_id)
