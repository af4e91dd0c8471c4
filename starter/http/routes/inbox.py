"""/v1/users/{user_id}/inbox: the in-app inbox, listed, counted and marked (seen, read,
archived). The live stream is in inbox_stream.py."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel, ConfigDict, Field

from starter.http.auth import InboxAccess
from starter.http.deps import Api, ItemId
from starter.http.schemas import MarkedRead
from tidings.api_keys import Scope
from tidings.inbox import MAX_PAGE, InboxChange, InboxCounts, InboxPage, InboxState
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


class InboxMark(BaseModel):
    """Set a state on some of the user's items, or on all of them (`item_ids` left out; for
    seen and read, archived items are left alone)."""

    model_config = ConfigDict(extra="forbid")

    state: InboxState
    item_ids: list[Annotated[int, Field(ge=1, le=2**63 - 1)]] | None = Field(
        default=None, min_length=1, max_length=MAX_PAGE
    )


@router.get(
    "/users/{user_id}/inbox/items",
    dependencies=[InboxAccess(Scope.READ)],
    summary="A page of a user's inbox, with filters, counts and the next page's cursor",
    response_model=InboxPage,
)
async def inbox_page(
    user_id: str,
    tidings: Api,
    unread: bool | None = None,
    archived: Annotated[
        bool | None, Query(description="false (default): leave archived items out; true: only them")
    ] = False,
    all_items: Annotated[
        bool, Query(alias="all", description="archived and not archived alike")
    ] = False,
    category: Annotated[str | None, Query(max_length=128)] = None,
    cursor: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
) -> InboxPage:
    return await tidings.inbox_page(
        user_id,
        unread=unread,
        archived=None if all_items else archived,
        category=category,
        cursor=cursor,
        limit=limit,
    )


@router.get(
    "/users/{user_id}/inbox/counts",
    dependencies=[InboxAccess(Scope.READ)],
    summary="Unseen and unread items (archived ones left out)",
    response_model=InboxCounts,
)
async def inbox_counts(user_id: str, tidings: Api) -> InboxCounts:
    return await tidings.inbox_counts(user_id)


@router.post(
    "/users/{user_id}/inbox/mark",
    dependencies=[InboxAccess(Scope.SEND)],
    summary="Mark items (or all) seen, read, archived or unarchived",
    response_model=InboxChange,
)
async def mark(user_id: str, body: InboxMark, tidings: Api) -> InboxChange:
    return await tidings.mark_inbox(user_id, body.state, body.item_ids)
