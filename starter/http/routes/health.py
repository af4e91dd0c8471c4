"""GET /healthz: the database and Temporal, each checked within HEALTH_TIMEOUT_SECONDS."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta
from typing import Any

from fastapi import APIRouter
from temporalio.api.workflowservice.v1 import GetSystemInfoRequest
from temporalio.service import RPCError

from starter.client import Tidings
from starter.http.deps import Api
from starter.http.errors import error_response
from starter.http.schemas import ErrorBody, Health

log = logging.getLogger("starter.http")

HEALTH_TIMEOUT_SECONDS = 2.0

router = APIRouter()


async def _check_database(tidings: Tidings) -> None:
    # A one-row read through the client: the routes reach the database only through it.
    async with asyncio.timeout(HEALTH_TIMEOUT_SECONDS):
        await tidings.list_users(limit=1)


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


@router.get(
    "/healthz",
    summary="Check the database and Temporal",
    response_model=Health,
    responses={503: {"model": ErrorBody, "description": "A backing service failed"}},
)
async def healthz(tidings: Api) -> Any:
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
