"""What every analytics query shares: the statuses and facts they count, a read transaction
set up for aggregates (`AnalyticsBase._figures`) and a filter's conditions on the notification
(`AnalyticsBase._filters`). The queries: `tidings.store.analytics` (metrics, series, best
templates), `analytics_delivery` (channels and providers), `analytics_profile` (one user)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy import ColumnElement, case, exists, func, text
from sqlalchemy.ext.asyncio import AsyncSession

from tidings.analytics import MetricsFilter
from tidings.models import DeliveryStatus, EngagementType
from tidings.store.segments import SegmentsMixin
from tidings.store.tables import DeliveryRow, NotificationRow, TemplateRow

_OK = [DeliveryStatus.SENT.value, DeliveryStatus.DELIVERED.value]
_FAILED = DeliveryStatus.FAILED.value
_OPENED = [EngagementType.OPENED.value, EngagementType.CLICKED.value]
_ENGAGED = [*_OPENED, EngagementType.CONVERTED.value]


def deliveries_with_notifications() -> Any:
    """The deliveries joined to their notifications: what a filter on the notification (its
    template, priority, experiment, user) reads beside each delivery."""
    d, n = DeliveryRow, NotificationRow
    return d.__table__.join(n.__table__, n.id == d.notification_id)


def _total(condition: ColumnElement[bool]) -> ColumnElement[int]:
    return func.coalesce(func.sum(case((condition, 1), else_=0)), 0)


class AnalyticsBase(SegmentsMixin):
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
