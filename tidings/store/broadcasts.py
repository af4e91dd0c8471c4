"""Broadcasts: the broadcast's record and the counters the workflow last recorded.

`BroadcastsMixin` is the whole of the store's broadcast side: it adds these to the audience in
keyset pages and the bulk reads that plan a page (`broadcast_audience`) and each recipient's
outcome per channel (`broadcast_recipients`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import AwareDatetime, BaseModel, TypeAdapter
from sqlalchemy import select, update

from tidings.broadcast_models import Audience, BroadcastCounters
from tidings.models import Channel, Priority
from tidings.store.base import check_limit, rowcount, utcnow
from tidings.store.broadcast_audience import BroadcastAudienceMixin
from tidings.store.broadcast_recipients import BroadcastRecipientsMixin
from tidings.store.tables import BroadcastRow, EnrolmentRow

AUDIENCE: TypeAdapter[Audience] = TypeAdapter(Audience)


class BroadcastRecord(BaseModel):
    id: str
    template_id: str
    template_version: int
    audience: Audience
    channels: list[Channel] | None = None
    priority: Priority
    status: str
    counters: BroadcastCounters
    pages: int
    created_at: AwareDatetime
    updated_at: AwareDatetime
    finished_at: AwareDatetime | None = None
    experiment_id: str | None = None  # the experiment run on a share of the audience first
    phase: str | None = None  # with an experiment: testing, waiting for it, sending the winner


def _record(row: BroadcastRow) -> BroadcastRecord:
    return BroadcastRecord(
        id=row.id,
        template_id=row.template_id,
        template_version=row.template_version,
        audience=AUDIENCE.validate_python(row.audience),
        channels=[Channel(c) for c in row.channels] if row.channels is not None else None,
        priority=Priority(row.priority),
        status=row.status,
        counters=BroadcastCounters.model_validate(row.counters),
        pages=row.pages,
        created_at=row.created_at,
        updated_at=row.updated_at,
        finished_at=row.finished_at,
        experiment_id=row.experiment_id,
        phase=row.phase,
    )


class BroadcastsMixin(BroadcastAudienceMixin, BroadcastRecipientsMixin):
    async def create_broadcast(
        self,
        *,
        broadcast_id: str,
        template_id: str,
        template_version: int,
        audience: Audience,
        channels: list[Channel] | None,
        priority: Priority,
    ) -> bool:
        """Record a new broadcast; False (nothing changed) if the id exists."""
        now = utcnow()
        stmt = (
            self._insert(BroadcastRow)
            .values(
                id=broadcast_id,
                template_id=template_id,
                template_version=template_version,
                audience=AUDIENCE.dump_python(audience, mode="json"),
                channels=[c.value for c in channels] if channels is not None else None,
                priority=priority.value,
                status="running",
                counters=BroadcastCounters().model_dump(mode="json"),
                pages=0,
                created_at=now,
                updated_at=now,
            )
            .on_conflict_do_nothing(index_elements=["id"])
        )
        async with self._write() as session:
            result = await session.execute(stmt)
            return rowcount(result) == 1

    async def record_broadcast_progress(
        self,
        broadcast_id: str,
        *,
        status: str,
        counters: BroadcastCounters,
        pages: int,
        phase: str | None = None,
        experiment_id: str | None = None,
    ) -> None:
        now = utcnow()
        final = status in ("completed", "cancelled", "failed")
        values: dict[str, Any] = {
            "status": status,
            "counters": counters.model_dump(mode="json"),
            "pages": pages,
            "updated_at": now,
            "finished_at": now if final else None,
        }
        if phase is not None:  # a broadcast without an experiment never has one
            values["phase"] = phase
        if experiment_id is not None:
            values["experiment_id"] = experiment_id
        stmt = update(BroadcastRow).where(BroadcastRow.id == broadcast_id).values(**values)
        async with self._write() as session:
            await session.execute(stmt)

    async def enrolled_among(self, experiment_id: str, user_ids: Sequence[str]) -> set[str]:
        """Which of these users the experiment has enrolled: a broadcast's rollout skips them."""
        if not user_ids:
            return set()
        stmt = select(EnrolmentRow.user_id).where(
            EnrolmentRow.experiment_id == experiment_id,
            EnrolmentRow.user_id.in_(list(user_ids)),
        )
        async with self._read() as session:
            return set(await session.scalars(stmt))

    async def get_broadcast(self, broadcast_id: str) -> BroadcastRecord | None:
        async with self._read() as session:
            row = await session.get(BroadcastRow, broadcast_id)
            return None if row is None else _record(row)

    async def list_broadcasts(self, *, limit: int = 100) -> list[BroadcastRecord]:
        check_limit(limit)
        stmt = select(BroadcastRow).order_by(BroadcastRow.created_at.desc()).limit(limit)
        async with self._read() as session:
            return [_record(row) for row in await session.scalars(stmt)]
