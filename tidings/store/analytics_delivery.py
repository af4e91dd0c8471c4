"""Channel and provider performance in SQL: deliveries, delivery and open rates, the median
time to open, failures, retries and failovers, per channel."""

from __future__ import annotations

from typing import Any

from sqlalchemy import CTE, and_, case, func, or_, select

from tidings.analytics import ChannelPerformance, MetricsFilter, Period, ProviderPerformance, rate
from tidings.models import Channel, DeliveryStatus
from tidings.store.analytics_base import (
    _FAILED,
    _OK,
    AnalyticsBase,
    _total,
    deliveries_with_notifications,
)
from tidings.store.portable import elapsed, seconds, unselective
from tidings.store.tables import DeliveryRow


class DeliveryAnalyticsMixin(AnalyticsBase):
    async def _deliveries(self, period: Period, f: MetricsFilter) -> CTE:
        """The deliveries of the period's notifications that pass the filter but for the
        channel (every channel of them: failovers look at the siblings), with whether some
        delivery of the same notification got through (`notification_ok`) or failed
        (`notification_failed`). Read from ix_deliveries_cohort alone unless a filter needs
        the notification."""
        d = DeliveryRow
        where = await self._filters(f)
        source: Any = deliveries_with_notifications() if where else d
        # A notification's deliveries all carry its creation time, so they are all in the
        # range together and the window sees every sibling; partitioned by the index's order
        # (created_at, notification_id), the window needs no sort.
        siblings = [d.created_at, d.notification_id]
        return (
            select(
                d.channel,
                d.status,
                d.attempts,
                d.at,
                d.first_opened_at,
                func.max(case((d.status.in_(_OK), 1), else_=0))
                .over(partition_by=siblings)
                .label("notification_ok"),
                func.max(case((d.status == _FAILED, 1), else_=0))
                .over(partition_by=siblings)
                .label("notification_failed"),
            )
            .select_from(source)
            .where(d.created_at >= period.start, d.created_at < period.end, *where)
            .cte("deliveries_in_period")
        )

    async def channel_performance(
        self, period: Period, f: MetricsFilter
    ) -> list[ChannelPerformance]:
        """Per channel: deliveries, delivery rate, notifications opened through it and the
        median seconds from the delivery's time to the first open or click (of that channel or
        of none; an open recorded before the delivery's time is left out of the median)."""
        d = DeliveryRow
        where = await self._filters(f)
        source: Any = deliveries_with_notifications() if where else d
        if f.channel is not None:
            where.append(unselective(d.channel == f.channel.value, self._dialect))
        first_open = (
            select(
                d.channel.label("channel"),
                d.status.label("status"),
                d.at.label("at"),
                d.first_opened_at.label("opened_at"),  # its facts: through it or through none
            )
            .select_from(source)
            .where(d.created_at >= period.start, d.created_at < period.end, *where)
            .cte("first_open")
        )
        fo = first_open.c
        ok = fo.status.in_(_OK)
        # An open before the delivery's time is left out of the median; timestamps compare
        # as text on SQLite (fixed-width UTC), as timestamps on PostgreSQL.
        timed = and_(ok, fo.opened_at.is_not(None), fo.at.is_not(None), fo.opened_at >= fo.at)
        per_channel = select(
            fo.channel,
            _total(fo.status.in_([*_OK, _FAILED])).label("attempted"),
            _total(ok).label("sent"),
            _total(fo.status == DeliveryStatus.DELIVERED.value).label("delivered"),
            _total(fo.status == _FAILED).label("failed"),
            _total(and_(ok, fo.opened_at.is_not(None))).label("opened"),
            _total(timed).label("timed"),
        ).group_by(fo.channel)
        # Each wait computed once (an inner query), then ranked; the count per channel comes
        # from the query before (a window count() costs a second pass over the partition).
        waits = (
            select(
                fo.channel.label("channel"),
                elapsed(fo.opened_at, fo.at, self._dialect).label("wait"),
            )
            .where(timed)
            .subquery("waits")
        )
        w = waits.c
        ranked = select(
            w.channel,
            w.wait,
            func.row_number().over(partition_by=w.channel, order_by=w.wait).label("rn"),
        ).subquery("ranked")
        r = ranked.c
        async with self._figures() as session:
            rows = (await session.execute(per_channel)).all()
            # The middle row, or the mean of the two middle rows, of each channel's waits.
            middle = [
                and_(
                    r.channel == row.channel, r.rn.in_({(row.timed + 1) // 2, (row.timed + 2) // 2})
                )
                for row in rows
                if row.timed
            ]
            median: dict[str, float] = {}
            if middle:
                medians = (
                    select(r.channel, seconds(func.avg(r.wait), self._dialect))
                    .where(or_(*middle))
                    .group_by(r.channel)
                )
                median = {c: m for c, m in (await session.execute(medians)).all()}
        return [
            ChannelPerformance(
                channel=Channel(r.channel),
                attempted=r.attempted,
                sent=r.sent,
                delivered=r.delivered,
                failed=r.failed,
                delivery_rate=rate(r.sent, r.attempted),
                opened=r.opened,
                open_rate=rate(r.opened, r.sent),
                median_seconds_to_open=median.get(r.channel),
            )
            for r in sorted(rows, key=lambda r: r.channel)
        ]

    async def provider_performance(
        self, period: Period, f: MetricsFilter
    ) -> list[ProviderPerformance]:
        c = (await self._deliveries(period, f)).c
        # A failover is a failed channel of a notification that another channel sent, or the
        # channel that sent one another failed: its sibling deliveries say which.
        stmt = (
            select(
                c.channel,
                _total(c.status.in_([*_OK, _FAILED])).label("deliveries"),
                _total(c.status == _FAILED).label("failed"),
                func.coalesce(func.sum(case((c.attempts > 1, c.attempts - 1), else_=0)), 0).label(
                    "retries"
                ),
                _total(and_(c.status == _FAILED, c.notification_ok == 1)).label("failovers_from"),
                _total(and_(c.status.in_(_OK), c.notification_failed == 1)).label("failovers_to"),
            )
            .group_by(c.channel)
            .order_by(c.channel)
        )
        if f.channel is not None:
            stmt = stmt.where(c.channel == f.channel.value)
        async with self._figures() as session:
            rows = (await session.execute(stmt)).all()
        return [
            ProviderPerformance(
                channel=Channel(r.channel),
                deliveries=r.deliveries,
                failed=r.failed,
                failure_rate=rate(r.failed, r.deliveries),
                retries=r.retries,
                failovers_from=r.failovers_from,
                failovers_to=r.failovers_to,
            )
            for r in rows
        ]
