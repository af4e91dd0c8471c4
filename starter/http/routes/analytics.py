"""/v1/analytics: period metrics, best templates, channel and provider performance, and a user's
engagement profile (read scope). Metric definitions: `tidings.analytics` and the README.

A period is `start` and `end` (ISO timestamps with an offset); without them, the last 30 days.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from pydantic import ValidationError

from starter.http.auth import Requires
from starter.http.deps import Api, UserId
from tidings.analytics import (
    Bucket,
    ChannelPerformance,
    EngagementProfile,
    Metrics,
    MetricsFilter,
    Period,
    ProviderPerformance,
    RankBy,
    TemplateRank,
)
from tidings.api_keys import Scope
from tidings.errors import InvalidRequest
from tidings.models import Channel
from tidings.store.analytics import default_period

router = APIRouter(prefix="/analytics", tags=["analytics"])


def _period(
    start: Annotated[datetime | None, Query(description="Inclusive, with an offset")] = None,
    end: Annotated[datetime | None, Query(description="Exclusive, with an offset")] = None,
) -> Period:
    for name, value in (("start", start), ("end", end)):
        if value is not None and value.tzinfo is None:
            raise InvalidRequest(name, "give the time with an offset (e.g. Z)")
    if start is None and end is None:
        return default_period(datetime.now(UTC))
    if start is None or end is None:
        raise InvalidRequest("start" if start is None else "end", "give both start and end")
    try:
        return Period(start=start, end=end)
    except ValidationError as e:
        raise InvalidRequest.from_validation(e, "period.") from e


def _filter(
    template_id: str | None = None,
    template_version: int | None = None,
    channel: Channel | None = None,
    category: str | None = None,
    experiment_id: str | None = None,
    variant: str | None = None,
    user_id: str | None = None,
    segment: str | None = None,
) -> MetricsFilter:
    values = {
        "template_id": template_id,
        "template_version": template_version,
        "channel": channel,
        "category": category,
        "experiment_id": experiment_id,
        "variant": variant,
        "user_id": user_id,
        "segment": segment,
    }
    try:
        return MetricsFilter.model_validate({k: v for k, v in values.items() if v is not None})
    except ValidationError as e:
        raise InvalidRequest.from_validation(e) from e


PeriodQuery = Annotated[Period, Depends(_period)]
FilterQuery = Annotated[MetricsFilter, Depends(_filter)]


@router.get(
    "/metrics",
    dependencies=[Requires(Scope.READ)],
    summary="Sent, delivered, failed, suppressed, rates, conversion value and a series",
    response_model=Metrics,
)
async def metrics(
    tidings: Api, period: PeriodQuery, where: FilterQuery, bucket: Bucket = Bucket.DAY
) -> Metrics:
    return await tidings.analytics_metrics(period, where, bucket=bucket)


@router.get(
    "/templates",
    dependencies=[Requires(Scope.READ)],
    summary="Templates ranked by a rate, among those sent at least minimum_sample times",
    response_model=list[TemplateRank],
)
async def templates(
    tidings: Api,
    period: PeriodQuery,
    where: FilterQuery,
    by: RankBy = RankBy.OPEN_RATE,
    minimum_sample: Annotated[int, Query(ge=1)] = 100,
    limit: Annotated[int, Query(ge=1, le=100)] = 10,
) -> list[TemplateRank]:
    return await tidings.best_templates(
        period, where, by=by, minimum_sample=minimum_sample, limit=limit
    )


@router.get(
    "/channels",
    dependencies=[Requires(Scope.READ)],
    summary="Per channel: delivery rate, open rate, median seconds to the first open",
    response_model=list[ChannelPerformance],
)
async def channels(
    tidings: Api, period: PeriodQuery, where: FilterQuery
) -> list[ChannelPerformance]:
    return await tidings.channel_performance(period, where)


@router.get(
    "/providers",
    dependencies=[Requires(Scope.READ)],
    summary="Per channel: failures, retries and failovers between channels",
    response_model=list[ProviderPerformance],
)
async def providers(
    tidings: Api, period: PeriodQuery, where: FilterQuery
) -> list[ProviderPerformance]:
    return await tidings.provider_performance(period, where)


@router.get(
    "/users/{user_id}",
    dependencies=[Requires(Scope.READ)],
    summary="A user's engagement per channel, preferred channel and local hours of the week",
    response_model=EngagementProfile,
)
async def profile(
    tidings: Api,
    user_id: UserId,
    since: Annotated[datetime | None, Query(description="Only notifications since")] = None,
) -> EngagementProfile:
    return await tidings.engagement_profile(user_id, since=since)
