"""/v1/users: users and their channel preferences."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Query

from starter.client import InboxToken, UserDeleted
from starter.http.auth import Requires
from starter.http.deps import MAX_OFFSET, Api, UserId, same
from starter.http.schemas import InboxTokenBody, PreferencesBody, UserBody
from tidings.api_keys import Scope
from tidings.models import Preferences, User

router = APIRouter()


@router.put(
    "/users/{user_id}",
    dependencies=[Requires(Scope.ADMIN)],
    summary="Create or replace a user",
    response_model=User,
)
async def put_user(user_id: UserId, body: UserBody, tidings: Api) -> User:
    same("id", body.id, user_id)
    return await tidings.upsert_user({**body.model_dump(exclude={"id"}), "id": user_id})


@router.get(
    "/users/{user_id}",
    dependencies=[Requires(Scope.READ)],
    summary="Get a user",
    response_model=User,
)
async def get_user(user_id: str, tidings: Api) -> User:
    return await tidings.get_user(user_id)


@router.get(
    "/users", dependencies=[Requires(Scope.READ)], summary="List users", response_model=list[User]
)
async def list_users(
    tidings: Api,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
) -> list[User]:
    return await tidings.list_users(limit=limit, offset=offset)


@router.put(
    "/users/{user_id}/preferences",
    dependencies=[Requires(Scope.ADMIN)],
    summary="Set a user's preferences",
    response_model=Preferences,
)
async def put_preferences(user_id: UserId, body: PreferencesBody, tidings: Api) -> Preferences:
    same("user_id", body.user_id, user_id)
    fields = {**body.model_dump(exclude={"user_id"}), "user_id": user_id}
    return await tidings.set_preferences(fields)


@router.get(
    "/users/{user_id}/preferences",
    dependencies=[Requires(Scope.READ)],
    summary="Get a user's preferences",
    response_model=Preferences,
)
async def get_preferences(user_id: str, tidings: Api) -> Preferences:
    return await tidings.get_preferences(user_id)


@router.post(
    "/users/{user_id}/inbox-token",
    dependencies=[Requires(Scope.SEND)],
    summary="Mint a token a browser can use to read this user's inbox (and no other)",
    status_code=201,
    response_model=InboxToken,
)
async def inbox_token(
    user_id: UserId, tidings: Api, body: InboxTokenBody | None = None
) -> InboxToken:
    ttl = timedelta(seconds=(body or InboxTokenBody()).ttl_seconds)
    return await tidings.inbox_token(user_id, ttl=ttl)


@router.delete(
    "/users/{user_id}",
    dependencies=[Requires(Scope.ADMIN)],
    summary="Delete a user: cancel their pending notifications and remove their personal data",
    response_model=UserDeleted,
)
async def delete_user(user_id: UserId, tidings: Api) -> UserDeleted:
    return await tidings.delete_user(user_id)
