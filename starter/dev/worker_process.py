"""The dev stack's worker: `python -m worker` as a child process, configured through TIDINGS_*
variables built from the stack's settings (its bound ports and the emulators' credentials).

A child rather than a task in the stack's event loop: `starter` does not import `worker` (the
worker is a process of its own in production too), and a child can be killed when its graceful
shutdown takes longer than `tidings dev` may (the worker waits up to 30 s for activities).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
from enum import Enum
from pathlib import Path
from typing import Any

from pydantic import BaseModel, SecretStr

from starter.dev.devserver import die_with_parent, track, untrack
from tidings.settings import Settings

STOP_TIMEOUT_SECONDS = 2.0
KILL_TIMEOUT_SECONDS = 1.0


def _plain(value: Any) -> Any:
    """`value` as JSON-able data, secrets revealed (the child needs them; they go through its
    environment, never a file or a log)."""
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    if isinstance(value, BaseModel):
        return {k: _plain(getattr(value, k)) for k in type(value).model_fields}
    if isinstance(value, dict):
        return {str(_plain(k)): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_plain(v) for v in value]
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, Path):
        return str(value)
    return value


def settings_env(settings: Settings) -> dict[str, str]:
    """TIDINGS_* variables from which Settings() in another process reads `settings` back.
    A field left at None is left out (its default is None for every such field)."""
    env = {}
    for name in Settings.model_fields:
        value = _plain(getattr(settings, name))
        if value is None:
            continue
        if isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, str | int | float):
            text = str(value)
        else:  # lists, dicts, nested models: pydantic-settings parses JSON for them
            text = json.dumps(value)
        env[f"TIDINGS_{name.upper()}"] = text
    return env


class WorkerProcess:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.process: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        # The parent's TIDINGS_* variables are replaced, not merged: the child sees exactly the
        # stack's settings.
        inherited = {k: v for k, v in os.environ.items() if not k.startswith("TIDINGS_")}
        self.process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "worker",
            env={**inherited, **settings_env(self.settings)},
            stdin=asyncio.subprocess.DEVNULL,
            # Its own session, as the dev server's: a Ctrl-C reaches `tidings dev`, which stops
            # the worker in order; and its death takes the worker with it.
            start_new_session=True,
            preexec_fn=die_with_parent(),
        )  # fmt: skip
        track(self)

    async def stop(self, grace: float = STOP_TIMEOUT_SECONDS) -> None:
        """SIGTERM (the worker's graceful shutdown), SIGKILL after `grace` seconds."""
        proc = self.process
        if proc is None or proc.returncode is not None:
            untrack(self)
            return
        self._signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), grace)
        except TimeoutError:
            self._signal(signal.SIGKILL)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(proc.wait(), KILL_TIMEOUT_SECONDS)
        except asyncio.CancelledError:
            self._signal(signal.SIGKILL)
            raise
        finally:
            if proc.returncode is not None:
                untrack(self)

    def kill(self) -> None:
        self._signal(signal.SIGKILL)

    def _signal(self, sig: signal.Signals) -> None:
        proc = self.process
        if proc is not None and proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, sig)
