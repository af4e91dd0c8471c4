"""A local HTTP endpoint that records webhook deliveries, for development and tests.

uvicorn runs in-process on the caller's event loop. Every request is recorded before it is
answered; scripted answers (status, headers, delay) are taken one per request in order, and once
they run out the receiver answers `default_status`.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from starlette.types import Message, Receive, Scope, Send

from tidings.emulators.server import AppServer, bind, read_body

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReceivedRequest:
    method: str
    path: str
    query: str
    headers: dict[str, str]  # lower-cased names
    body: bytes
    received_at: datetime

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass(frozen=True)
class ScriptedResponse:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    delay: float = 0.0  # seconds to wait before answering


class WebhookReceiver:
    def __init__(self, host: str = "127.0.0.1", port: int = 0, default_status: int = 200) -> None:
        self.host = host
        self.port = port
        self.default_status = default_status
        self.received: list[ReceivedRequest] = []
        self._script: deque[ScriptedResponse] = deque()
        self._server: AppServer | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    # --- fault knobs -------------------------------------------------------------------------

    def respond_with(
        self,
        status: int,
        *,
        times: int = 1,
        headers: dict[str, str] | None = None,
        body: bytes = b"",
        delay: float = 0.0,
    ) -> None:
        """Answer the next `times` requests (after any already scripted) with this response."""
        if times < 1:
            raise ValueError("times must be >= 1")
        resp = ScriptedResponse(status=status, headers=dict(headers or {}), body=body, delay=delay)
        self._script.extend([resp] * times)

    def fail_next(self, n: int = 1, status: int = 500) -> None:
        self.respond_with(status, times=n)

    def rate_limit_next(self, retry_after: str, n: int = 1) -> None:
        self.respond_with(429, times=n, headers={"retry-after": retry_after})

    def slow_next(self, delay: float, n: int = 1, status: int = 200) -> None:
        self.respond_with(status, times=n, delay=delay)

    def clear(self) -> None:
        self.received.clear()
        self._script.clear()

    # --- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        if self._server is not None:
            raise RuntimeError("WebhookReceiver already started")
        sock = bind(self.host, self.port)
        self.port = sock.getsockname()[1]
        server = AppServer(self._app, http2=False)
        await server.start(sock)
        self._server = server
        logger.info("webhook receiver listening on %s", self.url)

    async def stop(self) -> None:
        if self._server is None:
            return
        await self._server.stop()
        self._server = None

    async def __aenter__(self) -> WebhookReceiver:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # --- the ASGI app ------------------------------------------------------------------------

    async def _app(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        body = await read_body(receive)
        if body is None:
            return
        self.received.append(
            ReceivedRequest(
                method=scope["method"],
                path=scope["path"],
                query=scope["query_string"].decode("latin-1"),
                headers={k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]},
                body=body,
                received_at=datetime.now(UTC),
            )
        )
        resp = self._script.popleft() if self._script else ScriptedResponse(self.default_status)
        if resp.delay > 0 and await self._disconnected_within(receive, resp.delay):
            return  # the client gave up; nobody to answer
        headers = [(k.lower().encode(), v.encode()) for k, v in resp.headers.items()]
        headers.append((b"content-length", str(len(resp.body)).encode()))
        await send({"type": "http.response.start", "status": resp.status, "headers": headers})
        await send({"type": "http.response.body", "body": resp.body})

    @staticmethod
    async def _disconnected_within(receive: Receive, delay: float) -> bool:
        # After the body has been read, receive() only returns when the client goes away.
        waiter: asyncio.Task[Message] = asyncio.ensure_future(receive())
        try:
            done, _ = await asyncio.wait({waiter}, timeout=delay)
            return bool(done) and waiter.result()["type"] == "http.disconnect"
        finally:
            waiter.cancel()
