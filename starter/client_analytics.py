"""`Tidings` methods for analytics and segments (a mixin of `starter.client.Tidings`).

Input is checked here, before any query runs: a bad period, filter or rule is an InvalidRequest
naming the field (for rules, the path inside them, e.g. `rules.all[1].op`); an unknown segment or
user is NotFound.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from temporalio.client import Client

from starter.client_parse import parse_model as _parse
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
from tidings.errors import InvalidRequest, NotFound
from tidings.segments import Segment, SegmentDefinition, SegmentError, SegmentPage, parse_rule
from tidings.settings import Settings
from tidings.store import Store

MAX_RANKED = 100
MAX_PAGE = 1000


class AnalyticsClient:
    settings: Settings
    store: Store
    temporal: Client

    async def _checked(
        self, period: Period | dict[str, Any], where: MetricsFilter | dict[str, Any] | None
    ) -> tuple[Period, MetricsFilter]:
        p = _parse(Period, period, "period.")
        f = _parse(MetricsFilter, where, "filter.")
        if f.segment is not None:
            await self.get_segment(f.segment)
        return p, f

    async def analytics_metrics(
        self,
        period: Period | dict[str, Any],
        where: MetricsFilter | dict[str, Any] | None = None,
        *,
        bucket: Bucket | str = Bucket.DAY,
    ) -> Metrics:
        """Counts, rates (as defined in `tidings.analytics`), conversion value and a series."""
        p, f = await self._checked(period, where)
        try:
            by = Bucket(bucket)
        except ValueError as e:
            raise InvalidRequest("bucket", f"give one of {[b.value for b in Bucket]}") from e
        return await self.store.analytics_metrics(p, f, by)

    async def best_templates(
        self,
        period: Period | dict[str, Any],
        where: MetricsFilter | dict[str, Any] | None = None,
        *,
        by: RankBy | str = RankBy.OPEN_RATE,
        minimum_sample: int = 100,
        limit: int = 10,
    ) -> list[TemplateRank]:
        p, f = await self._checked(period, where)
        try:
            rank = RankBy(by)
        except ValueError as e:
            raise InvalidRequest("by", f"give one of {[r.value for r in RankBy]}") from e
        if minimum_sample < 1:
            raise InvalidRequest("minimum_sample", "must be at least 1")
        if not 1 <= limit <= MAX_RANKED:
            raise InvalidRequest("limit", f"must be between 1 and {MAX_RANKED}")
        return await self.store.best_templates(
            p, f, by=rank, minimum_sample=minimum_sample, limit=limit
        )

    async def channel_performance(
        self, period: Period | dict[str, Any], where: MetricsFilter | dict[str, Any] | None = None
    ) -> list[ChannelPerformance]:
        p, f = await self._checked(period, where)
        return await self.store.channel_performance(p, f)

    async def provider_performance(
        self, period: Period | dict[str, Any], where: MetricsFilter | dict[str, Any] | None = None
    ) -> list[ProviderPerformance]:
        p, f = await self._checked(period, where)
        return await self.store.provider_performance(p, f)

    async def engagement_profile(
        self, user_id: str, *, since: datetime | None = None
    ) -> EngagementProfile:
        if since is not None and since.tzinfo is None:
            raise InvalidRequest("since", "give the time with an offset (e.g. Z)")
        try:
            return await self.store.engagement_profile(user_id, since=since)
        except LookupError as e:
            raise NotFound("user", user_id) from e

    # --- segments ----------------------------------------------------------------------------

    async def create_segment(
        self, definition: SegmentDefinition | dict[str, Any]
    ) -> tuple[Segment, bool]:
        """Save a segment: (segment, True), or (the stored one, False) when the name is taken
        (its rules are not replaced: delete it first)."""
        if isinstance(definition, dict):
            try:
                parse_rule(definition.get("rules"))
            except SegmentError as e:
                raise InvalidRequest(e.path, e.reason) from e
        parsed = _parse(SegmentDefinition, definition, "")
        return await self.store.create_segment(parsed)

    async def get_segment(self, name: str) -> Segment:
        segment = await self.store.get_segment(name)
        if segment is None:
            raise NotFound("segment", name)
        return segment

    async def list_segments(self) -> list[Segment]:
        return await self.store.list_segments()

    async def delete_segment(self, name: str) -> None:
        if not await self.store.delete_segment(name):
            raise NotFound("segment", name)

    async def segment_count(self, name: str) -> int:
        await self.get_segment(name)
        return await self.store.segment_count(name)

    async def segment_members(
        self, name: str, *, after: str | None = None, limit: int = 100
    ) -> SegmentPage:
        """One page of user ids in id order; pass the page's `next_after` for the next."""
        if not 1 <= limit <= MAX_PAGE:
            raise InvalidRequest("limit", f"must be between 1 and {MAX_PAGE}")
        await self.get_segment(name)
        ids = await self.store.segment_page(name, after, limit + 1)  # one more: is there a next?
        more = len(ids) > limit
        ids = ids[:limit]
        return SegmentPage(name=name, user_ids=ids, next_after=ids[-1] if more else None)
