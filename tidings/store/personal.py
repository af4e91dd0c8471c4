"""What send-time optimisation and channel recommendation read about one user's engagement.

Every bound is on a time the run wrote (an event's `at`, a delivery's `at`), never on a row's
`created_at`, which is the database host's clock. Histograms come out of SQL grouped by quarter
hour of UTC (at most 96 * 90 rows per user over the 90 days `tidings.send_time` looks at, and
never more than the user's events);
`tidings.send_time.local_histogram` turns them into the user's local hours of the week in
Python, where zoneinfo knows the DST rules. The population's histogram is grouped by
(timezone, quarter hour) the same way and cached for `POPULATION_TTL`: it changes slowly and costs
a scan of the recent events.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Integer,
    Select,
    and_,
    bindparam,
    case,
    cast,
    exists,
    func,
    select,
)

from tidings import send_time
from tidings.models import Channel, DeliveryStatus, EngagementType
from tidings.store.base import StoreBase
from tidings.store.tables import DeliveryRow, EngagementRow, NotificationRow, UserRow

POPULATION_TTL = 3600.0  # seconds a population histogram is reused
# The population's shape comes from at most this many of the newest events (a range of the
# primary key, so the cost stays bounded however large the table grows): plenty for 168 hours.
POPULATION_SAMPLE = 50_000
ENGAGED = [EngagementType.OPENED.value, EngagementType.CLICKED.value]
_SENT = [DeliveryStatus.SENT.value, DeliveryStatus.DELIVERED.value]


def _as_utc_bucket(value: Any) -> datetime:
    """A bucket as the database returns it (SQLite: text; PostgreSQL: a naive UTC timestamp)."""
    at: datetime = datetime.strptime(value, "%Y-%m-%d %H:%M") if isinstance(value, str) else value
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


class PersonalMixin(StoreBase):
    _population: tuple[float, datetime, list[float]] | None = None

    def _utc_bucket(self) -> ColumnElement[Any]:
        """The start of the event's quarter hour of UTC (tidings.send_time.BUCKET_MINUTES)."""
        if self.engine.dialect.name == "postgresql":
            utc = func.timezone("UTC", EngagementRow.at)
            quarter = cast(func.floor(func.date_part("minute", utc) / 15) * 15, Integer)
            return func.date_trunc("hour", utc) + func.make_interval(0, 0, 0, 0, 0, quarter)
        # SQLite keeps UTC text: "YYYY-MM-DD HH:" and the minute rounded down to a quarter.
        minute = cast(func.strftime("%M", EngagementRow.at), Integer) // 15 * 15
        return func.strftime("%Y-%m-%d %H:", EngagementRow.at).op("||")(func.printf("%02d", minute))

    async def engagement_hours(
        self, user_id: str, *, since: datetime
    ) -> list[tuple[datetime, int]]:
        """The user's opened and clicked events since `since`, counted per quarter hour of UTC
        (the bucket's start)."""
        hour = self._utc_bucket().label("bucket")
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
        return [(_as_utc_bucket(h), int(n)) for h, n in rows]

    async def population_histogram(self, *, since: datetime) -> list[float]:
        """Everyone's engagement per local hour of the week (`tidings.send_time`), reused for
        POPULATION_TTL seconds when asked again with a `since` at most that much later: it
        changes slowly, and both the query and the conversion to local hours cost tens of ms."""
        cached = self._population
        if cached is not None:
            made, cached_since, histogram = cached
            fresh = time.monotonic() - made < POPULATION_TTL
            if fresh and abs((since - cached_since).total_seconds()) < POPULATION_TTL:
                return histogram
        rows = await self.population_engagement_hours(since=since)
        histogram = send_time.population_histogram(rows)
        self._population = (time.monotonic(), since, histogram)
        return histogram

    async def population_engagement_hours(
        self, *, since: datetime
    ) -> list[tuple[str, datetime, int]]:
        """Every user's opened and clicked events since `since` among the newest
        POPULATION_SAMPLE events, per (timezone, quarter hour of UTC)."""
        hour = self._utc_bucket().label("bucket")
        newest = select(func.coalesce(func.max(EngagementRow.id), 0)).scalar_subquery()
        stmt = (
            select(UserRow.timezone, hour, func.count())
            .select_from(EngagementRow)
            .join(NotificationRow, NotificationRow.id == EngagementRow.notification_id)
            .join(UserRow, UserRow.id == NotificationRow.user_id)
            .where(
                EngagementRow.id > newest - POPULATION_SAMPLE,
                EngagementRow.type.in_(ENGAGED),
                EngagementRow.at >= since,
            )
            .group_by(UserRow.timezone, hour)
        )
        async with self._read() as session:
            result = (await session.execute(stmt)).all()
        return [(tz, _as_utc_bucket(h), int(n)) for tz, h, n in result]

    async def channel_engagement(
        self, user_id: str, *, since: datetime
    ) -> dict[Channel, tuple[int, int]]:
        """Per channel: the user's notifications sent on it since `since`, and how many of
        those were opened or clicked on that channel."""
        async with self._read_conn() as conn:
            params = {"user_id": user_id, "since": since}
            return channel_counts(await conn.execute(CHANNEL_ENGAGEMENT, params))


def _channel_engagement() -> Select[str, int, Any]:
    engaged = exists().where(
        and_(
            EngagementRow.notification_id == DeliveryRow.notification_id,
            EngagementRow.channel == DeliveryRow.channel,
            EngagementRow.type.in_(ENGAGED),
        )
    )
    return (
        select(DeliveryRow.channel, func.count(), func.sum(case((engaged, 1), else_=0)))
        .join(NotificationRow, NotificationRow.id == DeliveryRow.notification_id)
        .where(
            NotificationRow.user_id == bindparam("user_id"),
            DeliveryRow.status.in_(_SENT),
            DeliveryRow.at >= bindparam("since"),  # the run's clock, like the events' `at`
        )
        .group_by(DeliveryRow.channel)
    )


# Built once (every plan that may recommend a channel runs it; `SendingMixin` reads it in the
# plan's transaction): `user_id` and `since` are bound at execution.
CHANNEL_ENGAGEMENT = _channel_engagement()


def channel_counts(rows: Iterable[Any]) -> dict[Channel, tuple[int, int]]:
    return {Channel(c): (int(n), int(e or 0)) for c, n, e in rows}
