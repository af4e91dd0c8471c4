"""Running the embedded stack (`run_dev`, or `tidings dev` as a process) in tests.

Every port is 0: the servers the stack owns bind any free port and the stack reports what it
bound, and the Temporal dev server (a process that cannot report its port) is restarted on new
ports when one was taken meanwhile. So no test depends on a port staying free (issue 7, #11).
"""

from __future__ import annotations

import asyncio
import os
import re
import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from starter.dev.stack import run_dev
from tidings.settings import Settings

TIDINGS = Path(sys.executable).parent / "tidings"
PORT_SETTINGS = (
    "dev_temporal_port", "dev_ui_port", "dev_api_port", "smtp_port", "dev_webhook_port",
    "dev_fcm_port", "dev_apns_port", "dev_twilio_port", "dev_slack_port",
)  # fmt: skip


def dev_env_vars(data_dir: Path) -> dict[str, str]:
    return {
        "TIDINGS_ENVIRONMENT": "test",
        "TIDINGS_DATA_DIR": str(data_dir),
        **{f"TIDINGS_{name.upper()}": "0" for name in PORT_SETTINGS},
        "TIDINGS_TASK_QUEUE": f"dev-{uuid.uuid4().hex[:8]}",
    }


def settings_from(env: dict[str, str]) -> Settings:
    fields = {k.removeprefix("TIDINGS_").lower(): v for k, v in env.items()}
    return Settings.model_validate({**fields, "_env_file": None})


def running_env(env: dict[str, str], running: Settings) -> dict[str, str]:
    """`env` pointed at a running stack: the ports it bound, its Temporal address."""
    ports = {f"TIDINGS_{name.upper()}": str(getattr(running, name)) for name in PORT_SETTINGS}
    return {**env, **ports, "TIDINGS_TEMPORAL_ADDRESS": running.temporal_address}


def processes_mentioning(path: Path) -> list[int]:
    """Live processes, other than this one, whose command line or environment names `path`:
    the dev server gets its db file on its command line, the worker its data dir in
    TIDINGS_DATA_DIR (pass the data dir, or a file in it, to find both)."""
    found = []
    needles = {str(path).encode(), str(path.parent).encode()}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            environ = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue  # it exited meanwhile
        if str(path).encode() in cmdline or any(
            v.startswith(b"TIDINGS_DATA_DIR=") and v.split(b"=", 1)[1] in needles for v in environ
        ):
            found.append(int(entry.name))
    return found


@asynccontextmanager
async def dev_stack(settings: Settings) -> AsyncIterator[Settings]:
    """run_dev in this process; yields the settings its clients use (the bound ports)."""
    ready, stop = asyncio.Event(), asyncio.Event()
    bound: list[Settings] = []
    task = asyncio.create_task(
        run_dev(settings, ready=ready, stop=stop, banner=False, running=bound.append)
    )
    started = asyncio.create_task(ready.wait())
    async with asyncio.timeout(90):
        await asyncio.wait({task, started}, return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        started.cancel()
        await task  # raises why it did not start
    try:
        yield bound[0]
    finally:
        stop.set()
        async with asyncio.timeout(60):
            await task


async def start_dev_process(
    env: dict[str, str], *, seed: bool = False
) -> tuple[asyncio.subprocess.Process, str]:
    """`tidings dev` as users run it; returns the process and its banner, once ready."""
    proc = await asyncio.create_subprocess_exec(
        str(TIDINGS), "dev", "--seed" if seed else "--no-seed",
        env={**os.environ, **env, "COLUMNS": "200"},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    assert proc.stdout is not None
    banner = b""
    try:
        async with asyncio.timeout(90):
            while b"Ctrl-C to stop" not in banner:
                line = await proc.stdout.readline()
                assert line, f"tidings dev ended before it was ready: {banner.decode()}"
                banner += line
    except BaseException:
        proc.kill()
        await proc.wait()
        raise
    return proc, banner.decode()


def banner_address(banner: str, label: str) -> str:
    """The first address after `label` on the banner (`host:port` or a URL)."""
    found = re.search(rf"{re.escape(label)}\s+(\S+)", banner)
    assert found, f"no {label} in the banner:\n{banner}"
    return found.group(1)
