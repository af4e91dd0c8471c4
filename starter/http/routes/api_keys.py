"""/v1/api-keys: create (the key is in the answer once), list and revoke API keys (admin)."""

from __future__ import annotations

from fastapi import APIRouter, Path, Response
from pydantic import Field

from starter.http.auth import Requires
from starter.http.deps import Api
from tidings.api_keys import ApiKey, CreatedApiKey, Scope
from tidings.models import Model

router = APIRouter()


class ApiKeyBody(Model):
    name: str = Field(min_length=1, max_length=128, pattern=r"\S")
    scopes: list[Scope] = Field(min_length=1, max_length=3)


@router.post(
    "/api-keys",
    dependencies=[Requires(Scope.ADMIN)],
    summary="Create an API key (the key is shown in this answer only)",
    status_code=201,
    response_model=CreatedApiKey,
)
async def create_api_key(body: ApiKeyBody, tidings: Api) -> CreatedApiKey:
    return await tidings.create_api_key(body.name, body.scopes)


@router.get(
    "/api-keys",
    dependencies=[Requires(Scope.ADMIN)],
    summary="List API keys (ids, names, scopes; never the keys)",
    response_model=list[ApiKey],
)
async def list_api_keys(tidings: Api) -> list[ApiKey]:
    return await tidings.list_api_keys()


@router.delete(
    "/api-keys/{key_id}",
    dependencies=[Requires(Scope.ADMIN)],
    summary="Revoke an API key (refused from the next request on)",
    status_code=204,
)
async def revoke_api_key(tidings: Api, key_id: str = Path(pattern=r"^[0-9a-f]{16}$")) -> Response:
    await tidings.revoke_api_key(key_id)
    return Response(status_code=204)
