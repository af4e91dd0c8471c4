"""What frequency caps count: non-critical notifications a user was actually sent, per template
category, in a sliding window."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select

from tidings.models import DeliveryStatus, Priority
from tidings.store.base import StoreBase
from tidings.store.tables import DeliveryRow, NotificationRow, TemplateRow


class FrequencyMixin(StoreBase):
    async def recent_sends(
        self, *, user_id: str, category: str, since: datetime, exclude: str | None = None
    ) -> tuple[int, datetime | None]:
        """How many notifications in `category` reached `user_id` since `since` (critical ones
        excluded), and when the earliest of them was sent."""
        first_sent = (
            select(
                NotificationRow.id.label("id"),
                func.min(DeliveryRow.at).label("at"),
            )
            .join(DeliveryRow, DeliveryRow.notification_id == NotificationRow.id)
            .join(
                TemplateRow,
                (TemplateRow.id == NotificationRow.template_id)
                & (TemplateRow.version == NotificationRow.template_version),
            )
            .where(
                NotificationRow.user_id == user_id,
                NotificationRow.priority != Priority.CRITICAL.value,
                NotificationRow.id != (exclude or ""),
                TemplateRow.category == category,
                DeliveryRow.status.in_([DeliveryStatus.SENT.value, DeliveryStatus.DELIVERED.value]),
                DeliveryRow.at >= since,
            )
            .group_by(NotificationRow.id)
            .subquery()
        )
        stmt = select(func.count(), func.min(first_sent.c.at)).select_from(first_sent)
        async with self._read() as session:
            count, earliest = (await session.execute(stmt)).one()
        return int(count), earliest
