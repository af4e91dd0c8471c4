"""A local HTTP endpoint that records webhook deliveries, for development and tests.

uvicorn runs in-process on the caller's event loop. Every request is recorded, with the status
chosen for it, before it is answered. Answers are chosen in this order: scripted answers (status,
headers, delay), one per request in order; then a rate-limit window (`rate_limit_for`: 429 to
everything until it ends); then seeded random faults (`fault_rates`); else `default_status`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from starlette.types import Message, Receive, Scope, Send

from starter.dev.emulators.server import AppServer, bind, read_body

logger = logging.getLogger(__name__)

TRANSIENT_STATUS = 503
PERMANENT_STATUS = 410


@dataclass(frozen=True)
class ReceivedRequest:
    method: str
    path: str
    query: str
    headers: dict[str, str]  # lower-cased names
    body: bytes
    received_at: datetime
    status: int | None = None  # the answer chosen (not sent if the client left during a delay)

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass(frozen=True)
class ScriptedResponse:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    delay: float = 0.0  # seconds to wait before answering


class _Faults:
    """Seeded draws, one stream per kind, so the same seed gives the same counts whatever order
    concurrent requests arrive in: the k-th new webhook-id always gets the permanent stream's
    k-th draw, the k-th request of a live recipient the transient stream's k-th."""

    def __init__(self, transient: float, permanent: float, seed: int) -> None:
        self.transient = transient
        self.permanent = permanent
        self._transient = random.Random(f"{seed}:transient")
        self._permanent = random.Random(f"{seed}:permanent")
        self.fates: dict[str, bool] = {}  # webhook-id -> gone for good

    def status_for(self, webhook_id: str | None) -> int | None:
        if webhook_id is None:  # no identity to remember: decided per request
            gone = self._permanent.random() < self.permanent
        else:
            known = self.fates.get(webhook_id)
            if known is None:
                known = self.fates[webhook_id] = self._permanent.random() < self.permanent
            gone = known
        if gone:
            return PERMANENT_STATUS
        return TRANSIENT_STATUS if self._transient.random() < self.transient else None


class WebhookReceiver:
    def __init__(self, host: str = "127.0.0.1", port: int = 0, default_status: int = 200) -> None:
        self.host = host
        self.port = port
        self.default_status = default_status
        self.received: list[ReceivedRequest] = []
        self._script: deque[ScriptedResponse] = deque()
        self._faults: _Faults | None = None
        self._rate_limit: tuple[datetime, str] | None = None  # until, Retry-After
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

    def fault_rates(self, *, transient: float = 0.0, permanent: float = 0.0, seed: int = 0) -> None:
        """From now on fail a seeded random share of what is not scripted: `permanent` of the
        recipients (webhook-id) answer 410 on every attempt, since a recipient that is gone
        stays gone; `transient` of the other requests answer 503, drawn afresh per request.
        Both 0 turns the mode off; calling again starts afresh (new draws, no one gone)."""
        for name, rate in (("transient", transient), ("permanent", permanent)):
            if not 0.0 <= rate <= 1.0:
                raise ValueError(f"{name}: a rate must be between 0 and 1, got {rate}")
        self._faults = _Faults(transient, permanent, seed) if transient or permanent else None

    @property
    def gone(self) -> frozenset[str]:
        """The webhook-ids `fault_rates` made fail permanently so far."""
        fates = self._faults.fates if self._faults is not None else {}
        return frozenset(webhook_id for webhook_id, gone in fates.items() if gone)

    def rate_limit_for(self, seconds: float, *, retry_after: str = "1") -> datetime:
        """Answer 429 with this Retry-After to every request not scripted, for `seconds` from
        now; returns the moment the window ends (UTC, the clock `received_at` uses)."""
        if seconds <= 0:
            raise ValueError(f"seconds: the window must be positive, got {seconds}")
        until = datetime.now(UTC) + timedelta(seconds=seconds)
        self._rate_limit = (until, retry_after)
        return until

    def clear(self) -> None:
        """Forget the requests and every fault: back to answering `default_status`."""
        self.received.clear()
        self._script.clear()
        self._faults = None
        self._rate_limit = None

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
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        now = datetime.now(UTC)
        resp = self._choose(headers, now)
        self.received.append(
            ReceivedRequest(
                method=scope["method"],
                path=scope["path"],
                query=scope["query_string"].decode("latin-1"),
                headers=headers,
                body=body,
                received_at=now,
                status=resp.status,
            )
        )
        if resp.delay > 0 and await self._disconnected_within(receive, resp.delay):
            return  # the client gave up; nobody to answer
        raw = [(k.lower().encode(), v.encode()) for k, v in resp.headers.items()]
        raw.append((b"content-length", str(len(resp.body)).encode()))
        await send({"type": "http.response.start", "status": resp.status, "headers": raw})
        await send({"type": "http.response.body", "body": resp.body})

    def _choose(self, headers: Mapping[str, str], now: datetime) -> ScriptedResponse:
        if self._script:
            return self._script.popleft()
        if self._rate_limit is not None:
            until, retry_after = self._rate_limit
            if now < until:
                return ScriptedResponse(429, headers={"retry-after": retry_after})
            self._rate_limit = None
        if self._faults is not None:
            status = self._faults.status_for(headers.get("webhook-id"))
            if status is not None:
                return ScriptedResponse(status)
        return ScriptedResponse(self.default_status)

    @staticmethod
    async def _disconnected_within(receive: Receive, delay: float) -> bool:
        # After the body has been read, receive() only returns when the client goes away.
        waiter: asyncio.Task[Message] = asyncio.ensure_future(receive())
        try:
            done, _ = await asyncio.wait({waiter}, timeout=delay)
            return bool(done) and waiter.result()["type"] == "http.disconnect"
        finally:
            waiter.cancel()
