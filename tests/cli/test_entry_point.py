"""The `tidings` console script as users run it, and what it says when there is no stack."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cli.helpers import Cli, one_line_error
from tests.ports import refused_port

TIDINGS = Path(sys.executable).parent / "tidings"


@pytest.fixture
def closed_port() -> Iterator[int]:
    with refused_port() as port:
        yield port


@pytest.fixture
def unreachable_env(tmp_path: Path, closed_port: int) -> dict[str, str]:
    return {
        "TIDINGS_ENVIRONMENT": "test",
        "TIDINGS_DATA_DIR": str(tmp_path),
        "TIDINGS_TEMPORAL_ADDRESS": f"127.0.0.1:{closed_port}",
    }


async def test_no_temporal_is_one_line_with_a_hint(unreachable_env: dict[str, str]) -> None:
    cli = Cli(unreachable_env)

    for args in (("stats",), ("user", "list"), ("send", "user_001", "welcome")):
        one_line_error(await cli(*args), "cannot reach Temporal", "connection refused", "make run")


async def test_bad_setting_is_one_line(unreachable_env: dict[str, str]) -> None:
    cli = Cli({**unreachable_env, "TIDINGS_SMTP_PORT": "lots"})

    one_line_error(await cli("stats"), "settings: TIDINGS_SMTP_PORT")


async def test_console_script_exits_1_with_one_line(unreachable_env: dict[str, str]) -> None:
    """The real process: its exit code must be 1 every time, not a crash while the interpreter
    shuts down with the Temporal client's threads still around (temporalio/sdk-python#300)."""
    env = {**os.environ, **unreachable_env}

    async def run() -> tuple[int, bytes]:
        proc = await asyncio.create_subprocess_exec(
            str(TIDINGS), "stats", env=env, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        _, stderr = await proc.communicate()
        assert proc.returncode is not None
        return proc.returncode, stderr

    for code, stderr in await asyncio.gather(*(run() for _ in range(6))):
        assert code == 1, stderr.decode()
        lines = stderr.decode().strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: cannot reach Temporal"), lines


async def test_console_script_help(tmp_path: Path) -> None:
    proc = await asyncio.create_subprocess_exec(
        str(TIDINGS), "--help", stdout=asyncio.subprocess.PIPE, env={**os.environ, "COLUMNS": "200"}
    )
    stdout, _ = await proc.communicate()

    assert proc.returncode == 0
    for command in ("dev", "demo", "send", "send-bulk", "status", "inbox", "stats", "mail"):
        assert f" {command} " in stdout.decode()
