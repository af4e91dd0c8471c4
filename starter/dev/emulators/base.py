"""What the provider emulators share: recording, fault injection and an in-process server.

An emulator is an ASGI app served on loopback (`server.AppServer`: uvicorn for HTTP/1.1, or
HTTP/2 for the APNs emulator). Every request except the control endpoints is recorded before it
is answered. Faults come from the Python API (`inject`) or over HTTP:

    POST /_emulator/faults   {"mode": "5xx", "count": 3}, {"mode": "429", "retry_after": 2},
                             {"mode": "slow", "seconds": 5}, {"mode": "malformed"},
                             {"mode": "invalid_token", "token": "…"},
                             {"mode": "down_for", "seconds": 10}
    GET  /_emulator/received the recorded requests as JSON
    POST /_emulator/reset    forget requests and faults

Counted faults (5xx, 429, slow, malformed and provider-specific modes) apply to the next `count`
provider API requests (or, with "path", to requests under that path, e.g. the OAuth endpoint);
an invalid token stays invalid until reset; down_for answers 503 to everything for a while.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Self
from urllib.parse import parse_qsl

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.types import Message, Receive, Scope, Send

from starter.dev.emulators.server import AppServer, bind, read_body

logger = logging.getLogger(__name__)

COUNTED_MODES = frozenset({"5xx", "429", "slow", "malformed"})


class Fault(BaseModel):
    model_config = ConfigDict(extra="forbid")

    mode: str
    count: int = Field(default=1, ge=1)
    status: int = Field(default=500, ge=500, le=599)  # for 5xx
    retry_after: float | None = Field(default=None, ge=0)  # for 429
    seconds: float = Field(default=0.0, ge=0, le=600)  # for slow and down_for
    token: str | None = None  # for invalid_token: the device token, number or channel
    path: str | None = None  # only requests under this path; None: the provider API
    code: int | None = None  # provider error code (Twilio), for invalid_token
    error: str | None = None  # provider error string (Slack's "ok": false error)


@dataclass(frozen=True)
class Received:
    method: str
    path: str
    query: str
    headers: dict[str, str]  # lower-cased names
    body: bytes
    http_version: str
    at: float = field(default_factory=time.time)

    def json(self) -> Any:
        return json.loads(self.body)

    def form(self) -> dict[str, str]:
        return dict(parse_qsl(self.body.decode(), keep_blank_values=True))

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "method": self.method,
            "path": self.path,
            "query": self.query,
            "headers": self.headers,
            "http_version": self.http_version,
            "body": self.body.decode("utf-8", errors="replace"),
            "at": self.at,
        }
        with contextlib.suppress(ValueError):
            if self.headers.get("content-type", "").startswith("application/json"):
                out["json"] = self.json()
            elif "form-urlencoded" in self.headers.get("content-type", ""):
                out["form"] = self.form()
        return out


@dataclass(frozen=True)
class Response:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def json(cls, status: int, value: Any, headers: dict[str, str] | None = None) -> Response:
        return cls(
            status,
            json.dumps(value).encode(),
            {"content-type": "application/json", **(headers or {})},
        )

    @classmethod
    def text(cls, status: int, value: str) -> Response:
        return cls(status, value.encode(), {"content-type": "text/plain; charset=utf-8"})


class Emulator:
    """Subclasses implement `handle` (and may refine the fault answers and `is_api`)."""

    name = "emulator"
    default_port = 0
    http2 = False
    extra_modes: frozenset[str] = frozenset()

    def __init__(self, host: str = "127.0.0.1", port: int | None = None) -> None:
        self.host = host
        self.port = self.default_port if port is None else port
        self.received: list[Received] = []
        self._faults: list[list[Any]] = []  # [Fault, remaining count]
        self._dead: dict[str, Fault] = {}
        self._down_until = 0.0
        self._server: AppServer | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    # --- faults (Python API) --------------------------------------------------------------------

    def inject(self, fault: Fault | dict[str, Any]) -> Fault:
        f = fault if isinstance(fault, Fault) else Fault.model_validate(fault)
        if f.mode == "invalid_token":
            if not f.token:
                raise ValueError("invalid_token needs the token")
            self._dead[f.token] = f
        elif f.mode == "down_for":
            self._down_until = time.monotonic() + f.seconds
        elif f.mode in COUNTED_MODES or f.mode in self.extra_modes:
            self._faults.append([f, f.count])
        else:
            modes = sorted({*COUNTED_MODES, *self.extra_modes, "invalid_token", "down_for"})
            raise ValueError(f"unknown fault mode {f.mode!r}; one of {', '.join(modes)}")
        return f

    def fail_next(self, count: int = 1, status: int = 500) -> None:
        self.inject(Fault(mode="5xx", count=count, status=status))

    def rate_limit_next(self, retry_after: float | None = None, count: int = 1) -> None:
        self.inject(Fault(mode="429", retry_after=retry_after, count=count))

    def slow_next(self, seconds: float, count: int = 1) -> None:
        self.inject(Fault(mode="slow", seconds=seconds, count=count))

    def malformed_next(self, count: int = 1) -> None:
        self.inject(Fault(mode="malformed", count=count))

    def invalidate(self, token: str, code: int | None = None) -> None:
        self.inject(Fault(mode="invalid_token", token=token, code=code))

    def down_for(self, seconds: float) -> None:
        self.inject(Fault(mode="down_for", seconds=seconds))

    def reset(self) -> None:
        self.received.clear()
        self._faults.clear()
        self._dead.clear()
        self._down_until = 0.0

    def dead_token(self, token: str) -> Fault | None:
        return self._dead.get(token)

    def _take_fault(self, req: Received) -> Fault | None:
        for entry in self._faults:
            fault: Fault = entry[0]
            if fault.path is not None and not req.path.startswith(fault.path):
                continue
            if fault.path is None and not self.is_api(req):
                continue
            entry[1] -= 1
            if entry[1] <= 0:
                self._faults.remove(entry)
            return fault
        return None

    # --- provider behaviour (subclasses) --------------------------------------------------------

    def is_api(self, req: Received) -> bool:
        """Whether a request is a provider API call that unscoped faults apply to."""
        return True

    async def handle(self, req: Received) -> Response:
        raise NotImplementedError

    def server_error(self, status: int) -> Response:
        return Response.text(status, "Service Unavailable" if status == 503 else "Internal Error")

    def rate_limited(self, retry_after: float | None) -> Response:
        headers = {} if retry_after is None else {"retry-after": f"{retry_after:g}"}
        return Response(429, b"Too Many Requests", headers)

    def malformed(self) -> Response:
        return Response(
            200, b"<html><body>upstream proxy</body></html", {"content-type": "text/html"}
        )

    def fault_response(self, fault: Fault, req: Received) -> Response:
        """The answer for a provider-specific mode (see `extra_modes`)."""
        raise NotImplementedError(fault.mode)

    # --- the ASGI app ---------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        body = await read_body(receive)
        if body is None:
            return
        req = Received(
            method=scope["method"],
            path=scope["path"],
            query=scope["query_string"].decode("latin-1"),
            headers={k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]},
            body=body,
            http_version=scope.get("http_version", "1.1"),
        )
        if req.path.startswith("/_emulator/"):
            resp = self._control(req)
        else:
            self.received.append(req)
            answer = await self._answer(req, receive)
            if answer is None:
                return  # the client gave up while we were slow
            resp = answer
        headers = [(k.lower().encode(), v.encode()) for k, v in resp.headers.items()]
        headers.append((b"content-length", str(len(resp.body)).encode()))
        await send({"type": "http.response.start", "status": resp.status, "headers": headers})
        await send({"type": "http.response.body", "body": resp.body})

    async def _answer(self, req: Received, receive: Receive) -> Response | None:
        if time.monotonic() < self._down_until:
            return self.server_error(503)
        fault = self._take_fault(req)
        if fault is not None:
            if fault.mode == "5xx":
                return self.server_error(fault.status)
            if fault.mode == "429":
                return self.rate_limited(fault.retry_after)
            if fault.mode == "malformed":
                return self.malformed()
            if fault.mode == "slow":
                if await _disconnected_within(receive, fault.seconds):
                    return None
            else:
                return self.fault_response(fault, req)
        return await self.handle(req)

    def _control(self, req: Received) -> Response:
        what = (req.method, req.path)
        if what == ("GET", "/_emulator/received"):
            return Response.json(200, [r.as_dict() for r in self.received])
        if what == ("POST", "/_emulator/reset"):
            self.reset()
            return Response.json(200, {"ok": True})
        if what == ("POST", "/_emulator/faults"):
            try:
                fault = self.inject(Fault.model_validate_json(req.body))
            except (ValidationError, ValueError) as e:
                return Response.json(400, {"error": str(e)})
            return Response.json(200, {"ok": True, "fault": fault.model_dump(exclude_none=True)})
        return Response.json(404, {"error": f"no control endpoint {req.method} {req.path}"})

    # --- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        if self._server is not None:
            raise RuntimeError(f"{self.name} emulator already started")
        sock = bind(self.host, self.port)
        self.port = sock.getsockname()[1]
        server = AppServer(self, http2=self.http2)
        await server.start(sock)
        self._server = server
        logger.info("%s emulator listening on %s", self.name, self.url)

    async def stop(self) -> None:
        if self._server is not None:
            await self._server.stop()
            self._server = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


async def _disconnected_within(receive: Receive, delay: float) -> bool:
    # After the body has been read, receive() only returns when the client goes away.
    waiter: asyncio.Task[Message] = asyncio.ensure_future(receive())
    try:
        done, _ = await asyncio.wait({waiter}, timeout=delay)
        return bool(done) and waiter.result()["type"] == "http.disconnect"
    finally:
        waiter.cancel()
