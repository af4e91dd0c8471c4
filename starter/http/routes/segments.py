"""/v1/segments: saved audiences. Creating and deleting one needs the admin scope (a segment
decides who a bulk send reaches, like a template decides what it says); counting and listing
members the read scope."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Path, Query, Response

from starter.http.auth import Requires
from starter.http.deps import Api
from tidings.api_keys import Scope
from tidings.models import IDENTIFIER
from tidings.segments import Segment, SegmentPage

router = APIRouter(tags=["segments"])

SegmentName = Annotated[str, Path(pattern=IDENTIFIER, max_length=128)]


class SegmentView(Segment):
    count: int


@router.post(
    "/segments",
    dependencies=[Requires(Scope.ADMIN)],
    summary="Save a segment (200 with the stored one when the name is taken)",
    status_code=201,
    response_model=Segment,
)
async def create_segment(
    body: Annotated[
        dict[str, Any],
        Body(
            description='{"name": ..., "rules": {"all": [{"field": "locale", "op": "eq",'
            ' "value": "de"}, ...]}}; fields and operators in the README.',
        ),
    ],
    response: Response,
    tidings: Api,
) -> Segment:
    segment, created = await tidings.create_segment(body)
    if not created:
        response.status_code = 200
    return segment


@router.get(
    "/segments",
    dependencies=[Requires(Scope.READ)],
    summary="The saved segments, by name",
    response_model=list[Segment],
)
async def list_segments(tidings: Api) -> list[Segment]:
    return await tidings.list_segments()


@router.get(
    "/segments/{segment}",
    dependencies=[Requires(Scope.READ)],
    summary="A segment and how many users it holds now",
    response_model=SegmentView,
)
async def get_segment(segment: SegmentName, tidings: Api) -> SegmentView:
    saved = await tidings.get_segment(segment)
    count = await tidings.segment_count(segment)
    return SegmentView(**saved.model_dump(), count=count)


@router.get(
    "/segments/{segment}/members",
    dependencies=[Requires(Scope.READ)],
    summary="One page of the segment's user ids, in id order (keyset: pass next_after)",
    response_model=SegmentPage,
)
async def members(
    segment: SegmentName,
    tidings: Api,
    after: Annotated[str | None, Query(max_length=128)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> SegmentPage:
    return await tidings.segment_members(segment, after=after, limit=limit)


@router.delete(
    "/segments/{segment}",
    dependencies=[Requires(Scope.ADMIN)],
    summary="Delete a segment",
    status_code=204,
)
async def delete_segment(segment: SegmentName, tidings: Api) -> Response:
    await tidings.delete_segment(segment)
    return Response(status_code=204)
