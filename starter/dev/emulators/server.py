"""Serving an ASGI app on a bound loopback socket, in-process, on the caller's event loop: uvicorn
for HTTP/1.1, `H2cServer` for HTTP/2 (cleartext, with HTTP/1.1 on the same port)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Iterator

import uvicorn
from starlette.types import ASGIApp, Receive

from starter.dev.emulators.h2c import H2cServer


class _QuietServer(uvicorn.Server):
    # An embedded server must not take over SIGINT/SIGTERM from the process hosting it.
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def bind(host: str, port: int) -> socket.socket:
    """Bind before serving, so the real port (of port 0) is known before the server starts."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    return sock


async def read_body(receive: Receive) -> bytes | None:
    """The whole request body, or None when the client went away first."""
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


class AppServer:
    def __init__(self, app: ASGIApp, *, http2: bool) -> None:
        self.app = app
        self.http2 = http2
        self._h2: H2cServer | None = None
        self._uvicorn: _QuietServer | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self, sock: socket.socket) -> None:
        if self.http2:
            self._h2 = H2cServer(self.app)
            await self._h2.start(sock)
            return
        config = uvicorn.Config(
            self.app,
            interface="asgi3",
            lifespan="off",
            log_level="warning",
            access_log=False,
            timeout_graceful_shutdown=1,
        )
        server = _QuietServer(config)
        self._uvicorn = server
        self._task = asyncio.create_task(server.serve(sockets=[sock]))
        async with asyncio.timeout(10):
            while not server.started:
                if self._task.done():
                    self._task.result()  # surfaces the startup error
                    raise RuntimeError("server stopped during startup")
                await asyncio.sleep(0.01)

    async def stop(self) -> None:
        if self._h2 is not None:
            await self._h2.stop()
            self._h2 = None
        if self._uvicorn is not None and self._task is not None:
            self._uvicorn.should_exit = True
            await self._task
            self._uvicorn, self._task = None, None
