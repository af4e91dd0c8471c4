"""/v1/broadcasts: a template sent to a list of users, every user or a segment; its progress,
pause, resume and cancel.

Starting, pausing, resuming and cancelling need the send scope; reading the read scope.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from pydantic import Field

from starter.client_broadcast_models import BroadcastRef
from starter.http.auth import Requires
from starter.http.deps import Api
from tidings.api_keys import Scope
from tidings.broadcast_models import BROADCAST_ID_PATTERN, Audience
from tidings.models import Channel, Identifier, Model, Priority
from tidings.store.broadcasts import BroadcastRecord
from workflows.broadcast_io import BroadcastProgress

router = APIRouter()

BroadcastId = Annotated[str, Path(pattern=BROADCAST_ID_PATTERN)]


class BroadcastBody(Model):
    template_id: Identifier
    audience: Audience
    data: dict[str, Any] = Field(default_factory=dict)
    channels: list[Channel] | None = Field(default=None, min_length=1)
    broadcast_id: str | None = Field(default=None, pattern=BROADCAST_ID_PATTERN)
    priority: Priority | None = None
    page_size: int = Field(default=500, ge=1, le=2000)
    # {"share": 0.1, "variants": [...], ...}: an A/B test on that share first (README,
    # Broadcasts); checked by the client, which names the field (`experiment.share`).
    experiment: dict[str, Any] | None = None


class CancelBody(Model):
    reason: str = Field(default="cancelled by request", max_length=500)


@router.post(
    "/broadcasts",
    dependencies=[Requires(Scope.SEND)],
    summary="Start a broadcast: one template to a list of users, every user or a segment",
    status_code=201,
    response_model=BroadcastRef,
)
async def start_broadcast(body: BroadcastBody, tidings: Api) -> BroadcastRef:
    return await tidings.broadcast(
        body.template_id,
        body.audience,
        body.data,
        body.channels,
        broadcast_id=body.broadcast_id,
        priority=body.priority,
        page_size=body.page_size,
        experiment=body.experiment,
    )


@router.get(
    "/broadcasts",
    dependencies=[Requires(Scope.READ)],
    summary="List broadcasts, newest first, with their recorded counters",
    response_model=list[BroadcastRecord],
)
async def list_broadcasts(
    tidings: Api, limit: Annotated[int, Query(ge=1, le=1000)] = 100
) -> list[BroadcastRecord]:
    return await tidings.list_broadcasts(limit=limit)


@router.get(
    "/broadcasts/{broadcast_id}",
    dependencies=[Requires(Scope.READ)],
    summary="Progress: targeted, sent, suppressed, deferred and failed per channel",
    response_model=BroadcastProgress,
)
async def broadcast_progress(broadcast_id: BroadcastId, tidings: Api) -> BroadcastProgress:
    return await tidings.broadcast_progress(broadcast_id)


@router.post(
    "/broadcasts/{broadcast_id}/pause",
    dependencies=[Requires(Scope.SEND)],
    summary="Pause after the page in progress (409 when the broadcast has finished)",
    response_model=BroadcastProgress,
)
async def pause_broadcast(broadcast_id: BroadcastId, tidings: Api) -> BroadcastProgress:
    return await tidings.pause_broadcast(broadcast_id)


@router.post(
    "/broadcasts/{broadcast_id}/resume",
    dependencies=[Requires(Scope.SEND)],
    summary="Resume a paused broadcast (409 when it has finished)",
    response_model=BroadcastProgress,
)
async def resume_broadcast(broadcast_id: BroadcastId, tidings: Api) -> BroadcastProgress:
    return await tidings.resume_broadcast(broadcast_id)


@router.post(
    "/broadcasts/{broadcast_id}/cancel",
    dependencies=[Requires(Scope.SEND)],
    summary="Cancel after the page in progress (409 when it has finished)",
    response_model=BroadcastProgress,
)
async def cancel_broadcast(
    broadcast_id: BroadcastId, tidings: Api, body: CancelBody | None = None
) -> BroadcastProgress:
    return await tidings.cancel_broadcast(broadcast_id, (body or CancelBody()).reason)
