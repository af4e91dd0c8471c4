"""`tidings dev` (what `make run` starts): the whole embedded stack in one foreground process.

- the Temporal dev server (a child process, its history in `<data_dir>/temporal.db`, so a restart
  loses nothing; see starter/devserver.py for the durability the SQLite pragmas give), Web UI on
  `dev_ui_port`, the Tidings* search attributes registered;
- the SMTP sink on `smtp_host:smtp_port`, keeping mail in `<data_dir>/mail` for `tidings mail`;
- the webhook receiver on `dev_webhook_port` (the demo users' `webhook_url` points at it);
- the FCM, APNs, Twilio and Slack emulators on `dev_fcm_port`..`dev_slack_port`, with dev
  credentials kept under `<data_dir>/emulators`; the worker is pointed at each of them unless that
  provider is configured explicitly (starter/emulators.py), so push, SMS and Slack work as shipped;
- the worker, in this process and event loop;
- the demo data (starter/demo_data.py): templates are registered on every start (an unchanged
  template keeps its version), users and their preferences only when missing, so edits survive.

One stack per data directory (a flock on `<data_dir>/dev.lock`). Stopping it (Ctrl-C, SIGTERM,
or setting `stop`) stops everything it started, the dev server's process group included.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from rich.console import Console
from rich.panel import Panel
from rich.table import Table
from sqlalchemy.engine import make_url
from temporalio.client import Client
from temporalio.service import RPCError

from starter import demo_data
from starter import emulators as dev_emulators
from starter.admin import ensure_search_attributes
from starter.client import Tidings
from starter.devserver import (
    AlreadyRunning,
    DevLock,
    DevStackError,
    TemporalDevServer,
    check_ports_free,
)
from starter.webui import search_url
from tidings.devstack.smtp_sink import SmtpSink
from tidings.devstack.webhook_receiver import WebhookReceiver
from tidings.emulators.dev import DevEmulators
from tidings.errors import NotFound
from tidings.settings import Settings
from worker.main import serve
from workflows.connect import connect as connect_temporal
from workflows.search_attributes import ALL

log = logging.getLogger("tidings.dev")

LOCAL_IP = "127.0.0.1"
LOCK_FILE = "dev.lock"
TEMPORAL_DB = "temporal.db"
TEMPORAL_LOG = "temporal.log"
READY_TIMEOUT_SECONDS = 60.0

__all__ = ["AlreadyRunning", "DevStackError", "run_dev", "seed_demo_data", "stack_settings"]


def stack_settings(settings: Settings) -> Settings:
    """The settings the stack's own clients use: the dev server on `dev_temporal_port` and its
    Web UI on `dev_ui_port`, whatever `temporal_address` and `temporal_ui_url` say (those are for
    clients, which may sit elsewhere)."""
    return settings.model_copy(
        update={
            "temporal_address": f"{LOCAL_IP}:{settings.dev_temporal_port}",
            "temporal_ui_url": f"http://localhost:{settings.dev_ui_port}",
        }
    )


async def run_dev(
    settings: Settings,
    *,
    ready: asyncio.Event | None = None,
    stop: asyncio.Event | None = None,
    seed: bool = True,
    banner: bool = True,
) -> None:
    """Run the embedded stack until `stop` is set; `ready` is set once it serves requests.
    Raises AlreadyRunning or DevStackError (one-line messages) when it cannot start, and
    DevStackError when a part stops on its own."""
    stop = stop if stop is not None else asyncio.Event()
    data_dir = settings.data_dir.resolve()
    local = stack_settings(settings)
    with DevLock(data_dir / LOCK_FILE):
        check_ports_free(
            LOCAL_IP,
            {"dev_temporal_port": settings.dev_temporal_port, "dev_ui_port": settings.dev_ui_port},
        )
        check_ports_free(settings.smtp_host, {"smtp_port": settings.smtp_port})
        check_ports_free(LOCAL_IP, {"dev_webhook_port": settings.dev_webhook_port})
        check_ports_free(dev_emulators.HOST, dev_emulators.port_settings(settings))
        server = TemporalDevServer(
            db_file=data_dir / TEMPORAL_DB,
            log_file=data_dir / TEMPORAL_LOG,
            port=settings.dev_temporal_port,
            ui_port=settings.dev_ui_port,
            namespace=settings.temporal_namespace,
            search_attributes=ALL,
            ip=LOCAL_IP,
        )
        async with contextlib.AsyncExitStack() as stack:
            stack.push_async_callback(server.stop)
            await server.start()
            client = await _connect_when_ready(server, local)
            sink = SmtpSink(settings.smtp_host, settings.smtp_port, maildir=data_dir / "mail")
            await stack.enter_async_context(sink)
            receiver = WebhookReceiver(LOCAL_IP, settings.dev_webhook_port)
            await stack.enter_async_context(receiver)
            try:
                emulators = await stack.enter_async_context(dev_emulators.dev_emulators(settings))
            except OSError as e:
                raise DevStackError(f"the provider emulators could not start: {e}") from e
            worker_settings, emulated = dev_emulators.with_emulators(local, emulators)

            worker_stop = asyncio.Event()
            worker = asyncio.create_task(
                serve(worker_settings, worker_stop), name="tidings-dev-worker"
            )
            stack.push_async_callback(_stop_worker, worker, worker_stop)
            if seed:
                async with await Tidings.connect(local, temporal=client) as tidings:
                    await seed_demo_data(tidings, webhook_base=receiver.url)
            if banner:
                _print_banner(settings, local, server, sink, receiver, emulators, emulated)
            log.info("dev stack ready on %s", server.address)
            if ready is not None:
                ready.set()
            await _until_stopped(stop, worker, server)
            log.info("stopping the dev stack")


async def seed_demo_data(tidings: Tidings, *, webhook_base: str | None = None) -> None:
    """Register the prototype's demo templates through the client, and its users with their
    preferences and devices when they do not exist yet (so later edits are kept)."""
    created: set[str] = set()
    for user in demo_data.USERS:
        with contextlib.suppress(NotFound):
            await tidings.get_user(user.id)
            continue
        fields = user.model_dump()
        if webhook_base:
            fields["webhook_url"] = f"{webhook_base}/users/{user.id}"
        await tidings.upsert_user(fields)
        created.add(user.id)
    for prefs in demo_data.PREFERENCES:
        if prefs.user_id in created:
            await tidings.set_preferences(prefs)
    for device in demo_data.DEVICES:
        if device.user_id in created:
            await tidings.add_device(device)
    for definition in demo_data.TEMPLATES:
        template = await tidings.register_template(definition)
        log.info("demo template %s is at v%d", template.id, template.version)


async def _connect_when_ready(server: TemporalDevServer, settings: Settings) -> Client:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + READY_TIMEOUT_SECONDS
    last_error = ""
    while True:
        if server.process is not None and server.process.returncode is not None:
            raise DevStackError(
                f"the Temporal dev server exited with code {server.process.returncode}"
                f" ({server.log_tail()}); full log in {server.log_file}"
            )
        try:
            async with asyncio.timeout(5):
                client = await connect_temporal(settings)
                await ensure_search_attributes(client, settings.temporal_namespace)
            return client
        except (RuntimeError, RPCError, TimeoutError) as e:
            last_error = str(e) or type(e).__name__
        if loop.time() > deadline:
            raise DevStackError(
                f"the Temporal dev server did not answer on {server.address} within"
                f" {READY_TIMEOUT_SECONDS:.0f}s ({last_error}); see {server.log_file}"
            )
        await asyncio.sleep(0.2)


async def _until_stopped(
    stop: asyncio.Event, worker: asyncio.Task[None], server: TemporalDevServer
) -> None:
    assert server.process is not None
    stopping = asyncio.create_task(stop.wait())
    server_exit = asyncio.create_task(server.process.wait())
    try:
        await asyncio.wait({stopping, worker, server_exit}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopping.cancel()
        server_exit.cancel()
    if stop.is_set():
        return
    if worker.done():
        error = None if worker.cancelled() else worker.exception()
        raise DevStackError(f"the worker stopped: {error or 'cancelled'}") from error
    raise DevStackError(
        f"the Temporal dev server exited with code {server.process.returncode}"
        f" ({server.log_tail()}); full log in {server.log_file}"
    )


async def _stop_worker(worker: asyncio.Task[None], worker_stop: asyncio.Event) -> None:
    worker_stop.set()
    if worker.done():
        return  # its failure, if any, was already reported by _until_stopped
    try:
        await worker
    except Exception:
        log.exception("the worker failed while stopping")


def _print_banner(
    settings: Settings,
    local: Settings,
    server: TemporalDevServer,
    sink: SmtpSink,
    receiver: WebhookReceiver,
    emulators: DevEmulators,
    emulated: list[str],
) -> None:
    ui = f"http://localhost:{server.ui_port}"
    data_dir = settings.data_dir
    by_user = search_url(ui, settings.temporal_namespace, 'TidingsUser="user_001"')
    rows = Table.grid(padding=(0, 2))
    rows.add_column(style="bold cyan", no_wrap=True)
    rows.add_column(overflow="fold")
    rows.add_row("Temporal", f"{server.address}  (namespace {settings.temporal_namespace})")
    rows.add_row("Web UI", ui)
    rows.add_row("", f'filter with  TidingsUser="user_001"  in its search box, or {by_user}')
    rows.add_row("SMTP sink", f"{sink.host}:{sink.port} -> {data_dir / 'mail'}  (`tidings mail`)")
    rows.add_row("Webhooks", f"{receiver.url}  (demo users post to /users/<id>)")
    for key in dev_emulators.PROVIDERS:
        emulator = getattr(emulators, key)
        use = (
            "the worker sends here"
            if key in emulated
            else f"idle: the worker uses the configured TIDINGS_{key.upper()}_* provider"
        )
        rows.add_row(f"{emulator.name} emulator", f"{emulator.url}  ({use})")
    twilio = emulators.twilio.url
    rows.add_row("", f"dev keys in {data_dir / 'emulators'}; see what arrived:"
                 f" curl {twilio}/_emulator/received")  # fmt: skip
    curl = f"""curl -X POST {twilio}/_emulator/faults -d '{{"mode":"5xx","count":3}}'"""
    rows.add_row("", f"inject a fault: tidings emulator faults twilio 5xx --count 3, or {curl}")
    rows.add_row("Worker", f"task queue {settings.task_queue}, in this process")
    database = make_url(local.resolved_database_url).render_as_string(hide_password=True)
    rows.add_row("Database", database)
    rows.add_row(
        "Data dir",
        f"{data_dir}  (Temporal history {data_dir / TEMPORAL_DB}, log {data_dir / TEMPORAL_LOG})",
    )
    rows.add_row("Try", "tidings demo   |   tidings send user_001 welcome -d app_name=MyApp"
                 " -d user_name=John --wait")  # fmt: skip
    if settings.temporal_address != local.temporal_address:
        rows.add_row(
            "Note",
            f"TIDINGS_TEMPORAL_ADDRESS is {settings.temporal_address}; set it to"
            f" {local.temporal_address} so the tidings CLI reaches this stack",
        )
    rows.add_row("", "[bold]Ctrl-C to stop[/bold]")
    Console().print(Panel(rows, title="Tidings dev stack is running", expand=False))
