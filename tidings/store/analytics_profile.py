"""A user's engagement profile in SQL: per channel counts and rates, the hours of the week
they engage in their own timezone, their last engagement."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ColumnElement, case, func, literal_column, select

from tidings.analytics import QUARTER_HOUR as _QUARTER_HOUR
from tidings.analytics import (
    ChannelEngagement,
    EngagementProfile,
    best_hours,
    hours_of_week,
    preferred_channel,
    rate,
)
from tidings.models import Channel, EngagementType
from tidings.store.analytics_base import _ENGAGED, _OK, _OPENED, AnalyticsBase
from tidings.store.portable import bucket
from tidings.store.tables import DeliveryRow, EngagementRow, NotificationRow, UserRow


class ProfileMixin(AnalyticsBase):
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
