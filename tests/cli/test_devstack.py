"""`tidings dev` / run_dev: the embedded stack starts, delivers, refuses a second copy, keeps its
history across a restart (the SQLite file), and leaves no process behind when it stops."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from temporalio.client import WorkflowExecutionStatus

from starter.client import Tidings
from starter.devstack import AlreadyRunning, DevStackError, run_dev, stack_settings
from tests.cli.helpers import Cli, one_line_error
from tidings.devstack.smtp_sink import list_mail
from tidings.models import NotificationStatus
from tidings.queues import workflow_id
from tidings.settings import Settings

pytestmark = pytest.mark.integration

TIDINGS = Path(sys.executable).parent / "tidings"
WELCOME = {"app_name": "MyApp", "user_name": "John"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def dev_env_vars(data_dir: Path) -> dict[str, str]:
    port = free_port()
    return {
        "TIDINGS_ENVIRONMENT": "test",
        "TIDINGS_DATA_DIR": str(data_dir),
        "TIDINGS_DEV_TEMPORAL_PORT": str(port),
        "TIDINGS_TEMPORAL_ADDRESS": f"127.0.0.1:{port}",
        "TIDINGS_DEV_UI_PORT": str(free_port()),
        "TIDINGS_SMTP_PORT": str(free_port()),
        "TIDINGS_DEV_WEBHOOK_PORT": str(free_port()),
        "TIDINGS_TASK_QUEUE": f"dev-{uuid.uuid4().hex[:8]}",
    }


def settings_from(env: dict[str, str]) -> Settings:
    fields = {k.removeprefix("TIDINGS_").lower(): v for k, v in env.items()}
    return Settings.model_validate({**fields, "_env_file": None})


def processes_mentioning(path: Path) -> list[int]:
    """Live processes whose command line names `path` (the dev server gets its db file)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if str(path).encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue  # it exited meanwhile
    return found


@asynccontextmanager
async def dev_stack(settings: Settings) -> AsyncIterator[None]:
    ready, stop = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(run_dev(settings, ready=ready, stop=stop, banner=False))
    started = asyncio.create_task(ready.wait())
    async with asyncio.timeout(90):
        await asyncio.wait({task, started}, return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        started.cancel()
        await task  # raises why it did not start
    try:
        yield
    finally:
        stop.set()
        async with asyncio.timeout(60):
            await task


async def wait_for_mail(maildir: Path, subject: str) -> None:
    async with asyncio.timeout(60):
        while not any(m.subject == subject for m in list_mail(maildir)):
            await asyncio.sleep(0.1)


async def test_dev_stack_delivers_refuses_a_twin_and_survives_a_restart(tmp_path: Path) -> None:
    env = dev_env_vars(tmp_path / "data")
    settings = settings_from(env)
    data_dir = settings.data_dir.resolve()
    temporal_db = data_dir / "temporal.db"

    async with dev_stack(settings):
        async with await Tidings.connect(stack_settings(settings)) as tidings:
            ref = await tidings.notify(user_id="user_001", template_id="welcome", data=WELCOME)
        await wait_for_mail(data_dir / "mail", "Welcome to MyApp, John!")
        assert processes_mentioning(temporal_db)

        with pytest.raises(AlreadyRunning, match=rf"already running \(pid {os.getpid()}\)"):
            await run_dev(settings, banner=False)
        one_line_error(await Cli(env)("dev"), "tidings dev is already running")

    assert processes_mentioning(temporal_db) == []

    async with dev_stack(settings):
        async with await Tidings.connect(stack_settings(settings)) as tidings:
            handle = tidings.temporal.get_workflow_handle(workflow_id(ref.notification_id))
            description = await handle.describe()
            result = await tidings.status(ref.notification_id)
        assert processes_mentioning(temporal_db)
    # Still in its engagement window: the run itself came back from the SQLite file.
    assert description.status is WorkflowExecutionStatus.RUNNING
    assert result.status is NotificationStatus.SENT
    assert processes_mentioning(temporal_db) == []


async def test_a_port_in_use_is_named_and_nothing_is_started(tmp_path: Path) -> None:
    settings = settings_from(dev_env_vars(tmp_path / "data"))
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", settings.dev_ui_port))
        busy.listen()

        with pytest.raises(
            DevStackError, match=f"port {settings.dev_ui_port} .*TIDINGS_DEV_UI_PORT"
        ):
            await run_dev(settings, banner=False)

    assert processes_mentioning(settings.data_dir.resolve() / "temporal.db") == []


async def test_tidings_dev_process_stops_everything_on_sigterm(tmp_path: Path) -> None:
    env = dev_env_vars(tmp_path / "data")
    temporal_db = (tmp_path / "data" / "temporal.db").resolve()
    proc = await asyncio.create_subprocess_exec(
        str(TIDINGS), "dev", "--no-seed",
        env={**os.environ, **env, "COLUMNS": "200"},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    assert proc.stdout is not None
    try:
        async with asyncio.timeout(90):
            banner = b""
            while b"Ctrl-C to stop" not in banner:
                line = await proc.stdout.readline()
                assert line, f"tidings dev ended before it was ready: {banner.decode()}"
                banner += line
        assert f"127.0.0.1:{env['TIDINGS_DEV_TEMPORAL_PORT']}".encode() in banner
        assert processes_mentioning(temporal_db)

        proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(60):
            await proc.wait()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()

    assert proc.returncode == 0
    assert processes_mentioning(temporal_db) == []
