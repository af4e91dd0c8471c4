"""Enrolling a broadcast's test share in its experiment, the way the client enrols anyone: the
`enroll` update of the ExperimentWorkflow, which assigns the variant, records the enrolment
(experiment + user is its primary key, so a retried page enrols nobody twice) and starts the
user's notification. Built by the worker with its Temporal client and handed to
BroadcastActivities."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from temporalio.client import (
    Client,
    WorkflowExecutionStatus,
    WorkflowUpdateFailedError,
)
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from workflows.experiment import BUSY, FINISHED
from workflows.io import EnrollInput, Enrollment
from workflows.queues import experiment_workflow_id

ENROL_CONCURRENCY = 8  # updates in flight to the one experiment workflow
BUSY_PATIENCE = 60.0  # seconds an experiment may take to hand over to its next run


@dataclass
class EnrolResult:
    enrolled: dict[str, int] = field(default_factory=dict)  # per variant, repeats included
    closed: bool = False  # the experiment has ended: the rest of the sample is not enrolled


Enrol = Callable[[str, Sequence[str], Callable[[], None]], Awaitable[EnrolResult]]


class ExperimentEnroller:
    def __init__(self, client: Client, *, concurrency: int = ENROL_CONCURRENCY) -> None:
        self._client = client
        self._slots = asyncio.Semaphore(concurrency)

    async def __call__(
        self, experiment_id: str, user_ids: Sequence[str], progress: Callable[[], None]
    ) -> EnrolResult:
        result = EnrolResult()

        async def one(user_id: str) -> None:
            if result.closed:
                return
            async with self._slots:
                enrolment = await self._enrol(experiment_id, user_id)
            if enrolment is None:
                result.closed = True
                return
            # A repeat is this broadcast's own enrolment from an earlier attempt of the page:
            # the experiment belongs to the broadcast alone.
            result.enrolled[enrolment.variant] = result.enrolled.get(enrolment.variant, 0) + 1
            progress()

        await asyncio.gather(*(one(u) for u in user_ids))
        return result

    async def _enrol(self, experiment_id: str, user_id: str) -> Enrollment | None:
        """The user's enrolment, or None when the experiment has ended."""
        handle = self._client.get_workflow_handle(experiment_workflow_id(experiment_id))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + BUSY_PATIENCE
        delay = 0.05
        while True:
            try:
                enrolment: Enrollment = await handle.execute_update(
                    "enroll", EnrollInput(user_id=user_id), result_type=Enrollment
                )
                return enrolment
            except WorkflowUpdateFailedError as e:
                cause = e.cause
                kind = cause.type if isinstance(cause, ApplicationError) else None
                if kind == FINISHED:
                    return None
                if kind != BUSY or loop.time() >= deadline:
                    raise
            except RPCError as e:
                # An update admitted while the run continued as new is aborted; the next run
                # takes it. A test that is no longer running takes nobody.
                if e.status is RPCStatusCode.NOT_FOUND:
                    return None
                status = (await handle.describe()).status
                if status is not WorkflowExecutionStatus.RUNNING:
                    return None
                if loop.time() >= deadline:
                    raise
            await asyncio.sleep(delay)
            delay = min(delay * 2, 1.0)
