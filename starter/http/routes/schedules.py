"""/v1/schedules: recurring sends (Temporal Schedules) created, read, paused, resumed, fired now
and deleted. Reading needs the read scope; everything else the admin scope."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Path, Response
from pydantic import Field
from starlette.exceptions import HTTPException

from starter.client_schedules import SchedulesUnsupported, ScheduleView
from starter.http.auth import Requires
from starter.http.deps import Api
from starter.http.schemas import ErrorBody
from tidings.api_keys import Scope
from tidings.models import IDENTIFIER, Model


async def _supported() -> AsyncIterator[None]:
    """A Temporal server without Schedules (the time-skipping test server) is a 503."""
    try:
        yield
    except SchedulesUnsupported as e:
        raise HTTPException(503, str(e)) from e


router = APIRouter(dependencies=[Depends(_supported)])

ScheduleId = Annotated[str, Path(pattern=IDENTIFIER, max_length=128)]


class NoteBody(Model):
    note: str = Field(default="", max_length=500)


@router.post(
    "/schedules",
    dependencies=[Requires(Scope.ADMIN)],
    summary="Create a recurring send",
    status_code=201,
    response_model=ScheduleView,
    responses={409: {"model": ErrorBody, "description": "A schedule with this id exists"}},
)
async def create_schedule(
    body: Annotated[
        dict[str, Any],
        Body(
            description="schedule_id; cron (5-field expressions) and/or calendars ({second,"
            " minute, hour, day_of_month, month, day_of_week}); time_zone (IANA); exactly one"
            " action: notification (a notification request without scheduled_at, expires_at"
            " or idempotency_key), digest ({user_id, key}) or broadcast ({template_id,"
            " audience: user ids | 'all' | 'segment:<name>', data, channels, priority,"
            " page_size, pages_per_run, concurrency}); note; paused. Unknown fields are"
            " refused.",
            examples=[
                {
                    "schedule_id": "weekly-welcome",
                    "cron": ["0 9 * * mon"],
                    "time_zone": "Europe/Berlin",
                    "notification": {
                        "user_id": "user_001",
                        "template_id": "welcome",
                        "data": {"app_name": "MyApp", "user_name": "John"},
                    },
                }
            ],
        ),
    ],
    tidings: Api,
) -> ScheduleView:
    return await tidings.create_schedule(body)


@router.get(
    "/schedules",
    dependencies=[Requires(Scope.READ)],
    summary="List recurring sends",
    response_model=list[ScheduleView],
)
async def list_schedules(tidings: Api) -> list[ScheduleView]:
    return await tidings.list_schedules()


@router.get(
    "/schedules/{schedule_id}",
    dependencies=[Requires(Scope.READ)],
    summary="A recurring send: its next and recent run times",
    response_model=ScheduleView,
)
async def describe_schedule(schedule_id: ScheduleId, tidings: Api) -> ScheduleView:
    return await tidings.describe_schedule(schedule_id)


@router.post(
    "/schedules/{schedule_id}/pause",
    dependencies=[Requires(Scope.ADMIN)],
    summary="Pause a recurring send",
    response_model=ScheduleView,
)
async def pause(
    schedule_id: ScheduleId, tidings: Api, body: NoteBody | None = None
) -> ScheduleView:
    return await tidings.pause_schedule(schedule_id, (body or NoteBody()).note or "paused")


@router.post(
    "/schedules/{schedule_id}/resume",
    dependencies=[Requires(Scope.ADMIN)],
    summary="Resume a paused recurring send",
    response_model=ScheduleView,
)
async def resume(
    schedule_id: ScheduleId, tidings: Api, body: NoteBody | None = None
) -> ScheduleView:
    return await tidings.resume_schedule(schedule_id, (body or NoteBody()).note or "resumed")


@router.post(
    "/schedules/{schedule_id}/trigger",
    dependencies=[Requires(Scope.ADMIN)],
    summary="Fire a recurring send once, now",
    status_code=202,
    response_model=ScheduleView,
)
async def trigger(schedule_id: ScheduleId, tidings: Api) -> ScheduleView:
    return await tidings.trigger_schedule(schedule_id)


@router.delete(
    "/schedules/{schedule_id}",
    dependencies=[Requires(Scope.ADMIN)],
    summary="Delete a recurring send (notifications already sent stay)",
    status_code=204,
)
async def delete(schedule_id: ScheduleId, tidings: Api) -> Response:
    await tidings.delete_schedule(schedule_id)
    return Response(status_code=204)
