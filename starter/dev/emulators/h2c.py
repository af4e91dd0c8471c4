"""A small HTTP/2 server over cleartext (h2c, prior knowledge) for ASGI apps, built on `h2`.

uvicorn serves HTTP/2 only with the optional `zttp` package, which this project does not depend
on, and hypercorn is not installed; APNs is HTTP/2-only, so its emulator needs a real HTTP/2 peer
to prove the client speaks it. Enough of RFC 9113 for tests and the dev stack: one ASGI call per
stream, request bodies buffered, responses sent with flow control, stream resets passed to the
app as `http.disconnect`. No TLS, no server push, no `Upgrade: h2c`; a connection that does not
open with the HTTP/2 preface is served as HTTP/1.1 (`http1.py`), so plain clients reach it too.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from dataclasses import dataclass, field
from typing import Any

import h2.config
import h2.connection
import h2.events
import h2.exceptions
from starlette.types import ASGIApp, Message

from starter.dev.emulators.http1 import Http1Connection

logger = logging.getLogger(__name__)

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
# RFC 9113 8.2.2: connection-specific headers must not appear in HTTP/2.
_FORBIDDEN = frozenset({b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding"})


@dataclass
class _Stream:
    headers: list[tuple[bytes, bytes]]
    body: bytearray = field(default_factory=bytearray)
    reset: asyncio.Event = field(default_factory=asyncio.Event)
    window_open: asyncio.Event = field(default_factory=asyncio.Event)


class _Connection:
    def __init__(
        self, app: ASGIApp, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.app = app
        self.reader = reader
        self.writer = writer
        config = h2.config.H2Configuration(client_side=False, header_encoding=None)
        self.conn = h2.connection.H2Connection(config=config)
        self.streams: dict[int, _Stream] = {}
        self.tasks: set[asyncio.Task[None]] = set()

    def flush(self) -> None:
        data = self.conn.data_to_send()
        if data and not self.writer.is_closing():
            self.writer.write(data)

    async def run(self, initial: bytes) -> None:
        self.conn.initiate_connection()
        self.flush()
        data = initial
        try:
            while True:
                if not data:
                    return
                try:
                    events = self.conn.receive_data(data)
                except h2.exceptions.ProtocolError as e:
                    logger.info("h2c: closing connection on protocol error: %s", e)
                    self.flush()
                    return
                for event in events:
                    if not self._on_event(event):
                        self.flush()
                        return
                self.flush()
                await self.writer.drain()
                data = await self.reader.read(65536)
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        finally:
            for task in self.tasks:
                task.cancel()
            for stream in self.streams.values():
                stream.reset.set()
            self.writer.close()

    def _on_event(self, event: h2.events.Event) -> bool:
        if isinstance(event, h2.events.RequestReceived):
            headers = [(bytes(k), bytes(v)) for k, v in event.headers]
            self.streams[event.stream_id] = _Stream(headers=headers)
        elif isinstance(event, h2.events.DataReceived):
            stream = self.streams.get(event.stream_id)
            if stream is not None:
                stream.body += event.data
            self.conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
        elif isinstance(event, h2.events.StreamEnded):
            stream = self.streams.get(event.stream_id)
            if stream is not None:
                task = asyncio.create_task(self._respond(event.stream_id, stream))
                self.tasks.add(task)
                task.add_done_callback(self.tasks.discard)
        elif isinstance(event, h2.events.StreamReset):
            stream = self.streams.pop(event.stream_id, None)
            if stream is not None:
                stream.reset.set()
                stream.window_open.set()
        elif isinstance(event, h2.events.WindowUpdated):
            targets = (
                self.streams.values()
                if event.stream_id == 0
                else [s for i, s in self.streams.items() if i == event.stream_id]
            )
            for stream in targets:
                stream.window_open.set()
        elif isinstance(event, h2.events.ConnectionTerminated):
            return False
        return True

    def _scope(self, stream: _Stream) -> dict[str, Any]:
        pseudo = {k: v for k, v in stream.headers if k.startswith(b":")}
        headers = [(k, v) for k, v in stream.headers if not k.startswith(b":")]
        if b":authority" in pseudo:
            headers.insert(0, (b"host", pseudo[b":authority"]))
        raw_path = pseudo.get(b":path", b"/")
        path, _, query = raw_path.partition(b"?")
        sock = self.writer.get_extra_info("sockname")
        peer = self.writer.get_extra_info("peername")
        return {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": "2",
            "method": pseudo.get(b":method", b"GET").decode(),
            "scheme": "http",
            "path": path.decode("latin-1"),
            "raw_path": path,
            "query_string": query,
            "root_path": "",
            "headers": headers,
            "server": (sock[0], sock[1]) if sock else None,
            "client": (peer[0], peer[1]) if peer else None,
        }

    async def _respond(self, stream_id: int, stream: _Stream) -> None:
        body_sent = False

        async def receive() -> Message:
            nonlocal body_sent
            if not body_sent:
                body_sent = True
                return {"type": "http.request", "body": bytes(stream.body), "more_body": False}
            await stream.reset.wait()
            return {"type": "http.disconnect"}

        status = 500
        headers: list[tuple[bytes, bytes]] = []
        chunks: list[bytes] = []

        async def send(message: Message) -> None:
            nonlocal status, headers
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = [
                    (bytes(k).lower(), bytes(v))
                    for k, v in message.get("headers", [])
                    if bytes(k).lower() not in _FORBIDDEN
                ]
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))
                if not message.get("more_body", False):
                    await self._send_response(stream_id, stream, status, headers, b"".join(chunks))

        try:
            await self.app(self._scope(stream), receive, send)
        except Exception:
            logger.exception("h2c: the app failed on stream %d", stream_id)
            with contextlib.suppress(h2.exceptions.H2Error):
                self.conn.reset_stream(stream_id)
                self.flush()
        finally:
            self.streams.pop(stream_id, None)

    async def _send_response(
        self,
        stream_id: int,
        stream: _Stream,
        status: int,
        headers: list[tuple[bytes, bytes]],
        body: bytes,
    ) -> None:
        if stream.reset.is_set():
            return
        try:
            self.conn.send_headers(stream_id, [(b":status", str(status).encode()), *headers])
            view = memoryview(body)
            while view:
                window = self.conn.local_flow_control_window(stream_id)
                if window <= 0:
                    stream.window_open.clear()
                    self.flush()
                    await stream.window_open.wait()
                    if stream.reset.is_set():
                        return
                    continue
                size = min(window, self.conn.max_outbound_frame_size, len(view))
                self.conn.send_data(stream_id, bytes(view[:size]))
                view = view[size:]
            self.conn.end_stream(stream_id)
            self.flush()
        except (h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError):
            return  # the client reset the stream or went away


class H2cServer:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()

    async def start(self, sock: socket.socket) -> None:
        self._server = await asyncio.start_server(self._serve, sock=sock)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._connections.add(task)
        try:
            # Prior-knowledge HTTP/2 starts with the connection preface; anything else is
            # taken as HTTP/1.1.
            initial = b""
            while len(initial) < len(PREFACE) and PREFACE.startswith(initial):
                chunk = await reader.read(len(PREFACE) - len(initial))
                if not chunk:
                    writer.close()
                    return
                initial += chunk
            if initial == PREFACE:
                await _Connection(self.app, reader, writer).run(initial)
            else:
                await Http1Connection(self.app, reader, writer, initial).run()
        except asyncio.CancelledError:
            # stop() cancels the connections clients keep open. Ending quietly matters: on
            # Python 3.11 start_server's done-callback calls task.exception(), which raises for
            # a cancelled task and logs a traceback at every shutdown.
            writer.close()
        finally:
            if task is not None:
                self._connections.discard(task)

    async def stop(self) -> None:
        if self._server is None:
            return
        self._server.close()
        for task in list(self._connections):
            task.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)
        await self._server.wait_closed()
        self._server = None
