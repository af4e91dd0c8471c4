"""What `Tidings.broadcast` takes and answers: the audience in its accepted forms, the request as
given, the edge's checks on its knobs, and the reference to the broadcast started."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, Field, ValidationError

from tidings.broadcast_models import (
    BROADCAST_ID_PATTERN,
    AllUsersAudience,
    Audience,
    SegmentAudience,
    UserIdsAudience,
)
from tidings.errors import InvalidRequest
from tidings.models import Channel, Priority

_KINDS: dict[str, type[UserIdsAudience | AllUsersAudience | SegmentAudience]] = {
    "users": UserIdsAudience,
    "all": AllUsersAudience,
    "segment": SegmentAudience,
}
AudienceArg = Audience | Sequence[str] | str | dict[str, Any]


class BroadcastOptions(BaseModel):
    """The edge's checks on the knobs (extra keys refused)."""

    model_config = {"extra": "forbid"}

    broadcast_id: str | None = Field(default=None, pattern=BROADCAST_ID_PATTERN)
    channels: list[Channel] | None = Field(default=None, min_length=1)
    priority: Priority | None = None
    page_size: int = Field(default=500, ge=1, le=2000)
    pages_per_run: int = Field(default=50, ge=1, le=1000)
    concurrency: int = Field(default=20, ge=1, le=500)


@dataclass(frozen=True)
class BroadcastRequest:
    """The arguments of `broadcast` as given, unchecked: what its private steps pass along."""

    template_id: str
    audience: AudienceArg
    data: dict[str, Any] | None = None
    channels: Sequence[Channel | str] | None = None
    broadcast_id: str | None = None
    priority: Priority | str | None = None
    page_size: int = 500
    pages_per_run: int = 50
    concurrency: int = 20
    experiment: dict[str, Any] | None = None


class BroadcastRef(BaseModel):
    broadcast_id: str
    workflow_id: str


def parse_audience(audience: AudienceArg) -> Audience:
    """A list of ids, "all", "segment:<name>", or the model / its dict form."""
    if isinstance(audience, UserIdsAudience | AllUsersAudience | SegmentAudience):
        return audience
    value: Any = audience
    if isinstance(audience, str):
        if audience == "all":
            value = {"kind": "all"}
        elif audience.startswith("segment:"):
            value = {"kind": "segment", "segment": audience.removeprefix("segment:")}
        else:
            raise InvalidRequest(
                "audience", f"{audience!r}: use a list of user ids, 'all' or 'segment:<name>'"
            )
    elif not isinstance(audience, dict):
        value = {"kind": "users", "user_ids": list(audience)}
    kind = value.get("kind") if isinstance(value, dict) else None
    model = _KINDS.get(kind) if isinstance(kind, str) else None
    if model is None:
        raise InvalidRequest("audience.kind", f"{kind!r}: must be one of {', '.join(_KINDS)}")
    try:
        return model.model_validate(value)
    except ValidationError as e:
        raise InvalidRequest.from_validation(e, "audience.") from e
