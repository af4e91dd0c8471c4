"""What send-time optimisation and channel recommendation read about one user's engagement.

Every bound is on a time the run wrote (an event's `at`, a delivery's `at`), never on a row's
`created_at`, which is the database host's clock. Histograms come out of SQL grouped by UTC
hour (at most 24 * 90 rows per user over the 90 days `tidings.send_time` looks at);
`tidings.send_time.local_histogram` turns them into the user's local hours of the week in
Python, where zoneinfo knows the DST rules. The population's histogram is grouped by
(timezone, UTC hour) the same way and cached for `POPULATION_TTL`: it changes slowly and costs
a scan of the recent events.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, case, exists, func, select

from tidings.models import Channel, DeliveryStatus, EngagementType
from tidings.store.base import StoreBase
from tidings.store.tables import DeliveryRow, EngagementRow, NotificationRow, UserRow

POPULATION_TTL = 3600.0  # seconds a population histogram is reused
ENGAGED = [EngagementType.OPENED.value, EngagementType.CLICKED.value]
_SENT = [DeliveryStatus.SENT.value, DeliveryStatus.DELIVERED.value]


def _as_utc_hour(value: Any) -> datetime:
    """A bucket as the database returns it (SQLite: text; PostgreSQL: a naive UTC timestamp)."""
    hour: datetime = datetime.strptime(value, "%Y-%m-%d %H") if isinstance(value, str) else value
    return hour.replace(tzinfo=UTC) if hour.tzinfo is None else hour.astimezone(UTC)


class PersonalMixin(StoreBase):
    _population: tuple[float, datetime, list[tuple[str, datetime, int]]] | None = None

    def _utc_hour(self) -> ColumnElement[Any]:
        if self.engine.dialect.name == "postgresql":
            return func.date_trunc("hour", func.timezone("UTC", EngagementRow.at))
        return func.strftime("%Y-%m-%d %H", EngagementRow.at)  # SQLite keeps UTC text

    async def engagement_hours(
        self, user_id: str, *, since: datetime
    ) -> list[tuple[datetime, int]]:
        """The user's opened and clicked events since `since`, counted per UTC hour."""
        hour = self._utc_hour().label("hour")
        stmt = (
            select(hour, func.count())
            .select_from(NotificationRow)
            .join(EngagementRow, EngagementRow.notification_id == NotificationRow.id)
            .where(
                NotificationRow.user_id == user_id,
                EngagementRow.type.in_(ENGAGED),
                EngagementRow.at >= since,
            )
            .group_by(hour)
        )
        async with self._read() as session:
            rows = (await session.execute(stmt)).all()
        return [(_as_utc_hour(h), int(n)) for h, n in rows]

    async def population_engagement_hours(
        self, *, since: datetime
    ) -> list[tuple[str, datetime, int]]:
        """Every user's opened and clicked events since `since`, per (timezone, UTC hour);
        reused for POPULATION_TTL seconds when asked again with a `since` at most that much
        later."""
        cached = self._population
        if cached is not None:
            made, cached_since, rows = cached
            fresh = time.monotonic() - made < POPULATION_TTL
            if fresh and abs((since - cached_since).total_seconds()) < POPULATION_TTL:
                return rows
        hour = self._utc_hour().label("hour")
        stmt = (
            select(UserRow.timezone, hour, func.count())
            .select_from(EngagementRow)
            .join(NotificationRow, NotificationRow.id == EngagementRow.notification_id)
            .join(UserRow, UserRow.id == NotificationRow.user_id)
            .where(EngagementRow.type.in_(ENGAGED), EngagementRow.at >= since)
            .group_by(UserRow.timezone, hour)
        )
        async with self._read() as session:
            result = (await session.execute(stmt)).all()
        rows = [(tz, _as_utc_hour(h), int(n)) for tz, h, n in result]
        self._population = (time.monotonic(), since, rows)
        return rows

    async def channel_engagement(
        self, user_id: str, *, since: datetime
    ) -> dict[Channel, tuple[int, int]]:
        """Per channel: the user's notifications sent on it since `since`, and how many of
        those were opened or clicked on that channel."""
        engaged = exists().where(
            and_(
                EngagementRow.notification_id == DeliveryRow.notification_id,
                EngagementRow.channel == DeliveryRow.channel,
                EngagementRow.type.in_(ENGAGED),
            )
        )
        stmt = (
            select(
                DeliveryRow.channel,
                func.count(),
                func.sum(case((engaged, 1), else_=0)),
            )
            .join(NotificationRow, NotificationRow.id == DeliveryRow.notification_id)
            .where(
                NotificationRow.user_id == user_id,
                DeliveryRow.status.in_(_SENT),
                DeliveryRow.at >= since,  # the run's clock, like the events' `at`
            )
            .group_by(DeliveryRow.channel)
        )
        async with self._read() as session:
            rows = (await session.execute(stmt)).all()
        return {Channel(c): (int(n), int(e or 0)) for c, n, e in rows}
