"""What frequency caps count: non-critical notifications a user was actually sent, per template
category, in a sliding window — single notifications (their deliveries) and broadcasts (their
recipient rows that reached SENT or DELIVERED), each counted once however many channels it went
on."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Select, func, select, type_coerce

from tidings.models import DeliveryStatus, Priority
from tidings.store.base import StoreBase
from tidings.store.tables import (
    BroadcastRecipientRow,
    BroadcastRow,
    DeliveryRow,
    NotificationRow,
    TemplateRow,
    UTCDateTime,
)

# broadcast_recipients statuses that mean the user got it (RecipientStatus.SENT, DELIVERED); a
# DEFERRED recipient is counted through the notification of its own, never twice.
_BROADCAST_SENT = ("sent", "delivered")


def notification_first_sends(
    user_ids: Sequence[str], category: str, since: datetime, exclude: str | None
) -> Select[*tuple[Any, ...]]:
    """(user_id, at): each notification in `category` first sent since `since`."""
    return (
        select(NotificationRow.user_id.label("user_id"), func.min(DeliveryRow.at).label("at"))
        .join(DeliveryRow, DeliveryRow.notification_id == NotificationRow.id)
        .join(
            TemplateRow,
            (TemplateRow.id == NotificationRow.template_id)
            & (TemplateRow.version == NotificationRow.template_version),
        )
        .where(
            NotificationRow.user_id.in_(list(user_ids)),
            NotificationRow.priority != Priority.CRITICAL.value,
            NotificationRow.id != (exclude or ""),
            TemplateRow.category == category,
            DeliveryRow.status.in_([DeliveryStatus.SENT.value, DeliveryStatus.DELIVERED.value]),
            DeliveryRow.at >= since,
        )
        .group_by(NotificationRow.id, NotificationRow.user_id)
    )


def broadcast_first_sends(
    user_ids: Sequence[str], category: str, since: datetime, exclude: str | None
) -> Select[*tuple[Any, ...]]:
    """(user_id, at): each broadcast in `category` that reached the user since `since` (the
    recipient rows are found by the (user_id, updated_at) index; `exclude` is the broadcast
    being planned, whose own rows must not cap it)."""
    r = BroadcastRecipientRow
    return (
        select(r.user_id.label("user_id"), func.min(r.updated_at).label("at"))
        .join(BroadcastRow, BroadcastRow.id == r.broadcast_id)
        .join(
            TemplateRow,
            (TemplateRow.id == BroadcastRow.template_id)
            & (TemplateRow.version == BroadcastRow.template_version),
        )
        .where(
            r.user_id.in_(list(user_ids)),
            r.updated_at >= since,
            r.status.in_(_BROADCAST_SENT),
            r.broadcast_id != (exclude or ""),
            BroadcastRow.priority != Priority.CRITICAL.value,
            TemplateRow.category == category,
        )
        .group_by(r.broadcast_id, r.user_id)
    )


def first_sends(
    user_ids: Sequence[str],
    category: str,
    since: datetime,
    *,
    exclude_notification: str | None = None,
    exclude_broadcast: str | None = None,
) -> Any:
    """Both kinds of sends as one subquery of (user_id, at)."""
    return (
        notification_first_sends(user_ids, category, since, exclude_notification)
        .union_all(broadcast_first_sends(user_ids, category, since, exclude_broadcast))
        .subquery()
    )


class FrequencyMixin(StoreBase):
    async def recent_sends(
        self, *, user_id: str, category: str, since: datetime, exclude: str | None = None
    ) -> tuple[int, datetime | None]:
        """How many notifications and broadcasts in `category` reached `user_id` since `since`
        (critical ones excluded), and when the earliest of them was sent."""
        sends = first_sends([user_id], category, since, exclude_notification=exclude)
        stmt = select(func.count(), type_coerce(func.min(sends.c.at), UTCDateTime)).select_from(
            sends
        )
        async with self._read() as session:
            count, earliest = (await session.execute(stmt)).one()
        return int(count), earliest
