"""Per-notification, per-delivery and per-user facts, so analytics and engagement segments
read one indexed range instead of joining deliveries and events.

On each notification: `any_sent`, `any_delivered`, `any_failed`, `any_suppressed` (some
channel's delivery is in that status; sent counts sent or delivered), `last_opened_at` (an
open or a click), `last_clicked_at`, `last_converted_at` (the latest event of that kind, NULL
when none). On each delivery: `first_opened_at` (an open or a click), `first_clicked_at`,
`first_converted_at` (the earliest event of that kind through its channel or through none:
what per-channel figures count) and `created_at` (its notification's). Per user
(`user_engagement`): the latest open, click and conversion over all their notifications. Per
notification, channel and currency (`conversions`, migration 0017): the sum of the conversions'
values. Per user and UTC day of creation (`user_sent_days`, migration 0019): the notifications
whose status is `sent`, and how many of them were opened (what the engagement rate reads).

Database triggers keep them (migration 0015) inside the very statement that writes a delivery
or an event, so they can never drift from a recount and the application sends no statement
for them: an event moves the latest/earliest times forward (events are never updated or
deleted), a delivery written or its status changed recounts its notification's flags over its
few deliveries, a new delivery takes its creation time and the events already recorded, and a
notification's contribution to its user's day changes when its status enters or leaves `sent`,
its first open lands, or it is deleted.

The recounts below are what a bulk load that bypasses the triggers runs afterwards
(bench/analytics_data.py), and what the tests compare the triggers' work with.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Insert,
    Update,
    exists,
    func,
    insert,
    literal_column,
    or_,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession

from tidings.models import DeliveryStatus, EngagementType, NotificationStatus
from tidings.store.portable import json_number, json_string
from tidings.store.tables import (
    ConversionRow,
    DeliveryRow,
    EngagementRow,
    NotificationRow,
    UserEngagementRow,
    UserSentDayRow,
)

OK = [DeliveryStatus.SENT.value, DeliveryStatus.DELIVERED.value]
OPENED = [EngagementType.OPENED.value, EngagementType.CLICKED.value]


def _delivery(statuses: list[str]) -> ColumnElement[bool]:
    return exists().where(
        DeliveryRow.notification_id == NotificationRow.id, DeliveryRow.status.in_(statuses)
    )


def _last(types: list[str]) -> Any:
    return (
        select(func.max(EngagementRow.at))
        .where(EngagementRow.notification_id == NotificationRow.id, EngagementRow.type.in_(types))
        .scalar_subquery()
    )


def refresh_facts(*where: ColumnElement[bool]) -> Update:
    """The UPDATE that recounts the facts of the notifications matching `where` (all of them
    without a condition)."""
    return (
        update(NotificationRow)
        .where(*where)
        .values(
            any_sent=_delivery(OK),
            any_delivered=_delivery([DeliveryStatus.DELIVERED.value]),
            any_failed=_delivery([DeliveryStatus.FAILED.value]),
            any_suppressed=_delivery([DeliveryStatus.SUPPRESSED.value]),
            last_opened_at=_last(OPENED),
            last_clicked_at=_last([EngagementType.CLICKED.value]),
            last_converted_at=_last([EngagementType.CONVERTED.value]),
        )
        .execution_options(synchronize_session=False)
    )


def _first(types: list[str]) -> Any:
    return (
        select(func.min(EngagementRow.at))
        .where(
            EngagementRow.notification_id == DeliveryRow.notification_id,
            EngagementRow.type.in_(types),
            or_(EngagementRow.channel == DeliveryRow.channel, EngagementRow.channel.is_(None)),
        )
        .scalar_subquery()
    )


def refresh_delivery_facts(*where: ColumnElement[bool]) -> Update:
    """The UPDATE that recounts the facts of the deliveries matching `where`."""
    created = (
        select(NotificationRow.created_at)
        .where(NotificationRow.id == DeliveryRow.notification_id)
        .scalar_subquery()
    )
    return (
        update(DeliveryRow)
        .where(*where)
        .values(
            first_opened_at=_first(OPENED),
            first_clicked_at=_first([EngagementType.CLICKED.value]),
            first_converted_at=_first([EngagementType.CONVERTED.value]),
            created_at=created,
        )
        .execution_options(synchronize_session=False)
    )


def recount_user_engagement() -> Insert:
    """The INSERT that fills `user_engagement` from the notifications' facts (into an empty
    table: delete its rows first)."""
    n = NotificationRow
    latest = (
        select(
            n.user_id,
            func.max(n.last_opened_at),
            func.max(n.last_clicked_at),
            func.max(n.last_converted_at),
        )
        .group_by(n.user_id)
        .having(
            or_(func.max(n.last_opened_at).is_not(None), func.max(n.last_converted_at).is_not(None))
        )
    )
    u = UserEngagementRow
    return insert(u).from_select(
        [u.user_id, u.last_opened_at, u.last_clicked_at, u.last_converted_at], latest
    )


def recount_conversions(dialect: str) -> Insert:
    """The INSERT that fills `conversions` from the `converted` events (into an empty table:
    delete its rows first): per notification, channel (`""` for none) and currency (`""` for
    none), the sum of the JSON-number values."""
    e = EngagementRow
    channel = func.coalesce(e.channel, "")
    currency = func.coalesce(json_string(e.meta, "currency", dialect), "")
    sums = (
        select(
            e.notification_id,
            channel,
            currency,
            func.sum(json_number(e.meta, "value", dialect)),
        )
        .where(e.type == EngagementType.CONVERTED.value)
        .group_by(e.notification_id, channel, currency)
    )
    c = ConversionRow
    return insert(c).from_select([c.notification_id, c.channel, c.currency, c.value], sums)


EPOCH = date(1970, 1, 1)

# The UTC day of a notification's creation, as `user_sent_days.day` holds it (days since
# 1970-01-01): the same text as migration 0019's triggers.
_UTC_DAY = {
    "sqlite": "CAST(strftime('%s', substr(notifications.created_at, 1, 10)) AS INTEGER) / 86400",
    "postgresql": "(CAST((notifications.created_at AT TIME ZONE 'UTC') AS DATE)"
    " - DATE '1970-01-01')",
}


def recount_sent_days(dialect: str) -> Insert:
    """The INSERT that fills `user_sent_days` from the notifications' statuses and facts (into
    an empty table: delete its rows first; after the facts' own recount, since it reads
    `last_opened_at`)."""
    n = NotificationRow
    day: ColumnElement[int] = literal_column(_UTC_DAY[dialect])
    per_day = (
        select(n.user_id, day, func.count(), func.count(n.last_opened_at))
        .where(n.status == NotificationStatus.SENT.value)
        .group_by(n.user_id, day)
    )
    r = UserSentDayRow
    return insert(r).from_select([r.user_id, r.day, r.sent, r.opened], per_day)


async def refresh(session: AsyncSession, notification_id: str) -> None:
    """Nothing since migration 0015: the triggers keep the facts. Kept so that code written
    against the earlier explicit refresh still runs."""
    del session, notification_id
