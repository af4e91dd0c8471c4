"""Every error leaves the API as one JSON shape, `{"error": {"type", "field", "reason",
"message"}}`, whatever raised it, and never as a stack trace."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import InterfaceError, OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException
from temporalio.service import RPCError, RPCStatusCode

from starter.http.schemas import Error, ErrorBody, ErrorType
from tidings.errors import Conflict, Forbidden, InvalidRequest, NotFound, Unauthorized

log = logging.getLogger("starter.http")

_UNAVAILABLE_RPC = {
    RPCStatusCode.UNAVAILABLE,
    RPCStatusCode.DEADLINE_EXCEEDED,
    RPCStatusCode.RESOURCE_EXHAUSTED,
}


def error_response(
    status: int, type_: ErrorType, reason: str, field: str | None = None, **extra: Any
) -> JSONResponse:
    message = f"{field}: {reason}" if field else reason
    body = ErrorBody(error=Error(type=type_, field=field, reason=reason, message=message))
    return JSONResponse(body.model_dump() | extra, status_code=status)


def unreachable(e: Exception) -> str | None:
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


def install_error_handlers(app: FastAPI) -> None:
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
        response = error_response(401, "unauthorized", str(e))
        response.headers["WWW-Authenticate"] = "Bearer"
        return response

    @app.exception_handler(Forbidden)
    async def forbidden(_: Request, e: Forbidden) -> JSONResponse:
        return error_response(403, "forbidden", str(e))

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
        service = unreachable(e)
        if service is None:
            log.exception("unexpected error", exc_info=e)
            return error_response(500, "internal", "internal error; it has been logged")
        log.warning("%s unreachable: %s", service, e)
        return error_response(503, "unavailable", f"{service} is unreachable; try again", service)

    for error in (RPCError, RuntimeError, OperationalError, InterfaceError, OSError, Exception):
        app.add_exception_handler(error, backing_service)
