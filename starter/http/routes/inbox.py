"""/v1/users/{user_id}/inbox: the in-app inbox, read and marked read."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response

from starter.http.auth import InboxAccess
from starter.http.deps import Api, ItemId
from starter.http.schemas import MarkedRead
from tidings.api_keys import Scope
from tidings.models import InboxItem

router = APIRouter()


@router.get(
    "/users/{user_id}/inbox",
    dependencies=[InboxAccess(Scope.READ)],
    summary="A user's in-app inbox",
    response_model=list[InboxItem],
)
async def inbox(
    user_id: str,
    tidings: Api,
    unread: bool = False,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> list[InboxItem]:
    return await tidings.inbox(user_id, unread_only=unread, limit=limit)


@router.post(
    "/users/{user_id}/inbox/{item_id}/read",
    dependencies=[InboxAccess(Scope.SEND)],
    summary="Mark one inbox item read",
    status_code=204,
)
async def mark_read(user_id: str, item_id: ItemId, tidings: Api) -> Response:
    await tidings.mark_read(user_id, item_id)
    return Response(status_code=204)


@router.post(
    "/users/{user_id}/inbox/read-all",
    dependencies=[InboxAccess(Scope.SEND)],
    summary="Mark every inbox item read",
    response_model=MarkedRead,
)
async def mark_all_read(user_id: str, tidings: Api) -> MarkedRead:
    return MarkedRead(marked=await tidings.mark_all_read(user_id))
