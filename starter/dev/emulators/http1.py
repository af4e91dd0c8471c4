"""HTTP/1.1 on the h2c server's port (built on `h11`), so that plain clients (curl, a default
httpx client in the dev stack) can reach the control endpoints of the HTTP/2 emulator. One
request at a time per connection, keep-alive, bodies buffered."""

from __future__ import annotations

import asyncio
import logging

import h11
from starlette.types import ASGIApp, Message

logger = logging.getLogger(__name__)


class Http1Connection:
    def __init__(
        self,
        app: ASGIApp,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        initial: bytes,
    ) -> None:
        self.app = app
        self.reader = reader
        self.writer = writer
        self.conn = h11.Connection(h11.SERVER)
        self.conn.receive_data(initial)

    async def _event(self) -> h11.Event | type[h11.PAUSED]:
        while True:
            event = self.conn.next_event()
            if event is not h11.NEED_DATA:
                return event  # type: ignore[return-value]
            self.conn.receive_data(await self.reader.read(65536))

    async def run(self) -> None:
        try:
            while True:
                event = await self._event()
                if not isinstance(event, h11.Request):
                    return  # ConnectionClosed, PAUSED or a protocol state we do not serve
                body = bytearray()
                while True:
                    part = await self._event()
                    if isinstance(part, h11.Data):
                        body += part.data
                    elif isinstance(part, h11.EndOfMessage):
                        break
                    else:
                        return
                if not await self._respond(event, bytes(body)):
                    return
                if self.conn.our_state is h11.MUST_CLOSE:
                    return
                self.conn.start_next_cycle()
        except (h11.RemoteProtocolError, ConnectionError) as e:
            logger.info("http/1.1: closing connection: %s", e)
        finally:
            self.writer.close()

    async def _respond(self, request: h11.Request, body: bytes) -> bool:
        target = bytes(request.target)
        path, _, query = target.partition(b"?")
        headers = [(bytes(k).lower(), bytes(v)) for k, v in request.headers]
        scope = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": "1.1",
            "method": bytes(request.method).decode(),
            "scheme": "http",
            "path": path.decode("latin-1"),
            "raw_path": path,
            "query_string": query,
            "root_path": "",
            "headers": headers,
            "server": None,
            "client": None,
        }
        sent_body = started = False
        status = 500
        out_headers: list[tuple[bytes, bytes]] = []
        chunks: list[bytes] = []

        async def receive() -> Message:
            nonlocal sent_body
            if not sent_body:
                sent_body = True
                return {"type": "http.request", "body": body, "more_body": False}
            # Nothing else arrives before we answer; EOF means the client went away.
            while await self.reader.read(65536):
                pass
            return {"type": "http.disconnect"}

        async def send(message: Message) -> None:
            nonlocal status, out_headers, started
            if message["type"] == "http.response.start":
                started = True
                status, out_headers = message["status"], list(message.get("headers", []))
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))

        await self.app(scope, receive, send)
        if not started:
            return False  # the app answered nothing (the client gave up)
        data = self.conn.send(h11.Response(status_code=status, headers=out_headers))
        data = (data or b"") + (self.conn.send(h11.Data(data=b"".join(chunks))) or b"")
        data += self.conn.send(h11.EndOfMessage()) or b""
        self.writer.write(data)
        await self.writer.drain()
        return True
