"""Per-notification facts kept on the notification's row, so analytics and engagement segments
read one indexed range of notifications instead of joining its deliveries and events.

`any_sent`, `any_delivered`, `any_failed`, `any_suppressed`: some channel's delivery is in that
status (sent counts sent or delivered). `last_opened_at` (an open or a click),
`last_clicked_at`, `last_converted_at`: the latest event of that kind, NULL when none. Every
write of a delivery or an event recomputes them from the raw rows in the same transaction
(`refresh_facts`), so they can never drift from a recount; migration 0013 backfilled them.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, Update, exists, func, select, update

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
