"""The HTTP API inside `tidings dev`: uvicorn serving starter.http on loopback, in the stack's own
event loop, so the Web UI's codec endpoint and `curl` work without a second process."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator

import uvicorn

from starter.client import Tidings
from starter.http import create_app


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        # The stack owns SIGINT/SIGTERM and stops this server itself.
        yield


class DevApi:
    def __init__(self, tidings: Tidings, host: str, port: int, *, owns_client: bool = True) -> None:
        self.tidings = tidings
        self.owns_client = owns_client
        self.host = host
        self.port = port
        config = uvicorn.Config(
            create_app(tidings=tidings), host=host, port=port, log_level="warning", lifespan="on"
        )
        self._server = _Server(config)
        self._task: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def start(self) -> None:
        self._task = asyncio.create_task(self._server.serve())
        while not self._server.started:
            if self._task.done():
                self._task.result()  # the bind failed: raise it
                raise OSError(f"the HTTP API did not start on {self.url}")
            await asyncio.sleep(0.02)

    async def stop(self) -> None:
        self._server.should_exit = True
        if self._task is not None:
            await self._task
        if self.owns_client:
            await self.tidings.close()
