"""Push devices: registered under their user, removed by platform and token."""

from __future__ import annotations

from fastapi import APIRouter, Response

from starter.http.auth import Requires
from starter.http.deps import Api, UserId, same
from starter.http.schemas import DeviceBody
from tidings.api_keys import Scope
from tidings.errors import NotFound
from tidings.models import Device, Platform

router = APIRouter()


@router.post(
    "/users/{user_id}/devices",
    dependencies=[Requires(Scope.ADMIN)],
    summary="Register a push device",
    status_code=201,
    response_model=Device,
)
async def add_device(user_id: UserId, body: DeviceBody, tidings: Api) -> Device:
    same("user_id", body.user_id, user_id)
    return await tidings.add_device({**body.model_dump(exclude={"user_id"}), "user_id": user_id})


@router.delete(
    "/devices/{platform}/{token:path}",
    dependencies=[Requires(Scope.ADMIN)],
    summary="Remove a push device",
    status_code=204,
)
async def remove_device(platform: Platform, token: str, tidings: Api) -> Response:
    if not await tidings.remove_device(platform, token):
        raise NotFound("device", f"{platform.value}/{token[:6]}...")
    return Response(status_code=204)
