"""A whole Tidings deployment in-process for workflow and integration tests: a SQLite store, a
real SMTP sink, a real webhook receiver, and the worker's own Workers on a fresh task queue."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from temporalio.client import Client
from temporalio.service import RPCError

from starter.client import NotificationRef, Tidings
from starter.dev import demo_data
from starter.dev.smtp_sink import SmtpSink
from starter.dev.webhook_receiver import WebhookReceiver
from tidings.models import User
from tidings.settings import Settings
from tidings.store import Store
from worker.main import build_senders, close_senders, run_workers, workers_for
from workflows.io import NotificationInput


class RecordingTidings(Tidings):
    """Remembers the workflows it started, so a test can end them and leave nothing behind
    that would fire on a task queue whose worker has gone (the shared time-skipping server
    stops skipping while such work is pending)."""

    started: list[str]

    async def _start(self, prepared: NotificationInput) -> NotificationRef:
        ref = await super()._start(prepared)
        self.started.append(ref.workflow_id)
        return ref

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
