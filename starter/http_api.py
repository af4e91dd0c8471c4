"""The /v1 REST routes; `starter.http` mounts them under /v1.

Every route calls one `Tidings` method, which validates against the store before anything is
started or written; the handlers in `starter.http` turn its errors into the shared JSON shape.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Header, Path, Query, Request, Response
from starlette.exceptions import HTTPException

from starter.client import NotificationRef, Tidings
from starter.http_models import (
    CONFLICT_RESPONSE,
    KEY_REUSED_RESPONSE,
    Accepted,
    BulkAccepted,
    BulkRequest,
    CancelBody,
    ChannelStatsView,
    DeviceBody,
    EngagementAccepted,
    EngagementBody,
    MarkedRead,
    PreferencesBody,
    RescheduleBody,
    StatsView,
    UserBody,
)
from tidings.errors import InvalidRequest, NotFound
from tidings.models import (
    IDENTIFIER,
    ChannelStats,
    Device,
    InboxItem,
    NotificationRequest,
    NotificationResult,
    Platform,
    Preferences,
    Template,
    TemplateDefinition,
    User,
)

# --- routes ------------------------------------------------------------------------------------


def get_tidings(request: Request) -> Tidings:
    tidings: Tidings | None = request.app.state.tidings
    if tidings is None:
        raise HTTPException(503, "the service is starting or stopping")
    return tidings


Api = Annotated[Tidings, Depends(get_tidings)]
UserId = Annotated[str, Path(pattern=IDENTIFIER, max_length=128)]
IdempotencyKey = Annotated[
    str | None, Header(max_length=128, description="Used when the body has no idempotency_key")
]

router = APIRouter()


def _same(field: str, given: str | None, path_value: str) -> None:
    if given is not None and given != path_value:
        raise InvalidRequest(field, f"{given!r} differs from {path_value!r} in the path")


def _key(body_key: str | None, header_key: str | None) -> str | None:
    if body_key and header_key and body_key != header_key:
        raise InvalidRequest("idempotency_key", "differs from the Idempotency-Key header")
    return body_key or header_key


def _accepted(request: Request, ref: NotificationRef) -> Accepted:
    url = request.url_for("get_notification", notification_id=ref.notification_id)
    return Accepted(**ref.model_dump(), status_url=str(url))


@router.put("/users/{user_id}", summary="Create or replace a user", response_model=User)
async def put_user(user_id: UserId, body: UserBody, tidings: Api) -> User:
    _same("id", body.id, user_id)
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


@router.post(
    "/users/{user_id}/devices",
    summary="Register a push device",
    status_code=201,
    response_model=Device,
)
async def add_device(user_id: UserId, body: DeviceBody, tidings: Api) -> Device:
    _same("user_id", body.user_id, user_id)
    return await tidings.add_device({**body.model_dump(exclude={"user_id"}), "user_id": user_id})


@router.delete("/devices/{platform}/{token:path}", summary="Remove a push device", status_code=204)
async def remove_device(platform: Platform, token: str, tidings: Api) -> Response:
    if not await tidings.remove_device(platform, token):
        raise NotFound("device", f"{platform.value}/{token[:6]}...")
    return Response(status_code=204)


@router.put(
    "/users/{user_id}/preferences", summary="Set a user's preferences", response_model=Preferences
)
async def put_preferences(user_id: UserId, body: PreferencesBody, tidings: Api) -> Preferences:
    _same("user_id", body.user_id, user_id)
    fields = {**body.model_dump(exclude={"user_id"}), "user_id": user_id}
    return await tidings.set_preferences(fields)


@router.get(
    "/users/{user_id}/preferences", summary="Get a user's preferences", response_model=Preferences
)
async def get_preferences(user_id: str, tidings: Api) -> Preferences:
    return await tidings.get_preferences(user_id)


@router.post(
    "/templates",
    summary="Register a template (201 for a new version, 200 when nothing changed)",
    status_code=201,
    response_model=Template,
)
async def register_template(body: TemplateDefinition, response: Response, tidings: Api) -> Template:
    before = await tidings.store.get_template(body.id)
    template = await tidings.register_template(body)
    if before is not None and before.version == template.version:
        response.status_code = 200
    return template


@router.get("/templates", summary="List templates (latest versions)", response_model=list[Template])
async def list_templates(tidings: Api) -> list[Template]:
    return await tidings.list_templates()


@router.get("/templates/{template_id}", summary="Get a template", response_model=Template)
async def get_template(
    template_id: str, tidings: Api, version: Annotated[int | None, Query(ge=1)] = None
) -> Template:
    return await tidings.get_template(template_id, version)


@router.post(
    "/notifications",
    summary="Send a notification",
    status_code=202,
    response_model=Accepted,
    responses=KEY_REUSED_RESPONSE,
)
async def notify(
    body: NotificationRequest,
    request: Request,
    tidings: Api,
    idempotency_key: IdempotencyKey = None,
) -> Accepted:
    key = _key(body.idempotency_key, idempotency_key)
    ref = await tidings.notify({**body.model_dump(), "idempotency_key": key})
    return _accepted(request, ref)


@router.post(
    "/notifications/bulk",
    summary="Send one notification per user",
    status_code=202,
    response_model=BulkAccepted,
    responses=KEY_REUSED_RESPONSE,
)
async def notify_bulk(
    body: BulkRequest, request: Request, tidings: Api, idempotency_key: IdempotencyKey = None
) -> BulkAccepted:
    fields = body.model_dump(exclude={"user_ids", "template_id"})
    fields["idempotency_key"] = _key(body.idempotency_key, idempotency_key)
    refs = await tidings.notify_many(body.user_ids, body.template_id, **fields)
    return BulkAccepted(notifications=[_accepted(request, ref) for ref in refs])


@router.get(
    "/notifications/{notification_id}",
    summary="A notification's status, channels and engagement",
    response_model=NotificationResult,
)
async def get_notification(notification_id: str, tidings: Api) -> NotificationResult:
    return await tidings.status(notification_id)


@router.post(
    "/notifications/{notification_id}/cancel",
    summary="Cancel a notification that has not been sent",
    responses=CONFLICT_RESPONSE,
    response_model=NotificationResult,
)
async def cancel(
    notification_id: str, tidings: Api, body: CancelBody | None = None
) -> NotificationResult:
    return await tidings.cancel(notification_id, (body or CancelBody()).reason)


@router.post(
    "/notifications/{notification_id}/reschedule",
    summary="Move the send time of a notification that has not been sent",
    responses=CONFLICT_RESPONSE,
    response_model=NotificationResult,
)
async def reschedule(
    notification_id: str, body: RescheduleBody, tidings: Api
) -> NotificationResult:
    return await tidings.reschedule(notification_id, body.at)


@router.post(
    "/notifications/{notification_id}/engagement",
    summary="Record what the user did with a delivered notification",
    responses=CONFLICT_RESPONSE,
    status_code=202,
    response_model=EngagementAccepted,
)
async def engage(notification_id: str, body: EngagementBody, tidings: Api) -> EngagementAccepted:
    await tidings.engage(notification_id, body.type, channel=body.channel, metadata=body.metadata)
    return EngagementAccepted(notification_id=notification_id, type=body.type)


@router.get(
    "/users/{user_id}/inbox", summary="A user's in-app inbox", response_model=list[InboxItem]
)
async def inbox(
    user_id: str,
    tidings: Api,
    unread: bool = False,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> list[InboxItem]:
    return await tidings.inbox(user_id, unread_only=unread, limit=limit)


@router.post(
    "/users/{user_id}/inbox/{item_id}/read", summary="Mark one inbox item read", status_code=204
)
async def mark_read(user_id: str, item_id: int, tidings: Api) -> Response:
    await tidings.mark_read(user_id, item_id)
    return Response(status_code=204)


@router.post(
    "/users/{user_id}/inbox/read-all",
    summary="Mark every inbox item read",
    response_model=MarkedRead,
)
async def mark_all_read(user_id: str, tidings: Api) -> MarkedRead:
    return MarkedRead(marked=await tidings.mark_all_read(user_id))


def _channel_view(stats: ChannelStats) -> ChannelStatsView:
    return ChannelStatsView(**stats.model_dump(), success_rate=stats.success_rate)


@router.get("/stats", summary="Counts by status, channel and engagement", response_model=StatsView)
async def stats(tidings: Api) -> StatsView:
    s = await tidings.stats()
    return StatsView(
        notifications=s.notifications,
        channels={c: _channel_view(v) for c, v in s.channels.items()},
        engagement=s.engagement,
        success_rate=s.success_rate,
    )
