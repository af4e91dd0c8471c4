"""`tidings dev` (what `make run` starts): the whole embedded stack in one foreground process.

- the Temporal dev server (a child process, its history in `<data_dir>/temporal.db`, so a restart
  loses nothing; see starter/dev/devserver.py for the durability the SQLite pragmas give), Web UI on
  `dev_ui_port`, the Tidings* search attributes registered;
- the SMTP sink on `smtp_host:smtp_port`, keeping mail in `<data_dir>/mail` for `tidings mail`;
- the webhook receiver on `dev_webhook_port` (the demo users' `webhook_url` points at it);
- the FCM, APNs, Twilio and Slack emulators on `dev_fcm_port`..`dev_slack_port`, with dev
  credentials kept under `<data_dir>/emulators`; the worker is pointed at each of them unless
  that provider is configured explicitly (starter/dev/emulator_control.py), so push, SMS and
  Slack work as shipped;
- the worker, `python -m worker` as a child process (starter/dev/worker_process.py);
- the demo data (starter/dev/demo_data.py): templates are registered on every start (an unchanged
  template keeps its version), users and their preferences only when missing, so edits survive.

One stack per data directory (a flock on `<data_dir>/dev.lock`). Stopping it (Ctrl-C, SIGTERM,
or setting `stop`) stops everything it started, the dev server's process group included.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from pydantic import SecretStr
from rich.console import Console
from rich.panel import Panel
from rich.table import Table
from sqlalchemy.engine import make_url
from temporalio.client import Client
from temporalio.service import RPCError

from starter.admin import ensure_search_attributes
from starter.client import Tidings
from starter.dev import emulator_control as dev_emulators
from starter.dev.api_server import DevApi
from starter.dev.demo_data import seed_demo_data
from starter.dev.devserver import (
    AlreadyRunning,
    DevLock,
    DevStackError,
    TemporalDevServer,
    check_ports_free,
    pick_port,
)
from starter.dev.emulators.dev import DevEmulators
from starter.dev.smtp_sink import SmtpSink
from starter.dev.webhook_receiver import WebhookReceiver
from starter.dev.worker_process import WorkerProcess
from starter.webui import search_url
from tidings import api_keys
from tidings.api_keys import Scope
from tidings.payload_keys import new_key_entry
from tidings.settings import DEV_PAYLOAD_KEY_FILE, Settings
from tidings.store import Store
from tidings.targets import LOOPBACK
from workflows.connect import connect as connect_temporal
from workflows.search_attributes import ALL

log = logging.getLogger("tidings.dev")

LOCAL_IP = "127.0.0.1"
LOCK_FILE = "dev.lock"
TEMPORAL_DB = "temporal.db"
TEMPORAL_LOG = "temporal.log"
DEV_KEY_FILE = "dev-api-key"
READY_TIMEOUT_SECONDS = 60.0
START_ATTEMPTS = 5
# How a stop stays within STOP_BUDGET_SECONDS (the promise of `tidings dev` on SIGTERM): the
# worker (worker_process: SIGTERM, SIGKILL after 2 s), then each local server, then the dev
# server (devserver.STOP_TIMEOUT_SECONDS, then SIGKILL).
PART_STOP_SECONDS = 1.0
STOP_BUDGET_SECONDS = 10.0  # as starter/cli/dev.py promises


class _Server(Protocol):
    async def start(self) -> None: ...
    async def stop(self) -> None: ...


__all__ = ["AlreadyRunning", "DevStackError", "run_dev", "stack_settings"]


def stack_settings(settings: Settings) -> Settings:
    """The settings the stack's own clients use: the dev server on `dev_temporal_port` and its
    Web UI on `dev_ui_port`, whatever `temporal_address` and `temporal_ui_url` say (those are for
    clients, which may sit elsewhere)."""
    # The webhook receiver and the emulators listen on loopback: allow it for this stack only.
    allowed = list(dict.fromkeys([*settings.webhook_allowed_networks, *LOOPBACK]))
    return settings.model_copy(
        update={
            "temporal_address": f"{LOCAL_IP}:{settings.dev_temporal_port}",
            "temporal_ui_url": f"http://localhost:{settings.dev_ui_port}",
            "webhook_allowed_networks": allowed,
        }
    )


async def run_dev(
    settings: Settings,
    *,
    ready: asyncio.Event | None = None,
    stop: asyncio.Event | None = None,
    seed: bool = True,
    banner: bool = True,
    running: Callable[[Settings], None] | None = None,
) -> None:
    """Run the embedded stack until `stop` is set; `ready` is set once it serves requests, after
    `running` got the settings its clients use (the ports it bound filled in: a port set to 0
    means any free one). Raises AlreadyRunning or DevStackError (one-line messages) when it
    cannot start, and DevStackError when a part stops on its own. Once `stop` is set it returns
    within STOP_BUDGET_SECONDS, whatever the workflows are doing."""
    stop = stop if stop is not None else asyncio.Event()
    data_dir = settings.data_dir.resolve()
    with DevLock(data_dir / LOCK_FILE):
        check_ports_free(
            LOCAL_IP,
            {
                "dev_temporal_port": settings.dev_temporal_port,
                "dev_ui_port": settings.dev_ui_port,
                "dev_api_port": settings.dev_api_port,
            },
        )
        # Payloads are encrypted in the dev stack too (a key kept under the data directory),
        # and the Web UI decodes them through the stack's codec endpoint.
        settings = with_payload_keys(settings, data_dir)
        api_port = settings.dev_api_port or pick_port(LOCAL_IP)
        settings = settings.model_copy(update={"dev_api_port": api_port})
        if settings.public_base_url is None:
            # Links in the stack's messages (tracking, provider callbacks) point at its own API.
            public = f"http://{LOCAL_IP}:{api_port}"
            settings = settings.model_copy(update={"public_base_url": public})
        api_key = await development_key(stack_settings(settings), data_dir)
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
            ui_codec_endpoint=f"http://{LOCAL_IP}:{api_port}/codec/{api_key}",
        )
        async with contextlib.AsyncExitStack() as stack:
            stack.push_async_callback(server.stop)
            client = await _start_temporal(server, settings)
            sink = SmtpSink(settings.smtp_host, settings.smtp_port, maildir=data_dir / "mail")
            await _enter_bounded(stack, sink)
            receiver = WebhookReceiver(LOCAL_IP, settings.dev_webhook_port)
            await _enter_bounded(stack, receiver)
            try:
                emulators = dev_emulators.dev_emulators(settings)
                await _enter_bounded(stack, emulators)
            except OSError as e:
                raise DevStackError(f"the provider emulators could not start: {e}") from e
            settings = _bound(settings, server, sink, receiver, emulators)
            local = stack_settings(settings)
            worker_settings, emulated = dev_emulators.with_emulators(local, emulators)

            worker = WorkerProcess(worker_settings)
            stack.push_async_callback(worker.stop)
            await worker.start()
            if seed:
                async with await Tidings.connect(local, temporal=client) as tidings:
                    await seed_demo_data(tidings, webhook_base=receiver.url)
            api = DevApi(await Tidings.connect(local, temporal=client), LOCAL_IP, api_port)
            try:
                await _enter_bounded(stack, api)
            except OSError as e:
                raise DevStackError(f"the HTTP API could not start on {api.url}: {e}") from e
            if banner:
                _print_banner(settings, local, server, sink, receiver, emulators, emulated, api_key)
            log.info("dev stack ready on %s", server.address)
            if running is not None:
                running(local)
            if ready is not None:
                ready.set()
            await _until_stopped(stop, worker, server)
            log.info("stopping the dev stack")


async def development_key(settings: Settings, data_dir: Path) -> str:
    """The stack's API key (every scope), kept in `data_dir/DEV_KEY_FILE` (mode 0600) so that a
    restart prints the same key; a new one is created when the file is missing or its key has
    been revoked."""
    path = data_dir / DEV_KEY_FILE
    store = await Store.open(settings.resolved_database_url)
    try:
        if path.exists():
            kept = path.read_text(encoding="utf-8").strip()
            found_id = api_keys.key_id(kept)
            found = await store.api_key_with_digest(found_id) if found_id else None
            live = found is not None and found[0].revoked_at is None
            if live and found is not None and api_keys.matches(kept, found[1]):
                return kept
        new = api_keys.generate()
        await store.add_api_key(new, "development (tidings dev)", list(Scope))
    finally:
        await store.close()
    _write_private(path, new.key)
    return new.key


def with_payload_keys(settings: Settings, data_dir: Path) -> Settings:
    """`settings` with TIDINGS_PAYLOAD_KEYS, from the environment or else from the key file the
    stack keeps under the data directory (made on first start, mode 0600); clients started with
    the same data directory in development read that file too (workflows.converter)."""
    if settings.payload_keys is not None:
        return settings
    path = data_dir / DEV_PAYLOAD_KEY_FILE
    if not path.exists():
        _write_private(path, new_key_entry("dev1"))
    keys = SecretStr(path.read_text(encoding="utf-8").strip())
    return settings.model_copy(update={"payload_keys": keys})


def _write_private(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600)
    path.chmod(0o600)
    path.write_text(text + "\n", encoding="utf-8")


def _bound(
    settings: Settings,
    server: TemporalDevServer,
    sink: SmtpSink,
    receiver: WebhookReceiver,
    emulators: DevEmulators,
) -> Settings:
    """`settings` with the ports every part actually listens on (they differ where 0 was set)."""
    update: dict[str, Any] = {
        "dev_temporal_port": server.port,
        "dev_ui_port": server.ui_port,
        "smtp_port": sink.port,
        "dev_webhook_port": receiver.port,
    }
    for provider in dev_emulators.PROVIDERS.values():
        update[provider.port_setting] = getattr(emulators, provider.key).port
    return settings.model_copy(update=update)


async def _start_temporal(server: TemporalDevServer, settings: Settings) -> Client:
    """Start the dev server and connect. With ports left to the stack (0), a server that exits
    while starting (another process took a port between pick_port and its bind, or one of the
    ports it picks itself) is started again on new ports."""
    for attempt in range(1, START_ATTEMPTS + 1):
        await server.start()
        local = settings.model_copy(
            update={"dev_temporal_port": server.port, "dev_ui_port": server.ui_port}
        )
        try:
            return await _connect_when_ready(server, stack_settings(local))
        except DevStackError as e:
            if not (server.auto_ports and server.exited() and attempt < START_ATTEMPTS):
                raise
            log.warning("the Temporal dev server did not start (%s); trying other ports", e)
            await server.stop()
    raise AssertionError("unreachable: the last attempt raises")


async def _enter_bounded(stack: contextlib.AsyncExitStack, part: _Server) -> None:
    """Start a local server and register a stop that cannot hold up the stack's shutdown."""
    await part.start()

    async def stop() -> None:
        try:
            async with asyncio.timeout(PART_STOP_SECONDS):
                await part.stop()
        except TimeoutError:
            log.warning("%s did not stop within %.0fs; leaving it", type(part).__name__,
                        PART_STOP_SECONDS)  # fmt: skip

    stack.push_async_callback(stop)


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
    stop: asyncio.Event, worker: WorkerProcess, server: TemporalDevServer
) -> None:
    assert server.process is not None and worker.process is not None
    stopping = asyncio.create_task(stop.wait())
    server_exit = asyncio.create_task(server.process.wait())
    worker_exit = asyncio.create_task(worker.process.wait())
    waits = {stopping, server_exit, worker_exit}
    try:
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for wait in waits:
            wait.cancel()
    if stop.is_set():
        return
    if worker.process.returncode is not None:
        raise DevStackError(
            f"the worker exited with code {worker.process.returncode} (its log is above)"
        )
    raise DevStackError(
        f"the Temporal dev server exited with code {server.process.returncode}"
        f" ({server.log_tail()}); full log in {server.log_file}"
    )


def _print_banner(
    settings: Settings,
    local: Settings,
    server: TemporalDevServer,
    sink: SmtpSink,
    receiver: WebhookReceiver,
    emulators: DevEmulators,
    emulated: list[str],
    api_key: str,
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
    api = f"http://{LOCAL_IP}:{settings.dev_api_port}"
    rows.add_row("HTTP API", f"{api}  (docs {api}/docs; codec endpoint {api}/codec, through"
                 " which the Web UI shows payloads decrypted)")  # fmt: skip
    rows.add_row(
        "API key",
        f"{api_key}  (every scope; also in {data_dir / DEV_KEY_FILE}); send it as"
        f" Authorization: Bearer <key>: curl -H 'Authorization: Bearer {api_key}' {api}/v1/stats",
    )
    rows.add_row("Payloads", f"encrypted (AES-256-GCM), key in {data_dir / DEV_PAYLOAD_KEY_FILE}")
    rows.add_row("Worker", f"task queue {settings.task_queue}, a child process (python -m worker)")
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
