"""Analytics in SQL (definitions in `tidings.analytics`): every figure is one aggregate query
over the period's notifications, their deliveries and their events; nothing loops over rows in
Python. The indexes they lean on are notifications(created_at) and (template_id, created_at),
the deliveries' primary key (notification_id, channel), engagement_events(notification_id, type,
at) and engagement_events(at), all from migrations 0001 and 0011."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import (
    CTE,
    ColumnElement,
    Float,
    Select,
    and_,
    case,
    cast,
    exists,
    func,
    literal_column,
    or_,
    select,
    text,
)
from sqlalchemy.ext.asyncio import AsyncSession

from tidings.analytics import QUARTER_HOUR as _QUARTER_HOUR
from tidings.analytics import (
    Bucket,
    ChannelEngagement,
    ChannelPerformance,
    Counts,
    EngagementProfile,
    Metrics,
    MetricsFilter,
    Period,
    ProviderPerformance,
    RankBy,
    SeriesPoint,
    TemplateRank,
    best_hours,
    hours_of_week,
    preferred_channel,
    rate,
)
from tidings.models import Channel, DeliveryStatus, EngagementType
from tidings.store.portable import bucket, epoch, json_number, json_string
from tidings.store.segments import SegmentsMixin
from tidings.store.tables import (
    DeliveryRow,
    EngagementRow,
    NotificationRow,
    TemplateRow,
    UserRow,
)

_OK = [DeliveryStatus.SENT.value, DeliveryStatus.DELIVERED.value]
_FAILED = DeliveryStatus.FAILED.value
_OPENED = [EngagementType.OPENED.value, EngagementType.CLICKED.value]
_ENGAGED = [*_OPENED, EngagementType.CONVERTED.value]
_SECONDS = {Bucket.DAY: 86400, Bucket.HOUR: 3600}
_FACTS = [
    NotificationRow.any_sent,
    NotificationRow.any_delivered,
    NotificationRow.any_failed,
    NotificationRow.any_suppressed,
    NotificationRow.last_opened_at,
    NotificationRow.last_clicked_at,
    NotificationRow.last_converted_at,
]


def _flag(condition: ColumnElement[bool]) -> ColumnElement[int]:
    return func.max(case((condition, 1), else_=0))


def _total(condition: ColumnElement[bool]) -> ColumnElement[int]:
    return func.coalesce(func.sum(case((condition, 1), else_=0)), 0)


def _event_channel(channel: Channel | None) -> list[ColumnElement[bool]]:
    if channel is None:
        return []
    return [or_(EngagementRow.channel == channel.value, EngagementRow.channel.is_(None))]


class AnalyticsMixin(SegmentsMixin):
    @property
    def _dialect(self) -> str:
        return self.engine.dialect.name

    @asynccontextmanager
    async def _figures(self) -> AsyncIterator[AsyncSession]:
        """A read for analytics. On PostgreSQL without JIT: the joins of grouped subqueries are
        estimated far above their real size, which makes the planner JIT-compile a query that
        then runs in milliseconds (measured: 1.8 s of compiling for 0.1 s of work)."""
        async with self._read() as session:
            if self._dialect == "postgresql":
                await session.execute(text("SET LOCAL jit = off"))
            yield session

    async def _cohort(
        self, period: Period, f: MetricsFilter, extra: list[Any] | None = None
    ) -> CTE:
        """The period's notifications that pass the filter (id, template, creation time)."""
        n = NotificationRow
        where: list[ColumnElement[bool]] = [n.created_at >= period.start, n.created_at < period.end]
        if f.template_id is not None:
            where.append(n.template_id == f.template_id)
        if f.template_version is not None:
            where.append(n.template_version == f.template_version)
        if f.experiment_id is not None:
            where.append(n.experiment_id == f.experiment_id)
        if f.variant is not None:
            where.append(n.variant == f.variant)
        if f.user_id is not None:
            where.append(n.user_id == f.user_id)
        if f.category is not None:
            where.append(
                exists().where(
                    TemplateRow.id == n.template_id,
                    TemplateRow.version == n.template_version,
                    TemplateRow.category == f.category,
                )
            )
        if f.segment is not None:
            where.append(n.user_id.in_(await self.segment_users(f.segment)))
        if f.channel is not None:
            where.append(
                exists().where(
                    DeliveryRow.notification_id == n.id, DeliveryRow.channel == f.channel
                )
            )
        columns = [n.id, n.template_id, n.created_at, *_FACTS, *(extra or [])]
        return select(*columns).where(*where).cte("cohort")

    def _counts_select(self, cohort: CTE, channel: Channel | None, group: list[Any]) -> Select[Any]:
        """Counts per notification flags, grouped by `group` (columns of the cohort)."""
        if channel is None:
            return self._facts_select(cohort, group)
        # One channel: the cohort holds only notifications with a delivery on it, so each joins
        # exactly that delivery (its key), whose facts hold the channel's engagement.
        d = DeliveryRow
        ok = d.status.in_(_OK)
        return (
            select(
                *group,
                func.count().label("notifications"),
                _total(ok).label("sent"),
                _total(d.status == DeliveryStatus.DELIVERED.value).label("delivered"),
                _total(d.status == _FAILED).label("failed"),
                _total(d.status == DeliveryStatus.SUPPRESSED.value).label("suppressed"),
                _total(and_(ok, d.first_opened_at.is_not(None))).label("opened"),
                _total(and_(ok, d.first_clicked_at.is_not(None))).label("clicked"),
                _total(and_(ok, d.first_converted_at.is_not(None))).label("converted"),
            )
            .select_from(cohort)
            .join(d, and_(d.notification_id == cohort.c.id, d.channel == channel.value))
        )

    @staticmethod
    def _facts_select(cohort: CTE, group: list[Any]) -> Select[Any]:
        """`_counts_select` for every channel: the same counts from the notifications' facts
        (tidings.store.facts), one pass over the cohort with no join."""
        c = cohort.c
        ok = c.any_sent.is_(True)
        return select(
            *group,
            func.count().label("notifications"),
            _total(ok).label("sent"),
            _total(c.any_delivered.is_(True)).label("delivered"),
            _total(and_(c.any_failed.is_(True), ~ok)).label("failed"),
            _total(and_(c.any_suppressed.is_(True), ~ok, c.any_failed.is_(False))).label(
                "suppressed"
            ),
            _total(and_(ok, c.last_opened_at.is_not(None))).label("opened"),
            _total(and_(ok, c.last_clicked_at.is_not(None))).label("clicked"),
            _total(and_(ok, c.last_converted_at.is_not(None))).label("converted"),
        ).select_from(cohort)

    @staticmethod
    def _counts(row: Any) -> Counts:
        return Counts(
            notifications=row.notifications,
            sent=row.sent,
            delivered=row.delivered,
            failed=row.failed,
            suppressed=row.suppressed,
            opened=row.opened,
            clicked=row.clicked,
            converted=row.converted,
        )

    async def analytics_metrics(
        self, period: Period, f: MetricsFilter, bucket_by: Bucket = Bucket.DAY
    ) -> Metrics:
        """The period's counts and rates, conversion value per currency and a series by day
        or hour of creation (buckets with no notification are left out)."""
        size = _SECONDS[bucket_by]
        at = bucket(NotificationRow.created_at, size, self._dialect).label("bucket")
        cohort = await self._cohort(period, f, [at])
        series = self._counts_select(cohort, f.channel, [cohort.c.bucket]).group_by(cohort.c.bucket)
        e = EngagementRow
        currency = func.coalesce(json_string(e.meta, "currency", self._dialect), "")
        value = func.sum(json_number(e.meta, "value", self._dialect))
        values = (
            select(currency.label("currency"), value.label("value"))
            .where(
                # Only the notifications with a conversion (their facts say which).
                e.notification_id.in_(
                    select(cohort.c.id).where(cohort.c.last_converted_at.is_not(None))
                ),
                e.type == EngagementType.CONVERTED.value,
                *_event_channel(f.channel),
            )
            .group_by(currency)
        )
        async with self._figures() as session:
            points = (await session.execute(series.order_by(cohort.c.bucket))).all()
            money = (await session.execute(values)).all()
        # Each notification falls in exactly one bucket, so the period's counts are the sums of
        # the buckets' (at most a few hundred): one pass over the cohort instead of two.
        buckets = [self._counts(p) for p in points]
        counts = Counts(
            **{name: sum(getattr(b, name) for b in buckets) for name in Counts.model_fields}
        )
        return Metrics(
            period=period,
            filter=f,
            counts=counts,
            rates=counts.rates(),
            conversion_value={c: float(v) for c, v in money if v is not None},
            bucket=bucket_by,
            series=[
                SeriesPoint(at=datetime.fromtimestamp(p.bucket * size, UTC), counts=b)
                for p, b in zip(points, buckets, strict=True)
            ],
        )

    async def best_templates(
        self,
        period: Period,
        f: MetricsFilter,
        *,
        by: RankBy = RankBy.OPEN_RATE,
        minimum_sample: int = 100,
        limit: int = 10,
    ) -> list[TemplateRank]:
        """Templates ranked by `by`, best first, among those sent at least `minimum_sample`
        times in the period (ties: more sent first, then the id)."""
        cohort = await self._cohort(period, f)
        grouped = (
            self._counts_select(cohort, f.channel, [cohort.c.template_id])
            .group_by(cohort.c.template_id)
            .subquery("t")
        )
        t = grouped.c
        score = {
            RankBy.DELIVERY_RATE: cast(t.sent, Float) / func.nullif(t.sent + t.failed, 0),
            RankBy.OPEN_RATE: cast(t.opened, Float) / func.nullif(t.sent, 0),
            RankBy.CLICK_RATE: cast(t.clicked, Float) / func.nullif(t.sent, 0),
            RankBy.CONVERSION_RATE: cast(t.converted, Float) / func.nullif(t.sent, 0),
        }[by]
        stmt = (
            select(grouped)
            .where(t.sent >= minimum_sample)
            .order_by(score.desc(), t.sent.desc(), t.template_id)
            .limit(limit)
        )
        async with self._figures() as session:
            rows = (await session.execute(stmt)).all()
        ranks = []
        for row in rows:
            counts = self._counts(row)
            ranks.append(
                TemplateRank(template_id=row.template_id, counts=counts, rates=counts.rates())
            )
        return ranks

    async def channel_performance(
        self, period: Period, f: MetricsFilter
    ) -> list[ChannelPerformance]:
        """Per channel: deliveries, delivery rate, notifications opened through it and the
        median seconds from the delivery's time to the first open or click (of that channel or
        of none; an open recorded before the delivery's time is left out of the median)."""
        cohort = await self._cohort(period, f)
        d = DeliveryRow
        first_open = (
            select(
                d.channel.label("channel"),
                d.status.label("status"),
                d.at.label("at"),
                d.first_opened_at.label("opened_at"),  # its facts: through it or through none
            )
            .join(cohort, cohort.c.id == d.notification_id)
            .cte("first_open")
        )
        fo = first_open.c
        ok = fo.status.in_(_OK)
        per_channel = select(
            fo.channel,
            _total(fo.status.in_([*_OK, _FAILED])).label("attempted"),
            _total(ok).label("sent"),
            _total(fo.status == DeliveryStatus.DELIVERED.value).label("delivered"),
            _total(fo.status == _FAILED).label("failed"),
            _total(and_(ok, fo.opened_at.is_not(None))).label("opened"),
        ).group_by(fo.channel)
        seconds = epoch(fo.opened_at, self._dialect) - epoch(fo.at, self._dialect)
        waits = (
            select(
                fo.channel.label("channel"),
                seconds.label("seconds"),
                func.row_number().over(partition_by=fo.channel, order_by=seconds).label("rn"),
                func.count().over(partition_by=fo.channel).label("cnt"),
            )
            .where(ok, fo.opened_at.is_not(None), fo.at.is_not(None), seconds >= 0)
            .subquery("waits")
        )
        w = waits.c
        # The middle row, or the mean of the two middle rows: (cnt+1)/2 and (cnt+2)/2 in integer
        # division (//) pick them on both backends without a percentile function.
        medians = (
            select(w.channel, func.avg(cast(w.seconds, Float)).label("median"))
            .where(w.rn.in_([(w.cnt + 1) // 2, (w.cnt + 2) // 2]))
            .group_by(w.channel)
        )
        async with self._figures() as session:
            rows = (await session.execute(per_channel)).all()
            median = {c: m for c, m in (await session.execute(medians)).all()}
        result = []
        for r in sorted(rows, key=lambda r: r.channel):
            if f.channel is not None and r.channel != f.channel.value:
                continue
            result.append(
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
            )
        return result

    async def provider_performance(
        self, period: Period, f: MetricsFilter
    ) -> list[ProviderPerformance]:
        cohort = await self._cohort(period, f)
        d, c = DeliveryRow, cohort.c
        # A failover is a failed channel of a notification that another channel sent, or the
        # channel that sent one another failed: the notification's facts say which.
        stmt = (
            select(
                d.channel,
                _total(d.status.in_([*_OK, _FAILED])).label("deliveries"),
                _total(d.status == _FAILED).label("failed"),
                func.coalesce(func.sum(case((d.attempts > 1, d.attempts - 1), else_=0)), 0).label(
                    "retries"
                ),
                _total(and_(d.status == _FAILED, c.any_sent.is_(True))).label("failovers_from"),
                _total(and_(d.status.in_(_OK), c.any_failed.is_(True))).label("failovers_to"),
            )
            .join(cohort, c.id == d.notification_id)
            .group_by(d.channel)
            .order_by(d.channel)
        )
        if f.channel is not None:
            stmt = stmt.where(d.channel == f.channel.value)
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

    async def engagement_profile(
        self, user_id: str, *, since: datetime | None = None
    ) -> EngagementProfile:
        """The user's engagement (of notifications created since `since`, default all).
        LookupError when the user is unknown."""
        n, d, e = NotificationRow, DeliveryRow, EngagementRow
        mine = [n.user_id == user_id]
        if since is not None:
            mine.append(n.created_at >= since)
        sent = (
            select(d.channel, func.count().label("sent"))
            .join(n, n.id == d.notification_id)
            .where(*mine, d.status.in_(_OK))
            .group_by(d.channel)
        )

        def distinct_if(types: list[str]) -> ColumnElement[int]:
            return func.count(func.distinct(case((e.type.in_(types), e.notification_id))))

        engaged = (
            select(
                e.channel,
                distinct_if(_OPENED).label("opened"),
                distinct_if([EngagementType.CLICKED.value]).label("clicked"),
                distinct_if([EngagementType.CONVERTED.value]).label("converted"),
            )
            .join(n, n.id == e.notification_id)
            .where(*mine, e.type.in_(_ENGAGED), e.channel.is_not(None))
            .group_by(e.channel)
        )
        totals = select(
            select(func.count()).where(*mine).scalar_subquery().label("notifications"),
            select(func.count(func.distinct(e.notification_id)))
            .join(n, n.id == e.notification_id)
            .where(*mine, e.type.in_(_ENGAGED))
            .scalar_subquery()
            .label("engaged"),
            select(func.max(e.at))
            .join(n, n.id == e.notification_id)
            .where(*mine, e.type.in_(_ENGAGED))
            .scalar_subquery()
            .label("last"),
        )
        quarter = bucket(e.at, _QUARTER_HOUR, self._dialect).label("q")
        buckets = (
            select(quarter, func.count())
            .join(n, n.id == e.notification_id)
            .where(*mine, e.type.in_(_ENGAGED))
            .group_by(literal_column("q"))
        )
        async with self._figures() as session:
            user = await session.get(UserRow, user_id)
            if user is None:
                raise LookupError(f"user {user_id} not found")
            sent_by = {c: s for c, s in (await session.execute(sent)).all()}
            engaged_by = {r.channel: r for r in (await session.execute(engaged)).all()}
            total = (await session.execute(totals)).one()
            quarters = [(int(q), int(c)) for q, c in (await session.execute(buckets)).all()]
        channels = []
        for name in sorted(set(sent_by) | set(engaged_by)):
            s = sent_by.get(name, 0)
            r = engaged_by.get(name)
            opened, clicked = (r.opened, r.clicked) if r else (0, 0)
            channels.append(
                ChannelEngagement(
                    channel=Channel(name),
                    sent=s,
                    opened=opened,
                    clicked=clicked,
                    converted=r.converted if r else 0,
                    open_rate=rate(opened, s),
                    click_rate=rate(clicked, s),
                )
            )
        hours = hours_of_week(quarters, user.timezone)
        return EngagementProfile(
            user_id=user_id,
            timezone=user.timezone,
            notifications=total.notifications,
            engaged=total.engaged,
            channels=channels,
            preferred_channel=preferred_channel(channels),
            hours_of_week=hours,
            best_hours=best_hours(hours),
            last_engagement=total.last,
        )


def default_period(now: datetime, days: int = 30) -> Period:
    """The last `days` days up to the next hour (what the CLI and HTTP use when no period is
    given)."""
    end = now.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    return Period(start=end - timedelta(days=days), end=end)
