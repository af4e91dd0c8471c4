"""/v1/digests: digest keys registered and read, events added, a user's digest flushed or read.

Adding an event or flushing needs the send scope, registering the admin scope, reading the read
scope.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Path
from pydantic import Field

from starter.client_digests import DigestEventRef
from starter.http.auth import Requires
from starter.http.deps import Api, UserId, same
from tidings.api_keys import Scope
from tidings.digests import DigestDefinition
from tidings.models import IDENTIFIER, Identifier, Model, Timestamp
from workflows.digest_io import DigestStatus

router = APIRouter()

DigestKey = Annotated[str, Path(pattern=IDENTIFIER, max_length=128, examples=["comments"])]


class DigestEventBody(Model):
    user_id: Identifier
    event_id: Identifier
    data: dict[str, Any] = Field(default_factory=dict)
    at: Timestamp | None = None


class FlushBody(Model):
    reason: str = Field(default="flushed by request", max_length=500)


@router.put(
    "/digests/{key}",
    dependencies=[Requires(Scope.ADMIN)],
    summary="Register (or replace) a digest key's definition",
    response_model=DigestDefinition,
)
async def register_digest(
    key: DigestKey,
    body: Annotated[
        dict[str, Any],
        Body(
            description="template_id, window_seconds, max_events, first_n, last_n and an"
            " optional schedule {days, at, timezone}. Unknown fields are refused.",
            examples=[
                {"template_id": "welcome", "window_seconds": 3600, "max_events": 10},
                {"template_id": "welcome", "schedule": {"days": [0, 1, 2, 3, 4], "at": "09:00"}},
            ],
        ),
    ],
    tidings: Api,
) -> DigestDefinition:
    given = body.get("key")
    same("key", given if isinstance(given, str) else None, key)
    return await tidings.register_digest({**body, "key": key})


@router.get(
    "/digests",
    dependencies=[Requires(Scope.READ)],
    summary="List the registered digest keys",
    response_model=list[DigestDefinition],
)
async def list_digests(tidings: Api) -> list[DigestDefinition]:
    return await tidings.list_digests()


@router.get(
    "/digests/{key}",
    dependencies=[Requires(Scope.READ)],
    summary="A digest key's definition",
    response_model=DigestDefinition,
)
async def get_digest(key: DigestKey, tidings: Api) -> DigestDefinition:
    return await tidings.get_digest(key)


@router.post(
    "/digests/{key}/events",
    dependencies=[Requires(Scope.SEND)],
    summary="Add an event to a user's digest (a repeated event_id counts once)",
    status_code=202,
    response_model=DigestEventRef,
)
async def add_event(key: DigestKey, body: DigestEventBody, tidings: Api) -> DigestEventRef:
    return await tidings.digest_event(body.user_id, key, body.event_id, body.data, at=body.at)


@router.post(
    "/digests/{key}/users/{user_id}/flush",
    dependencies=[Requires(Scope.SEND)],
    summary="Close the user's current batch now and send it",
    status_code=202,
    response_model=DigestStatus,
)
async def flush(
    key: DigestKey, user_id: UserId, tidings: Api, body: FlushBody | None = None
) -> DigestStatus:
    reason = (body or FlushBody()).reason
    return await tidings.flush_digest(user_id, key, reason=reason)


@router.get(
    "/digests/{key}/users/{user_id}",
    dependencies=[Requires(Scope.READ)],
    summary="A user's digest: waiting events, batches sent, when the open batch closes",
    response_model=DigestStatus,
)
async def status(key: DigestKey, user_id: UserId, tidings: Api) -> DigestStatus:
    return await tidings.digest_status(user_id, key)
