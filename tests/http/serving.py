"""Real HTTP servers for tests that need a streaming response (httpx's ASGITransport buffers a
whole response, so it cannot read an endless event stream): the app in this process, or the API
as uvicorn subprocesses; and a small reader of Server-Sent Events."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI


def _listening_socket() -> socket.socket:
    """Bound and listening before anyone learns the port: no window for another process."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(2048)
    return sock


@asynccontextmanager
async def serve(app: FastAPI) -> AsyncIterator[str]:
    """`app` on a loopback port in this event loop; yields its base URL."""
    sock = _listening_socket()
    config = uvicorn.Config(app, lifespan="off", log_level="warning", timeout_graceful_shutdown=1)
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            assert not task.done(), task.exception()
            await asyncio.sleep(0.01)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        await task
        sock.close()


@contextlib.contextmanager
def api_process(env: dict[str, str]) -> Iterator[str]:
    """`uvicorn starter.http:app` in a subprocess with these TIDINGS_* settings, on a socket
    this process bound (handed over with --fd); yields its base URL once it answers."""
    sock = _listening_socket()
    port = sock.getsockname()[1]
    command = [sys.executable, "-m", "uvicorn", "starter.http:app", "--fd", str(sock.fileno())]
    command += ["--log-level", "warning", "--timeout-graceful-shutdown", "1"]
    process = subprocess.Popen(
        command, env={**os.environ, **env}, pass_fds=[sock.fileno()], stderr=subprocess.PIPE
    )
    try:
        url = f"http://127.0.0.1:{port}"
        for _ in range(600):
            assert process.poll() is None, process.stderr.read().decode() if process.stderr else ""
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/healthz", timeout=1).status_code < 500:
                    break
            time.sleep(0.05)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stderr is not None:
            process.stderr.close()
        sock.close()


@dataclass
class Event:
    event: str | None = None
    id: str | None = None
    data: str = ""
    comments: list[str] = field(default_factory=list)
    retry: int | None = None

    def json(self) -> Any:
        return json.loads(self.data)


class EventReader:
    """Reads one `text/event-stream` response event by event (comments count as events with
    no name, so heartbeats can be seen)."""

    def __init__(self, response: httpx.Response) -> None:
        assert response.headers["content-type"].startswith("text/event-stream"), response
        self._lines = response.aiter_lines()

    async def next(self, within: float = 10.0) -> Event:
        return await asyncio.wait_for(self._read(), within)

    async def next_named(self, within: float = 10.0) -> Event:
        """The next event with a name (skipping heartbeats and the retry line)."""
        while True:
            event = await self.next(within)
            if event.event is not None:
                return event

    async def _read(self) -> Event:
        event = Event()
        data: list[str] = []
        async for line in self._lines:
            if line == "":
                if event.event or event.id or data or event.comments or event.retry is not None:
                    event.data = "\n".join(data)
                    return event
                continue
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if name == "":
                event.comments.append(value)
            elif name == "data":
                data.append(value)
            elif name == "event":
                event.event = value
            elif name == "id":
                event.id = value
            elif name == "retry":
                event.retry = int(value)
        raise EOFError("the stream ended")
