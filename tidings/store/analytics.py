"""Analytics in SQL (definitions in `tidings.analytics`): every figure is one aggregate query
over the period's notifications, their deliveries and their events; nothing loops over rows in
Python. The indexes they lean on are notifications(created_at) and (template_id, created_at),
the deliveries' primary key (notification_id, channel), engagement_events(notification_id, type,
at) and engagement_events(at), all from migrations 0001 and 0011."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import (
    CTE,
    BigInteger,
    Float,
    Integer,
    Select,
    and_,
    cast,
    func,
    null,
    select,
    union_all,
)
from sqlalchemy.ext.asyncio import AsyncSession

from tidings.analytics import (
    Bucket,
    Counts,
    Metrics,
    MetricsFilter,
    Period,
    RankBy,
    SeriesPoint,
    TemplateRank,
)
from tidings.models import Channel, DeliveryStatus
from tidings.store.analytics_base import _FAILED, _OK, _total, deliveries_with_notifications
from tidings.store.analytics_delivery import DeliveryAnalyticsMixin
from tidings.store.analytics_profile import ProfileMixin
from tidings.store.portable import bucket, unselective
from tidings.store.tables import ConversionRow, DeliveryRow, NotificationRow

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


class AnalyticsMixin(DeliveryAnalyticsMixin, ProfileMixin):
    """Metrics for a period with their series, and the best templates; channels and providers
    (`DeliveryAnalyticsMixin`) and a user's profile (`ProfileMixin`) come from their own
    modules."""

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
                source = deliveries_with_notifications()
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
            source = deliveries_with_notifications()
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


def default_period(now: datetime, days: int = 30) -> Period:
    """The last `days` days up to the next hour (what the CLI and HTTP use when no period is
    given)."""
    end = now.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    return Period(start=end - timedelta(days=days), end=end)
