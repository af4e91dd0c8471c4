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
    BigInteger,
    ColumnElement,
    Float,
    Integer,
    Select,
    and_,
    case,
    cast,
    exists,
    func,
    literal_column,
    null,
    or_,
    select,
    text,
    union_all,
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
from tidings.store.portable import bucket, elapsed, seconds, unselective
from tidings.store.segments import SegmentsMixin
from tidings.store.tables import (
    ConversionRow,
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
                # One snapshot for a call's several statements (a median's positions come from
                # the count before it), as SQLite's read transaction gives already.
                await session.execute(text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ"))
                # And room to sort a day's rows in memory (the default 4 MB spilled a day's
                # deliveries to disk).
                await session.execute(text("SET LOCAL jit = off"))
                await session.execute(text("SET LOCAL work_mem = '64MB'"))
            yield session

    async def _filters(
        self, f: MetricsFilter, *, segment: bool = True
    ) -> list[ColumnElement[bool]]:
        """The filter's conditions on the notification, but for the channel (and the segment
        without `segment`)."""
        n = NotificationRow
        where: list[ColumnElement[bool]] = []
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
        if f.segment is not None and segment:
            where.append(n.user_id.in_(await self.segment_users(f.segment)))
        return where

    async def _cohort(
        self,
        period: Period,
        f: MetricsFilter,
        bucket_size: int | None = None,
        *,
        template: bool = False,
    ) -> CTE:
        """The period's notifications that pass the filter: their id, template, creation time
        (and its bucket with `bucket_size`) and facts; with a channel (and the template only
        when `template` or a filter asks for it), one row per notification
        with a delivery on it: that delivery's status and facts. The range is read from the
        covering index ix_notifications_cohort (or ix_deliveries_cohort) alone."""
        n, d = NotificationRow, DeliveryRow
        where = await self._filters(f, segment=False)
        if f.channel is None:
            created: Any = n.created_at
            columns: list[Any] = [n.id, n.template_id, *_FACTS]
            source: Any = n
        else:
            # The deliveries carry their notification's creation time (kept by a trigger),
            # so the range is one scan of the channel's deliveries; the notification is joined
            # only for the filters that need it.
            created = d.created_at
            columns = [
                d.notification_id.label("id"),
                d.status,
                d.first_opened_at,
                d.first_clicked_at,
                d.first_converted_at,
            ]
            if where or template:
                columns.append(n.template_id)
                source = d.__table__.join(n.__table__, n.id == d.notification_id)
            else:
                source = d
            where.append(unselective(d.channel == f.channel.value, self._dialect))
        where += [created >= period.start, created < period.end]
        columns.append(created.label("created_at"))
        if bucket_size is not None:
            columns.append(bucket(created, bucket_size, self._dialect).label("bucket"))
        if f.segment is None:
            return select(*columns).select_from(source).where(*where).cte("cohort")
        # The period's rows first, then the segment's members among them: the planner cannot
        # estimate a rule over JSON attributes (PostgreSQL guessed one member and probed
        # notifications(user_id) once per member, 1 s at full scale); materialised, the
        # range is one index scan and the members one hashed set.
        if f.channel is not None and source is d:
            source = d.__table__.join(n.__table__, n.id == d.notification_id)
        columns.append(n.user_id)
        period_rows = (
            select(*columns)
            .select_from(source)
            .where(*where)
            .cte("period_rows")
            .prefix_with("MATERIALIZED")
        )
        members = await self.segment_users(f.segment)
        # Materialised too: the metrics read it twice in one statement, and each reading
        # would otherwise evaluate the rule over every user again.
        return (
            select(*[c for c in period_rows.c if c.key != "user_id"])
            .where(period_rows.c.user_id.in_(members))
            .cte("cohort")
            .prefix_with("MATERIALIZED")
        )

    def _counts_select(self, cohort: CTE, channel: Channel | None, group: list[Any]) -> Select[Any]:
        """Counts per notification flags, grouped by `group` (columns of the cohort)."""
        if channel is None:
            return self._facts_select(cohort, group)
        # One channel: each cohort row is the notification's one delivery on it (its key),
        # whose facts hold the channel's engagement.
        c = cohort.c
        ok = c.status.in_(_OK)
        return select(
            *group,
            func.count().label("notifications"),
            _total(ok).label("sent"),
            _total(c.status == DeliveryStatus.DELIVERED.value).label("delivered"),
            _total(c.status == _FAILED).label("failed"),
            _total(c.status == DeliveryStatus.SUPPRESSED.value).label("suppressed"),
            _total(and_(ok, c.first_opened_at.is_not(None))).label("opened"),
            _total(and_(ok, c.first_clicked_at.is_not(None))).label("clicked"),
            _total(and_(ok, c.first_converted_at.is_not(None))).label("converted"),
        ).select_from(cohort)

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
        cohort = await self._cohort(period, f, size)
        series = self._counts_select(cohort, f.channel, [cohort.c.bucket]).group_by(cohort.c.bucket)
        # The sums kept per notification, channel and currency (migration 0017) of the
        # converted notifications only (their facts say which): no event is read.
        cv = ConversionRow
        converted = cohort.c.last_converted_at if f.channel is None else cohort.c.first_converted_at
        values = (
            select(cv.currency, func.sum(cv.value).label("value"))
            .where(cv.notification_id.in_(select(cohort.c.id).where(converted.is_not(None))))
            .group_by(cv.currency)
        )
        if f.channel is not None:
            values = values.where(cv.channel.in_([f.channel.value, ""]))
        async with self._figures() as session:
            if f.segment is None:
                points = (await session.execute(series.order_by(cohort.c.bucket))).all()
                money = (await session.execute(values)).all()
            else:
                points, money = await self._series_and_values(session, series, values)
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

    @staticmethod
    async def _series_and_values(
        session: AsyncSession, series: Any, values: Any
    ) -> tuple[list[Any], list[Any]]:
        """The series and the conversion values as one statement (UNION ALL), so that the
        cohort, a CTE both read, is materialised once: with a segment, the rule is evaluated
        over every user once rather than once per statement (SQLite and PostgreSQL materialise
        a CTE read twice). A series row has no currency; a value row always has one."""
        counts = len(series.selected_columns) - 1
        v = values.subquery("v")
        both: Any = union_all(
            series.add_columns(null().label("currency"), cast(null(), Float).label("value")),
            select(
                cast(null(), BigInteger).label("bucket"),
                *[cast(null(), Integer).label(f"n{i}") for i in range(counts)],
                v.c.currency,
                v.c.value,
            ),
        )
        rows = (await session.execute(both)).all()
        points = sorted((r for r in rows if r.currency is None), key=lambda r: r.bucket)
        money = [(r.currency, r.value) for r in rows if r.currency is not None]
        return points, money

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
        cohort = await self._cohort(period, f, template=True)
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

    async def _deliveries(self, period: Period, f: MetricsFilter) -> CTE:
        """The deliveries of the period's notifications that pass the filter but for the
        channel (every channel of them: failovers look at the siblings), with whether some
        delivery of the same notification got through (`notification_ok`) or failed
        (`notification_failed`). Read from ix_deliveries_cohort alone unless a filter needs
        the notification."""
        d = DeliveryRow
        where = await self._filters(f)
        source: Any = d
        if where:
            n = NotificationRow
            source = d.__table__.join(n.__table__, n.id == d.notification_id)
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
        source: Any = d
        if where:
            n = NotificationRow
            source = d.__table__.join(n.__table__, n.id == d.notification_id)
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
