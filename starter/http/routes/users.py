"""/v1/users: users and their channel preferences."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from starter.http.deps import Api, UserId, same
from starter.http.schemas import PreferencesBody, UserBody
from tidings.models import Preferences, User

router = APIRouter()


@router.put("/users/{user_id}", summary="Create or replace a user", response_model=User)
async def put_user(user_id: UserId, body: UserBody, tidings: Api) -> User:
    same("id", body.id, user_id)
    return await tidings.upsert_user({**body.model_dump(exclude={"id"}), "id": user_id})


@router.get("/users/{user_id}", summary="Get a user", response_model=User)
async def get_user(user_id: str, tidings: Api) -> User:
    return await tidings.get_user(user_id)


@router.get("/users", summary="List users", response_model=list[User])
async def list_users(
    tidings: Api,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> list[User]:
    return await tidings.list_users(limit=limit, offset=offset)


@router.put(
    "/users/{user_id}/preferences", summary="Set a user's preferences", response_model=Preferences
)
async def put_preferences(user_id: UserId, body: PreferencesBody, tidings: Api) -> Preferences:
    same("user_id", body.user_id, user_id)
    fields = {**body.model_dump(exclude={"user_id"}), "user_id": user_id}
    return await tidings.set_preferences(fields)


@router.get(
    "/users/{user_id}/preferences", summary="Get a user's preferences", response_model=Preferences
)
async def get_preferences(user_id: str, tidings: Api) -> Preferences:
    return await tidings.get_preferences(user_id)
