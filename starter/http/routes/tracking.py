"""GET /t/{token}: signed tracking links (a click, then a redirect) and open pixels; expired
links and non-http(s) targets are 404 without a redirect (see tidings.tracking)."""

from __future__ import annotations

import hashlib
import logging

from fastapi import APIRouter, Response
from fastapi.responses import RedirectResponse

from starter.http.deps import Api
from starter.http.errors import error_response, unreachable
from starter.http.schemas import ErrorBody
from tidings import tracking
from tidings.errors import Conflict, NotFound
from tidings.models import AttributeValue, Channel, EngagementReport

log = logging.getLogger("starter.http")

# A 1x1 transparent GIF for the open pixel.
_PIXEL = bytes.fromhex(
    "47494638396101000100800000000000ffffff21f90401000000002c00000000010001000002024401003b"
)

router = APIRouter()


@router.get(
    "/t/{token}",
    summary="Follow a tracking link (records a click) or fetch an open pixel",
    response_class=Response,
    status_code=302,
    responses={
        302: {"description": "Redirect to the tracked URL"},
        200: {"description": "The open pixel", "content": {"image/gif": {}}},
        400: {"model": ErrorBody, "description": "The token is not valid"},
        404: {"model": ErrorBody, "description": "The link has expired, or its target is refused"},
        422: {"model": ErrorBody, "description": "Invalid request"},
    },
)
async def track(token: str, tidings: Api) -> Response:
    secret = tidings.settings.tracking_secret.get_secret_value()
    try:
        action = tracking.verify(secret, token)
    except (tracking.ExpiredToken, tracking.RefusedTarget) as e:
        # Ours, but not to be followed: no redirect, and nothing recorded.
        return error_response(404, "not_found", str(e), "token")
    except tracking.InvalidToken as e:
        return error_response(400, "invalid_request", str(e), "token")
    metadata: dict[str, AttributeValue] = {"url": action.url} if action.url else {}
    try:
        # One row, then at most one signal: late clicks count too, repeats count once.
        report = EngagementReport(
            type=action.type,
            channel=action.channel,
            metadata=metadata,
            event_id=_event_id(action.url, action.channel),
        )
        await tidings.record_event(action.notification_id, report)
    except (Conflict, NotFound) as e:
        log.info("tracking %s not recorded: %s", action.type.value, e)
    except Exception as e:
        # The person clicking must still reach the page when tracking is down.
        if unreachable(e) is None:
            raise
        log.warning("tracking %s not recorded: %s", action.type.value, e)
    if not action.url:
        return Response(_PIXEL, media_type="image/gif", headers={"Cache-Control": "no-store"})
    return RedirectResponse(action.url, status_code=302, headers={"Cache-Control": "no-store"})


def _event_id(url: str, channel: Channel | None) -> str:
    """Clicks on different links are different events; the same link clicked again, or the
    pixel fetched again, is the same event and counts once. The same URL sent on two channels
    is two links (v2 tokens, which name no channel, keep their first form)."""
    digest = hashlib.sha256(url.encode()).hexdigest()[:32]
    return f"link:{digest}" if channel is None else f"link:{channel.value}:{digest}"
