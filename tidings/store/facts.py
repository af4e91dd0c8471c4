"""Per-notification facts kept on the notification's row, so analytics and engagement segments
read one indexed range of notifications instead of joining its deliveries and events.

`any_sent`, `any_delivered`, `any_failed`, `any_suppressed`: some channel's delivery is in that
status (sent counts sent or delivered). `last_opened_at` (an open or a click),
`last_clicked_at`, `last_converted_at`: the latest event of that kind, NULL when none. On each
delivery, `first_opened_at` (an open or a click), `first_clicked_at`, `first_converted_at`: the
earliest event of that kind through its channel or through none (what per-channel figures
count). Every write of a delivery or an event recomputes both from the raw rows in the same
transaction (`refresh`), so they can never drift from a recount; migration 0013 backfilled them.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, Update, exists, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from tidings.models import DeliveryStatus, EngagementType
from tidings.store.tables import DeliveryRow, EngagementRow, NotificationRow

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
    """The UPDATE that recomputes the facts of the notifications matching `where` (all of
    them without a condition: what the bench's bulk load runs)."""
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
    """The UPDATE that recomputes the facts of the deliveries matching `where`."""
    return (
        update(DeliveryRow)
        .where(*where)
        .values(
            first_opened_at=_first(OPENED),
            first_clicked_at=_first([EngagementType.CLICKED.value]),
            first_converted_at=_first([EngagementType.CONVERTED.value]),
        )
        .execution_options(synchronize_session=False)
    )


async def refresh(session: AsyncSession, notification_id: str) -> None:
    """Recompute one notification's facts and its deliveries' (after any write to them)."""
    await session.execute(refresh_facts(NotificationRow.id == notification_id))
    await session.execute(refresh_delivery_facts(DeliveryRow.notification_id == notification_id))
