"""/v1/stats: counts by status, channel and engagement."""

from __future__ import annotations

from fastapi import APIRouter

from starter.http.auth import Requires
from starter.http.deps import Api
from starter.http.schemas import ChannelStatsView, StatsView
from tidings.api_keys import Scope
from tidings.models import ChannelStats

router = APIRouter()


def _channel_view(stats: ChannelStats) -> ChannelStatsView:
    return ChannelStatsView(**stats.model_dump(), success_rate=stats.success_rate)


@router.get(
    "/stats",
    dependencies=[Requires(Scope.READ)],
    summary="Counts by status, channel and engagement",
    response_model=StatsView,
)
async def stats(tidings: Api) -> StatsView:
    s = await tidings.stats()
    return StatsView(
        notifications=s.notifications,
        channels={c: _channel_view(v) for c, v in s.channels.items()},
        engagement=s.engagement,
        success_rate=s.success_rate,
    )
