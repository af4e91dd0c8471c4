"""A whole Tidings deployment in-process for workflow and integration tests: a SQLite store, a
real SMTP sink, a real webhook receiver, and the worker's own Workers on a fresh task queue."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from google.protobuf.empty_pb2 import Empty
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client
from temporalio.service import RPCError

from starter.client import BulkResult, NotificationRef, Recipient, Tidings
from starter.dev import demo_data
from starter.dev.smtp_sink import SmtpSink
from starter.dev.webhook_receiver import WebhookReceiver
from tidings.models import NotificationResult, NotificationStatus, User
from tidings.send_time import minute_offset
from tidings.settings import Settings
from tidings.store import Store
from tidings.targets import LOOPBACK
from worker.main import build_senders, close_senders, run_workers, workers_for
from workflows.io import NotificationInput
from workflows.queues import URGENT_SUFFIX


class RecordingTidings(Tidings):
    """Remembers the workflows it started, so a test can end them and leave nothing behind
    that would fire on a task queue whose worker has gone (the shared time-skipping server
    stops skipping while such work is pending)."""

    started: list[str]

    async def now(self) -> datetime:
        """The time-skipping server's clock when there is one (it runs ahead of the wall clock
        once a test skipped time), else the wall clock."""
        try:
            response = await self.temporal.test_service.get_current_time(Empty())
        except RPCError:
            return await super().now()  # a dev server: no test service, real time
        return response.time.ToDatetime().replace(tzinfo=UTC)

    async def _start(self, prepared: NotificationInput) -> NotificationRef:
        ref = await super()._start(prepared)
        self.started.append(ref.workflow_id)
        return ref

    async def notify_many(
        self,
        recipients: Sequence[str | Recipient | dict[str, Any]],
        template_id: str,
        /,
        *,
        atomic: bool = False,
        **fields: Any,
    ) -> BulkResult:
        result = await super().notify_many(recipients, template_id, atomic=atomic, **fields)
        self.started += [ref.workflow_id for ref in result.refs]
        return result

    async def terminate_started(self) -> None:
        for wf_id in self.started:
            notification_id = wf_id.removeprefix("notification/")
            with contextlib.suppress(RPCError):
                # Let in-flight deliveries finish first: the time-skipping server stays locked
                # by an activity whose workflow was terminated under it.
                await self.wait_sent(notification_id, within=10)
                await self.temporal.get_workflow_handle(wf_id).terminate("test finished")


@dataclass
class Stack:
    tidings: RecordingTidings
    store: Store
    sink: SmtpSink
    receiver: WebhookReceiver
    settings: Settings

    async def seed(self) -> None:
        for user in demo_data.USERS:
            await self.tidings.upsert_user(user)
        for prefs in demo_data.PREFERENCES:
            await self.tidings.set_preferences(prefs)
        for template in demo_data.TEMPLATES:
            await self.tidings.register_template(template)

    async def add_user(self, user_id: str, **fields: Any) -> User:
        fields.setdefault("email", f"{user_id}@example.com")
        return await self.tidings.upsert_user(User(id=user_id, **fields))


def make_settings(tmp_path: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "environment": "test",
        "data_dir": tmp_path,
        "database_url": f"sqlite+aiosqlite:///{tmp_path / 'tidings.db'}",
        "task_queue": f"tidings-{uuid.uuid4().hex[:8]}",
        # The SMTP sink, webhook receiver and emulators listen on loopback.
        "webhook_allowed_networks": list(LOOPBACK),
        **overrides,
    }
    return Settings(_env_file=None, **values)


@asynccontextmanager
async def running_stack(client: Client, tmp_path: Path, **overrides: Any) -> AsyncIterator[Stack]:
    async with SmtpSink(maildir=tmp_path / "mail") as sink, WebhookReceiver() as receiver:
        settings = make_settings(tmp_path, smtp_port=sink.port, **overrides)
        store = await Store.open(settings.resolved_database_url)
        async with httpx.AsyncClient(follow_redirects=False) as http:
            senders = build_senders(settings, store, http)
            workers = workers_for(settings, client, store, senders)
            stop = asyncio.Event()
            task = asyncio.create_task(run_workers(workers, stop))
            tidings = RecordingTidings(settings, store, client)
            tidings.started = []
            try:
                yield Stack(tidings, store, sink, receiver, settings)
            finally:
                await tidings.terminate_started()
                stop.set()
                await task
                await close_senders(senders)
                await store.close()


_TASK_ENDS = {
    EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED,
    EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED,
    EventType.EVENT_TYPE_WORKFLOW_TASK_TIMED_OUT,
}
_TASK_FAILED = {
    EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED,
    EventType.EVENT_TYPE_WORKFLOW_TASK_TIMED_OUT,
}


async def _task_trouble(client: Client, workflow_id: str, run_id: str | None) -> str | None:
    """Why this run's workflow task is failing, None if it is not, "" if its first workflow
    task has not ended yet (a run that may still turn out to be stuck)."""
    handle = client.get_workflow_handle(workflow_id, run_id=run_id)
    raw = (await handle.describe()).raw_description
    pending = raw.pending_workflow_task if raw.HasField("pending_workflow_task") else None
    if pending is not None and pending.attempt > 1:
        return f"workflow task at attempt {pending.attempt}"
    ends = [e for e in (await handle.fetch_history()).events if e.event_type in _TASK_ENDS]
    if ends and ends[-1].event_type in _TASK_FAILED:
        last = ends[-1]
        failure = last.workflow_task_failed_event_attributes.failure.message
        return f"last workflow task {EventType.Name(last.event_type)}: {failure}"[:500]
    return "" if not ends else None


async def assert_no_failing_workflow_tasks(
    client: Client, query: str = "", *, within: float = 10.0, settle: float = 1.0
) -> None:
    """Fail if any open run matching `query` (a visibility query; "" for every open run) has a
    workflow task that failed or timed out: such a run retries its task forever and never ends.
    Runs whose first workflow task has not ended yet are waited for (up to `within` seconds),
    and the runs are listed again for `settle` seconds, because visibility lags a start: a run
    started by a batch of bad inputs just sent is judged once it is listed and the worker has
    tried it. Needs a server with visibility (the dev server): the time-skipping server cannot
    list workflows."""
    running = 'ExecutionStatus = "Running"'
    full = f"({query}) AND {running}" if query else running
    loop = asyncio.get_running_loop()
    settled, deadline = loop.time() + settle, loop.time() + within
    while True:
        troubles: dict[str, str] = {}
        async for wf in client.list_workflows(full):
            with contextlib.suppress(RPCError):  # it ended between the list and the look
                trouble = await _task_trouble(client, wf.id, wf.run_id)
                if trouble is not None:
                    troubles[wf.id] = trouble
        failing = {wf_id: why for wf_id, why in troubles.items() if why}
        assert not failing, f"runs with failing workflow tasks: {failing}"
        if not troubles and loop.time() >= settled:
            return
        assert loop.time() < deadline, (
            f"runs whose first workflow task never ended: {sorted(troubles)}"
        )
        await asyncio.sleep(0.2)


def task_queue_query(settings: Settings) -> str:
    """The visibility query for the runs of one stack (normal and urgent workflow queues)."""
    queue = settings.task_queue
    return f'TaskQueue = "{queue}" OR TaskQueue = "{queue}{URGENT_SUFFIX}"'


def assert_sent_in_the_first_hour(result: NotificationResult, requested_at: datetime) -> None:
    """A send_at="optimal" notification with no engagement history anywhere goes in the window's
    first hour: at once, or, when the request came in the minutes before the user's own minute
    of the hour under way (tidings.send_time.minute_offset, 0-14), at that minute. Which of
    the two depends on the wall clock, so a test accepts either and nothing else."""
    if result.status is NotificationStatus.SENT:
        return
    assert result.status is NotificationStatus.SCHEDULED, result
    assert result.send_at is not None, result
    assert requested_at <= result.send_at <= requested_at + timedelta(minutes=15), result
    # Zones are offset by whole quarter hours, so the minute in UTC tells the local minute.
    assert result.send_at.minute % 15 == minute_offset(result.user_id), result
