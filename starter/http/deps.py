"""What the routes depend on, as `Annotated` aliases: the client, path and header parameters,
and the checks shared by several routes."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, Path, Request
from starlette.exceptions import HTTPException

from starter.client import NotificationRef, Tidings
from starter.http.schemas import Accepted
from tidings.errors import InvalidRequest
from tidings.models import IDENTIFIER


def get_tidings(request: Request) -> Tidings:
    tidings: Tidings | None = request.app.state.tidings
    if tidings is None:
        raise HTTPException(503, "the service is starting or stopping")
    return tidings


# Every route reaches the store and Temporal through this client, never directly.
Api = Annotated[Tidings, Depends(get_tidings)]
UserId = Annotated[str, Path(pattern=IDENTIFIER, max_length=128)]
# Database integers are 64-bit: a larger number is refused at the edge, not by the driver.
ItemId = Annotated[int, Path(ge=1, le=2**63 - 1)]
MAX_OFFSET = 1_000_000_000
IdempotencyKey = Annotated[
    str | None, Header(max_length=128, description="Used when the body has no idempotency_key")
]  # a parameter named idempotency_key reads the Idempotency-Key header


def same(field: str, given: str | None, path_value: str) -> None:
    """A body may repeat the id the path carries, but not contradict it."""
    if given is not None and given != path_value:
        raise InvalidRequest(field, f"{given!r} differs from {path_value!r} in the path")


def choose_key(body_key: str | None, header_key: str | None) -> str | None:
    if body_key and header_key and body_key != header_key:
        raise InvalidRequest("idempotency_key", "differs from the Idempotency-Key header")
    return body_key or header_key


def accepted(request: Request, ref: NotificationRef) -> Accepted:
    url = request.url_for("get_notification", notification_id=ref.notification_id)
    return Accepted(**ref.model_dump(), status_url=str(url))
