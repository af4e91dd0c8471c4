"""The benchmark's own deployment: an embedded dev server (SQLite history file in a temporary
directory, started with `make run`'s flags: `server_flags()`), a store (SQLite in the same
directory, or a throwaway schema in a given PostgreSQL database), an SMTP sink, a webhook
receiver (every user's webhook_url), and the worker's real Workers, all on free ports.

The Workers run as they do in `tidings dev` and in production, in a process of their own
(bench/worker_child.py), while the client (the front door, `Tidings.notify`), the sink and the
receiver stay in the bench's process; `worker_process=False` runs them in the bench's process
instead, for the benches that measure the worker's memory as their own."""

from __future__ import annotations

import asyncio
import contextlib
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email import policy
from email.parser import BytesParser
from pathlib import Path

import httpx
from sqlalchemy import and_, func, insert, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine
from temporalio.client import Client
from temporalio.runtime import Runtime
from temporalio.testing import WorkflowEnvironment

from bench.meters import CoreWarnings, SlowCallbacks
from bench.sqlcount import UNCOUNTED, SqlCounter
from bench.worker_child import WorkerChild
from bench.workers import Tuning, notification_workers, trivial_worker
from starter.client import Tidings
from starter.dev.devserver import server_flags, start_retrying
from starter.dev.smtp_sink import SmtpSink
from starter.dev.webhook_receiver import WebhookReceiver
from tidings.models import Channel, TemplateContent, TemplateDefinition, User
from tidings.settings import Settings
from tidings.store import Store
from tidings.store.tables import DeliveryRow, InboxRow, NotificationRow, UserRow
from tidings.targets import LOOPBACK
from worker.main import build_senders, close_senders, run_workers
from workflows import search_attributes
from workflows.converter import DATA_CONVERTER

BIN = Path(sys.executable).parent
TEMPLATE_ID = "bench_alert"
HOOK_TEMPLATE_ID = "bench_hook"  # the webhook channel alone, for the fault measurements
NOTIFICATION_HEADER = "X-Tidings-Notification"
# `make run`'s dev server flags: the benches measure the server it runs.
SERVER_FLAGS = server_flags()


class SinkIndex:
    """Indexes the sink's messages by the notification id header, reading each message once."""

    def __init__(self, sink: SmtpSink) -> None:
        self._sink = sink
        self._seen = 0
        self.received: dict[str, list[datetime]] = {}

    def refresh(self) -> dict[str, list[datetime]]:
        messages = self._sink.messages
        parser = BytesParser(policy=policy.default)
        for mail in messages[self._seen :]:
            header = parser.parsebytes(mail.raw, headersonly=True).get(NOTIFICATION_HEADER)
            if header is not None:
                self.received.setdefault(str(header), []).append(mail.received_at)
        self._seen = len(messages)
        return self.received


@dataclass
class BenchStack:
    client: Client
    tidings: Tidings
    store: Store
    sink: SmtpSink
    settings: Settings
    tuning: Tuning
    users: list[str]
    store_label: str
    core_warnings: CoreWarnings
    receiver: WebhookReceiver
    sink_index: SinkIndex = field(init=False)
    sql: SqlCounter | None = None  # the bench process's statements (with the workers' in it)
    slow_callbacks: SlowCallbacks | None = None
    worker: WorkerChild | None = None  # None: the Workers run in this process

    def __post_init__(self) -> None:
        self.sink_index = SinkIndex(self.sink)

    @contextlib.asynccontextmanager
    async def trivial_worker(self, queue: str) -> AsyncIterator[None]:
        """The ceiling's Worker on `queue` for the block, where the notification Workers run."""
        if self.worker is not None:
            async with self.worker.trivial(queue):
                yield
            return
        async with trivial_worker(self.client, queue, self.tuning):
            yield

    def sdk_warning_samples(self) -> dict[str, str]:
        """The first message of each kind of SDK warning, from either process."""
        samples = dict(self.worker.last_samples) if self.worker is not None else {}
        return {**samples, **self.core_warnings.samples}

    async def inbox_count(self, prefix: str) -> int:
        stmt = select(func.count()).where(
            InboxRow.notification_id.startswith(prefix, autoescape=True)
        )
        async with self.store.engine.connect() as conn:
            await conn.execution_options(**UNCOUNTED)
            return int((await conn.execute(stmt)).scalar_one())

    async def inbox_rows(self, prefix: str) -> list[tuple[str, datetime]]:
        stmt = select(InboxRow.notification_id, InboxRow.created_at).where(
            InboxRow.notification_id.startswith(prefix, autoescape=True)
        )
        async with self.store.engine.connect() as conn:
            await conn.execution_options(**UNCOUNTED)
            return [(row[0], row[1]) for row in (await conn.execute(stmt)).all()]

    async def webhook_statuses(self, prefix: str) -> dict[str, tuple[str, str | None]]:
        """Notification id -> (its status, its webhook channel's status or None) as the store
        has them, for the notifications whose id starts with `prefix`."""
        stmt = (
            select(NotificationRow.id, NotificationRow.status, DeliveryRow.status)
            .outerjoin(
                DeliveryRow,
                and_(
                    DeliveryRow.notification_id == NotificationRow.id,
                    DeliveryRow.channel == Channel.WEBHOOK.value,
                ),
            )
            .where(NotificationRow.id.startswith(prefix, autoescape=True))
        )
        async with self.store.engine.connect() as conn:
            await conn.execution_options(**UNCOUNTED)
            return {row[0]: (row[1], row[2]) for row in (await conn.execute(stmt)).all()}


async def start_dev_server(tmp: Path, runtime: Runtime | None = None) -> WorkflowEnvironment:
    """A bench's dev server: `make run`'s flags, the project's search attributes and converter,
    its history in `tmp`; started again on other ports when one was taken meanwhile."""
    return await start_retrying(
        lambda: WorkflowEnvironment.start_local(
            dev_server_existing_path=str(BIN / "temporal"),
            dev_server_database_filename=str(tmp / "temporal.db"),
            dev_server_extra_args=SERVER_FLAGS,
            search_attributes=search_attributes.ALL,
            data_converter=DATA_CONVERTER,
            runtime=runtime,
        )
    )


async def insert_users(store: Store, ids: list[str]) -> None:
    """Many users straight into the table, an email each (the client's one-at-a-time upsert
    would dominate a run that measures sending)."""
    now = datetime.now(UTC)
    rows = [
        {
            "id": user_id,
            "email": f"{user_id}@example.com",
            "timezone": "UTC",
            "locale": "en",
            "webhook_urls": [],
            "attributes": {},
            "created_at": now,
            "updated_at": now,
        }
        for user_id in ids
    ]
    async with store.engine.begin() as conn:
        for start in range(0, len(rows), 1000):
            await conn.execute(insert(UserRow), rows[start : start + 1000])


async def seed(tidings: Tidings, users: int, webhook_base: str) -> list[str]:
    ids = [f"bench-u{i}" for i in range(users)]
    for user_id in ids:
        await tidings.upsert_user(
            User.model_validate(
                {
                    "id": user_id,
                    "email": f"{user_id}@example.com",
                    "webhook_url": f"{webhook_base}/hooks/{user_id}",
                }
            )
        )
    await tidings.register_template(
        TemplateDefinition(
            id=TEMPLATE_ID,
            name="Benchmark alert",
            channels=[Channel.EMAIL, Channel.IN_APP],
            content=TemplateContent(
                subject="Alert {{ n }}", text="Notification {{ n }} for {{ user }}."
            ),
            sample_data={"n": 0, "user": "someone"},
        )
    )
    await tidings.register_template(
        TemplateDefinition(
            id=HOOK_TEMPLATE_ID,
            name="Benchmark webhook",
            channels=[Channel.WEBHOOK],
            content=TemplateContent(
                subject="Hook {{ n }}", text="Notification {{ n }} for {{ user }}."
            ),
            sample_data={"n": 0, "user": "someone"},
        )
    )
    return ids


@contextlib.asynccontextmanager
async def _store(
    database_url: str | None, tmp: Path
) -> AsyncIterator[tuple[Store, str, str | None]]:
    """SQLite beside the history file, or a fresh schema in PostgreSQL (dropped afterwards) so
    the benchmark never mixes its rows with anyone else's in a shared database; with its label
    and its PostgreSQL schema."""
    if database_url is None:
        store = await Store.open(f"sqlite+aiosqlite:///{tmp / 'tidings.db'}")
        try:
            yield store, "SQLite (WAL)", None
        finally:
            await store.close()
        return
    url = make_url(database_url)
    if url.get_backend_name() != "postgresql":
        raise ValueError(f"database_url: expected a postgresql:// URL, got {url.drivername!r}")
    url = url.set(drivername="postgresql+asyncpg")
    schema = f"tidings_bench_{uuid.uuid4().hex[:8]}"
    admin = create_async_engine(url)
    try:
        async with admin.begin() as conn:
            await conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        store = await Store.open(
            url.render_as_string(hide_password=False),
            connect_args={"server_settings": {"search_path": schema}},
        )
        try:
            yield store, f"PostgreSQL ({url.host}:{url.port or 5432}/{url.database})", schema
        finally:
            await store.close()
            async with admin.begin() as conn:
                await conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    finally:
        await admin.dispose()


@contextlib.asynccontextmanager
async def _workers(
    env: WorkflowEnvironment,
    store: Store,
    http: httpx.AsyncClient,
    settings: Settings,
    tuning: Tuning,
    *,
    worker_process: bool,
    schema: str | None,
) -> AsyncIterator[WorkerChild | None]:
    """The notification Workers, running until the block ends: in a child process sharing the
    store (the same SQLite file, or the same PostgreSQL schema), or in this one."""
    if worker_process:
        async with WorkerChild.running(settings, tuning, schema) as child:
            yield child
        return
    senders = build_senders(settings, store, http)
    workers = notification_workers(env.client, store, senders, settings, tuning)
    stop = asyncio.Event()
    running = asyncio.create_task(run_workers(workers, stop))
    try:
        yield None
    finally:
        stop.set()
        await running
        await close_senders(senders)


@contextlib.asynccontextmanager
async def bench_stack(
    *,
    database_url: str | None = None,
    tuning: Tuning | None = None,
    users: int = 50,
    engagement_window_hours: float | None = None,
    worker_process: bool = True,
) -> AsyncIterator[BenchStack]:
    tuning = tuning or Tuning()
    core_warnings = CoreWarnings()
    with tempfile.TemporaryDirectory(prefix="tidings-bench-") as tmp_name:
        tmp = Path(tmp_name)
        env = await start_dev_server(tmp, core_warnings.runtime())
        try:
            async with (
                SmtpSink() as sink,
                WebhookReceiver() as receiver,
                _store(database_url, tmp) as (store, store_label, schema),
                httpx.AsyncClient(follow_redirects=False) as http,
            ):
                settings = Settings(
                    _env_file=None,
                    environment="test",
                    data_dir=tmp,
                    database_url=store.engine.url.render_as_string(hide_password=False),
                    temporal_address=env.client.service_client.config.target_host,
                    task_queue=f"bench-{uuid.uuid4().hex[:8]}",
                    # The worker process on the bench's loop: uvloop, as the worker, unless the
                    # bench runs on asyncio's (--loop asyncio).
                    uvloop=type(asyncio.get_running_loop()).__module__.startswith("uvloop"),
                    smtp_port=sink.port,
                    webhook_allowed_networks=list(LOOPBACK),  # the receiver is on loopback
                )
                if engagement_window_hours is not None:
                    settings = settings.model_copy(
                        update={"engagement_window_hours": engagement_window_hours}
                    )
                tidings = Tidings(settings, store, env.client)
                async with _workers(
                    env, store, http, settings, tuning, worker_process=worker_process, schema=schema
                ) as child:
                    user_ids = await seed(tidings, users, receiver.url)
                    yield BenchStack(
                        env.client,
                        tidings,
                        store,
                        sink,
                        settings,
                        tuning,
                        user_ids,
                        store_label,
                        core_warnings,
                        receiver,
                        sql=SqlCounter(store.engine),
                        worker=child,
                    )
        finally:
            await env.shutdown()
