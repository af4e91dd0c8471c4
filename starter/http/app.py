"""The FastAPI app: REST under /v1 (one routes module per resource), health, tracking links,
and the API documentation.

`create_app()` reads Settings once at startup and connects in the lifespan; tests and embedders
call `create_app(tidings=...)` with their own client. `starter.http.app` (the package exports it)
is what `uvicorn starter.http:app` serves.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from starlette.exceptions import HTTPException as StarletteHTTPException

from starter.client import Tidings
from starter.http import console, inbox_pruner
from starter.http import console_experiments as _  # noqa: F401 (registers its pages on console's)
from starter.http.docs import install_docs
from starter.http.errors import error_response, install_error_handlers
from starter.http.routes import (
    analytics,
    api_keys,
    broadcasts,
    codec,
    devices,
    digests,
    experiments,
    health,
    inbox,
    inbox_page,
    inbox_stream,
    notifications,
    receipts,
    schedules,
    segments,
    stats,
    templates,
    tracking,
    unsubscribe,
    users,
)
from starter.http.schemas import ERROR_RESPONSES
from tidings.settings import Settings
from tidings.store import Store

MAX_BODY_BYTES = 256 * 1024
# A bulk of MAX_BULK recipients, each with a little data of its own, needs more than one
# request's bound; the count itself is bounded by the body's schema.
MAX_BULK_BODY_BYTES = 8 * 1024 * 1024
LARGER_BODIES = {"/v1/notifications/bulk": MAX_BULK_BODY_BYTES}
# Mounted under /v1; every route in them declares its scope (starter.http.auth).
V1_MODULES = (
    users,
    devices,
    templates,
    notifications,
    inbox,
    inbox_stream,
    stats,
    receipts,
    api_keys,
    experiments,
    analytics,
    segments,
    broadcasts,
    digests,
    schedules,
)


class BodyLimit:
    """Refuses request bodies over `max_bytes`: by Content-Length up front, and by counting for
    chunked bodies that declare no length."""

    def __init__(self, app: Any, max_bytes: int, larger: dict[str, int] | None = None) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.larger = larger or {}  # path -> its own bound

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        max_bytes = self.larger.get(scope["path"], self.max_bytes)
        too_large = f"the request body is over {max_bytes} bytes"
        headers = dict(scope["headers"])
        declared = headers.get(b"content-length")
        refusal = None
        if declared is not None and not declared.isdigit():
            refusal = error_response(400, "invalid_request", "not a number", "content-length")
        elif declared is not None and int(declared) > max_bytes:
            refusal = error_response(413, "invalid_request", too_large, "body")
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        received = 0

        async def counted() -> Any:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > max_bytes:
                    # FastAPI re-raises HTTPException from body reading: it reaches our handler.
                    raise StarletteHTTPException(413, too_large)
            return message

        await self.app(scope, counted, send)


@asynccontextmanager
async def _inbox_pruner(app: FastAPI) -> AsyncIterator[None]:
    """The inbox event log's hourly sweep (starter.http.inbox_pruner), for the app's lifetime."""

    def store() -> Store | None:
        tidings: Tidings | None = app.state.tidings
        return None if tidings is None else tidings.store

    task = asyncio.create_task(inbox_pruner.run_pruner(store))
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def create_app(tidings: Tidings | None = None, settings: Settings | None = None) -> FastAPI:
    """The FastAPI app. With `tidings`, it is used as is and left open (the caller owns it);
    without, the lifespan builds one from `settings` (or Settings() at startup) and closes it."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with _inbox_pruner(app):
            if app.state.tidings is not None:
                yield
                return
            own = await Tidings.connect(settings or Settings())
            app.state.tidings = own
            try:
                yield
            finally:
                app.state.tidings = None
                await own.close()

    app = FastAPI(
        title="Tidings",
        summary="Durable multi-channel notifications on Temporal",
        version="1",
        lifespan=lifespan,
        # Served by install_docs from local files: FastAPI's own pages need a CDN.
        docs_url=None,
        redoc_url=None,
    )
    install_docs(app)
    app.state.tidings = tidings
    app.add_middleware(BodyLimit, max_bytes=MAX_BODY_BYTES, larger=LARGER_BODIES)
    install_error_handlers(app)
    app.include_router(health.router)
    app.include_router(tracking.router)
    app.include_router(unsubscribe.router)
    console.install(app)
    app.include_router(inbox_page.router)
    app.include_router(codec.router, responses=ERROR_RESPONSES)
    codec.redact_access_log()
    for routes in V1_MODULES:
        app.include_router(routes.router, prefix="/v1", responses=ERROR_RESPONSES)
    return app
