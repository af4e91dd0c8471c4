"""/v1/notifications: send (one, or one per user in bulk), read, cancel, reschedule, and the
engagement events of a sent one.

Every route calls one `Tidings` method, which validates against the store before anything is
started or written; starter.http.errors turns its errors into the shared JSON shape.
"""

from __future__ import annotations

from fastapi import APIRouter, Request

from starter.client import EventRecorded
from starter.http.auth import Requires
from starter.http.deps import Api, IdempotencyKey, accepted, choose_key
from starter.http.schemas import (
    CONFLICT_RESPONSE,
    KEY_REUSED_RESPONSE,
    Accepted,
    BulkAccepted,
    BulkOutcome,
    BulkRequest,
    CancelBody,
    EngagementAccepted,
    EngagementBody,
    RescheduleBody,
)
from tidings.api_keys import Scope
from tidings.bulks import BulkRecord
from tidings.models import EngagementReport, NotificationRequest, NotificationResult

router = APIRouter()


@router.post(
    "/notifications",
    dependencies=[Requires(Scope.SEND)],
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
    key = choose_key(body.idempotency_key, idempotency_key)
    ref = await tidings.notify({**body.model_dump(), "idempotency_key": key})
    return accepted(request, ref)


@router.post(
    "/notifications/bulk",
    dependencies=[Requires(Scope.SEND)],
    summary="Send one notification per recipient, each with its own outcome",
    status_code=202,
    response_model=BulkAccepted,
)
async def notify_bulk(
    body: BulkRequest,
    request: Request,
    tidings: Api,
    idempotency_key: IdempotencyKey = None,
) -> BulkAccepted:
    """202 with every recipient's outcome (started, accepted, existed, rejected with the field
    and the reason, failed) even when some are rejected; 422 only for what every recipient
    shares (the template, a shared field, the count) or, with `atomic`, when any recipient is
    rejected. A large bulk is accepted durably: its recipients are `accepted` and `bulk_url`
    shows how many of their runs have been started."""
    fields = body.shared_fields()
    fields["idempotency_key"] = choose_key(body.idempotency_key, idempotency_key)
    result = await tidings.notify_many(
        body.recipient_list(), body.template_id, atomic=body.atomic, **fields
    )
    base = str(request.url_for("get_notification", notification_id="_"))[:-1]
    bulk_url = None
    if result.bulk_id is not None:
        bulk_url = str(request.url_for("get_bulk", bulk_id=result.bulk_id))
    return BulkAccepted(
        started=result.started,
        accepted=result.accepted,
        existed=result.existed,
        rejected=result.rejected,
        failed=result.failed,
        bulk_id=result.bulk_id,
        bulk_url=bulk_url,
        results=[
            BulkOutcome(
                **o.model_dump(),
                status_url=None if o.notification_id is None else base + o.notification_id,
            )
            for o in result.outcomes
        ],
    )


@router.get(
    "/bulks/{bulk_id}",
    dependencies=[Requires(Scope.READ)],
    summary="A bulk accepted durably: how many of its recipients' runs have been started",
    response_model=BulkRecord,
)
async def get_bulk(bulk_id: str, tidings: Api) -> BulkRecord:
    return await tidings.get_bulk(bulk_id)


@router.get(
    "/notifications/{notification_id}",
    dependencies=[Requires(Scope.READ)],
    summary="A notification's status, channels and engagement",
    response_model=NotificationResult,
)
async def get_notification(notification_id: str, tidings: Api) -> NotificationResult:
    return await tidings.status(notification_id)


@router.post(
    "/notifications/{notification_id}/cancel",
    dependencies=[Requires(Scope.SEND)],
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
    dependencies=[Requires(Scope.SEND)],
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
    dependencies=[Requires(Scope.SEND)],
    summary="Record what the user did with a delivered notification",
    responses=CONFLICT_RESPONSE,
    status_code=202,
    response_model=EngagementAccepted,
)
async def engage(notification_id: str, body: EngagementBody, tidings: Api) -> EngagementAccepted:
    await tidings.engage(
        notification_id,
        body.type,
        channel=body.channel,
        metadata=body.metadata,
        event_id=body.event_id,
    )
    return EngagementAccepted(notification_id=notification_id, type=body.type)


@router.post(
    "/notifications/{notification_id}/events",
    dependencies=[Requires(Scope.SEND)],
    summary="Record an engagement event (opened, clicked, dismissed, converted)",
    description=(
        "One database write, then at most one signal to the run while its engagement window"
        " may be open. Events after the window are recorded and counted too. The same event"
        " twice (the same event_id, or without one the same type and channel) answers"
        " `duplicate: true` and changes nothing. 409 before the notification was sent."
    ),
    responses=CONFLICT_RESPONSE,
    response_model=EventRecorded,
)
async def record_event(notification_id: str, body: EngagementReport, tidings: Api) -> EventRecorded:
    return await tidings.record_event(notification_id, body)
