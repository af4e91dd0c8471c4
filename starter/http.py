"""The HTTP front door: REST under /v1, health, and engagement tracking links.

    uvicorn starter.http:app

`app` reads Settings once at startup and connects in the lifespan; tests and embedders call
`create_app(tidings=...)` with their own client. Every error, whatever raised it, leaves as one
JSON shape, `{"error": {"type", "field", "reason", "message"}}`, and never as a stack trace.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse
from sqlalchemy import text
from sqlalchemy.exc import InterfaceError, OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException
from temporalio.api.workflowservice.v1 import GetSystemInfoRequest
from temporalio.service import RPCError, RPCStatusCode

from starter import http_api, http_receipts
from starter.client import Tidings
from starter.http_api import router
from starter.http_models import ERROR_RESPONSES, Error, ErrorBody, ErrorType, Health
from tidings import tracking
from tidings.errors import Conflict, InvalidRequest, NotFound, Unauthorized
from tidings.models import AttributeValue
from tidings.settings import Settings
from tidings.tracking import make_open_pixel, make_tracking_link

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 256 * 1024
HEALTH_TIMEOUT_SECONDS = 2.0
_UNAVAILABLE_RPC = {
    RPCStatusCode.UNAVAILABLE,
    RPCStatusCode.DEADLINE_EXCEEDED,
    RPCStatusCode.RESOURCE_EXHAUSTED,
}
# A 1x1 transparent GIF for the open pixel.
_PIXEL = bytes.fromhex(
    "47494638396101000100800000000000ffffff21f90401000000002c00000000010001000002024401003b"
)


def error_response(
    status: int, type_: ErrorType, reason: str, field: str | None = None, **extra: Any
) -> JSONResponse:
    message = f"{field}: {reason}" if field else reason
    body = ErrorBody(error=Error(type=type_, field=field, reason=reason, message=message))
    return JSONResponse(body.model_dump() | extra, status_code=status)


class BodyLimit:
    """Refuses request bodies over `max_bytes`: by Content-Length up front, and by counting for
    chunked bodies that declare no length."""

    def __init__(self, app: Any, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        too_large = f"the request body is over {self.max_bytes} bytes"
        headers = dict(scope["headers"])
        declared = headers.get(b"content-length")
        refusal = None
        if declared is not None and not declared.isdigit():
            refusal = error_response(400, "invalid_request", "not a number", "content-length")
        elif declared is not None and int(declared) > self.max_bytes:
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
                if received > self.max_bytes:
                    # FastAPI re-raises HTTPException from body reading: it reaches our handler.
                    raise StarletteHTTPException(413, too_large)
            return message

        await self.app(scope, counted, send)


def _unreachable(e: Exception) -> str | None:
    """Which backing service an exception says is unreachable, if any."""
    if isinstance(e, RPCError):
        return "temporal" if e.status in _UNAVAILABLE_RPC else None
    # A lazily connected Temporal client reports a refused connection this way, not as RPCError.
    if isinstance(e, RuntimeError) and str(e).startswith("Failed client connect"):
        return "temporal"
    # Temporal's client raises the two above; a refused or dropped socket here is the database's
    # (asyncpg raises OSError itself, SQLAlchemy wraps SQLite's failures as OperationalError).
    if isinstance(e, OperationalError | InterfaceError | OSError):
        return "database"
    return None


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(InvalidRequest)
    async def invalid(_: Request, e: InvalidRequest) -> JSONResponse:
        return error_response(422, "invalid_request", e.reason, e.field)

    @app.exception_handler(RequestValidationError)
    async def validation(_: Request, e: RequestValidationError) -> JSONResponse:
        errors = e.errors()
        first = errors[0]
        loc = [str(p) for p in first.get("loc", ())]
        if loc and loc[0] in ("body", "path", "query", "header", "cookie"):
            loc = loc[1:]
        reason = str(first.get("msg", "invalid")).removeprefix("Value error, ")
        if first.get("type") == "json_invalid":
            loc, reason = [], f"not valid JSON: {first.get('ctx', {}).get('error', '')}".strip()
        if len(errors) > 1:
            reason += f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})"
        return error_response(422, "invalid_request", reason, ".".join(loc) or "body")

    @app.exception_handler(NotFound)
    async def not_found(_: Request, e: NotFound) -> JSONResponse:
        return error_response(404, "not_found", str(e))

    @app.exception_handler(Unauthorized)
    async def unauthorized(_: Request, e: Unauthorized) -> JSONResponse:
        return error_response(401, "unauthorized", str(e))

    @app.exception_handler(Conflict)
    async def conflict(_: Request, e: Conflict) -> JSONResponse:
        return error_response(409, "conflict", e.reason, e.field)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, e: StarletteHTTPException) -> JSONResponse:
        kinds: dict[int, ErrorType] = {404: "not_found", 409: "conflict", 503: "unavailable"}
        field = "body" if e.status_code == 413 else None
        kind = kinds.get(e.status_code, "invalid_request")
        return error_response(e.status_code, kind, str(e.detail), field)

    async def backing_service(_: Request, e: Exception) -> JSONResponse:
        service = _unreachable(e)
        if service is None:
            log.exception("unexpected error", exc_info=e)
            return error_response(500, "internal", "internal error; it has been logged")
        log.warning("%s unreachable: %s", service, e)
        return error_response(503, "unavailable", f"{service} is unreachable; try again", service)

    for error in (RPCError, RuntimeError, OperationalError, InterfaceError, OSError, Exception):
        app.add_exception_handler(error, backing_service)


async def _check_database(tidings: Tidings) -> None:
    async with asyncio.timeout(HEALTH_TIMEOUT_SECONDS), tidings.store.engine.connect() as conn:
        await conn.execute(text("SELECT 1"))


async def _check_temporal(tidings: Tidings) -> None:
    async with asyncio.timeout(HEALTH_TIMEOUT_SECONDS):
        await tidings.temporal.workflow_service.get_system_info(
            GetSystemInfoRequest(), timeout=timedelta(seconds=HEALTH_TIMEOUT_SECONDS)
        )


def _describe(e: BaseException) -> str:
    if isinstance(e, TimeoutError):
        return f"no answer within {HEALTH_TIMEOUT_SECONDS:g}s"
    if isinstance(e, RPCError):
        return f"RPC failed: {e.status.name if e.status else 'unknown'}"
    return f"unreachable ({type(e).__name__})"


def _install_operational_routes(app: FastAPI) -> None:
    @app.get(
        "/healthz",
        summary="Check the database and Temporal",
        response_model=Health,
        responses={503: {"model": ErrorBody, "description": "A backing service failed"}},
    )
    async def healthz(tidings: Annotated[Tidings, Depends(http_api.get_tidings)]) -> Any:
        results = await asyncio.gather(
            _check_database(tidings), _check_temporal(tidings), return_exceptions=True
        )
        checks = dict(zip(("database", "temporal"), results, strict=True))
        failed = {name: r for name, r in checks.items() if isinstance(r, BaseException)}
        if not failed:
            return Health(status="ok", checks=dict.fromkeys(checks, "ok"))
        for name, r in failed.items():
            log.warning("health check %s failed: %r", name, r)
        states = {n: _describe(failed[n]) if n in failed else "ok" for n in checks}
        reason = "; ".join(f"{n}: {states[n]}" for n in failed)
        return error_response(503, "unavailable", reason, ", ".join(failed), checks=states)

    @app.get(
        "/t/{token}",
        summary="Follow a tracking link (records a click) or fetch an open pixel",
        response_class=Response,
        status_code=302,
        responses={
            302: {"description": "Redirect to the tracked URL"},
            200: {"description": "The open pixel", "content": {"image/gif": {}}},
            400: {"model": ErrorBody, "description": "The token is not valid"},
            422: {"model": ErrorBody, "description": "Invalid request"},
        },
    )
    async def track(
        token: str, tidings: Annotated[Tidings, Depends(http_api.get_tidings)]
    ) -> Response:
        secret = tidings.settings.tracking_secret.get_secret_value()
        try:
            action = tracking.verify(secret, token)
        except tracking.InvalidToken as e:
            return error_response(400, "invalid_request", str(e), "token")
        metadata: dict[str, AttributeValue] = {"url": action.url} if action.url else {}
        try:
            await tidings.engage(action.notification_id, action.type, metadata=metadata)
        except (Conflict, NotFound) as e:
            log.info("tracking %s not recorded: %s", action.type.value, e)
        except Exception as e:
            # The person clicking must still reach the page when tracking is down.
            if _unreachable(e) is None:
                raise
            log.warning("tracking %s not recorded: %s", action.type.value, e)
        if not action.url:
            return Response(_PIXEL, media_type="image/gif", headers={"Cache-Control": "no-store"})
        return RedirectResponse(action.url, status_code=302, headers={"Cache-Control": "no-store"})


def create_app(tidings: Tidings | None = None, settings: Settings | None = None) -> FastAPI:
    """The FastAPI app. With `tidings`, it is used as is and left open (the caller owns it);
    without, the lifespan builds one from `settings` (or Settings() at startup) and closes it."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
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
    )
    app.state.tidings = tidings
    app.add_middleware(BodyLimit, max_bytes=MAX_BODY_BYTES)
    _install_error_handlers(app)
    _install_operational_routes(app)
    app.include_router(router, prefix="/v1", responses=ERROR_RESPONSES)
    app.include_router(http_receipts.router, prefix="/v1", responses=ERROR_RESPONSES)
    return app


app = create_app()

__all__ = [
    "MAX_BODY_BYTES",
    "app",
    "create_app",
    "make_open_pixel",
    "make_tracking_link",
]
