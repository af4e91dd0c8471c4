"""Digests in the database: the registered definitions, and each user's events with the batch
they went out in (NULL while they wait). Sealing a batch is one UPDATE of the waiting rows, so an
event stored after it waits for the next batch and no event is ever in two."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel
from sqlalchemy import func, select, update

from tidings.digests import BatchSummary, DigestDefinition, StoredEvent
from tidings.store.base import StoreBase, check_limit, rowcount, utcnow
from tidings.store.tables import DigestEventRow, DigestRow


class StoredDigestEvent(BaseModel):
    seq: int  # the row's id: rises with every new event of the digest
    duplicate: bool  # the event id was stored before; nothing changed


class PendingDigest(BaseModel):
    """What waits for the next batch of one user's digest."""

    pending: int  # events not yet in a batch
    max_seq: int  # the highest seq among all of this digest's events (0 when none)
    next_batch: int  # one past the highest batch number used so far
    sent_events: int  # events already in a batch


class DigestsMixin(StoreBase):
    async def upsert_digest(self, definition: DigestDefinition) -> DigestDefinition:
        now = utcnow()
        config = definition.model_dump(mode="json")
        stmt = self._insert(DigestRow).values(
            key=definition.key, config=config, created_at=now, updated_at=now
        )
        stmt = stmt.on_conflict_do_update(
            index_elements=["key"], set_={"config": config, "updated_at": now}
        )
        async with self._write() as session:
            await session.execute(stmt)
        return definition

    async def get_digest(self, key: str) -> DigestDefinition | None:
        async with self._read() as session:
            row = await session.get(DigestRow, key)
            return None if row is None else DigestDefinition.model_validate(row.config)

    async def list_digests(self, *, limit: int = 100) -> list[DigestDefinition]:
        check_limit(limit)
        stmt = select(DigestRow).order_by(DigestRow.key).limit(limit)
        async with self._read() as session:
            rows = (await session.scalars(stmt)).all()
            return [DigestDefinition.model_validate(r.config) for r in rows]

    async def add_digest_event(
        self,
        *,
        user_id: str,
        key: str,
        event_id: str,
        data: dict[str, Any],
        occurred_at: datetime | None = None,
    ) -> StoredDigestEvent:
        """Store the event unless its id was stored for this user and key before."""
        now = utcnow()
        stmt = self._insert(DigestEventRow).values(
            user_id=user_id,
            digest_key=key,
            event_id=event_id,
            data=data,
            occurred_at=occurred_at or now,
            received_at=now,
            batch=None,
        )
        stmt = stmt.on_conflict_do_nothing(index_elements=["user_id", "digest_key", "event_id"])
        async with self._write() as session:
            inserted = rowcount(await session.execute(stmt)) == 1
            seq = await session.scalar(
                select(DigestEventRow.seq).where(
                    DigestEventRow.user_id == user_id,
                    DigestEventRow.digest_key == key,
                    DigestEventRow.event_id == event_id,
                )
            )
            assert seq is not None
            return StoredDigestEvent(seq=seq, duplicate=not inserted)

    async def pending_digest(self, user_id: str, key: str) -> PendingDigest:
        mine = (DigestEventRow.user_id == user_id, DigestEventRow.digest_key == key)
        stmt = select(
            func.count().filter(DigestEventRow.batch.is_(None)),
            func.count(DigestEventRow.batch),
            func.coalesce(func.max(DigestEventRow.seq), 0),
            func.coalesce(func.max(DigestEventRow.batch), 0),
        ).where(*mine)
        async with self._read() as session:
            row = (await session.execute(stmt)).one()
        pending, sent, max_seq, last_batch = (int(v or 0) for v in row)
        return PendingDigest(
            pending=pending, max_seq=max_seq, next_batch=last_batch + 1, sent_events=sent
        )

    async def seal_digest_batch(self, user_id: str, key: str, batch: int) -> int:
        """Put every waiting event into `batch`; the number of events the batch now holds. Run
        again (a retried activity) it adds what arrived meanwhile to the same, unsent batch."""
        stmt = (
            update(DigestEventRow)
            .where(
                DigestEventRow.user_id == user_id,
                DigestEventRow.digest_key == key,
                DigestEventRow.batch.is_(None),
            )
            .values(batch=batch)
        )
        count = select(func.count()).where(
            DigestEventRow.user_id == user_id,
            DigestEventRow.digest_key == key,
            DigestEventRow.batch == batch,
        )
        async with self._write() as session:
            await session.execute(stmt)
            return int(await session.scalar(count) or 0)

    async def digest_batch(
        self, user_id: str, key: str, batch: int, *, first_n: int, last_n: int
    ) -> BatchSummary:
        """A sealed batch: its size, its first and last events in the order they arrived."""
        mine = (
            DigestEventRow.user_id == user_id,
            DigestEventRow.digest_key == key,
            DigestEventRow.batch == batch,
        )
        first = select(DigestEventRow).where(*mine).order_by(DigestEventRow.seq).limit(first_n)
        last = select(DigestEventRow).where(*mine).order_by(DigestEventRow.seq.desc()).limit(last_n)
        # Earliest and latest through the column's own type: SQLite hands min()/max() of a
        # timestamp back as a naive string.
        when = select(DigestEventRow.occurred_at).where(*mine).limit(1)
        async with self._read() as session:
            total = int(await session.scalar(select(func.count()).where(*mine)) or 0)
            first_rows = list((await session.scalars(first)).all()) if first_n else []
            last_rows = list((await session.scalars(last)).all())[::-1] if last_n else []
            first_at = await session.scalar(when.order_by(DigestEventRow.occurred_at))
            last_at = await session.scalar(when.order_by(DigestEventRow.occurred_at.desc()))
        return BatchSummary(
            batch=batch,
            total=total,
            first=[_event(r) for r in first_rows],
            last=[_event(r) for r in last_rows],
            first_at=first_at,
            last_at=last_at,
        )


def _event(row: DigestEventRow) -> StoredEvent:
    return StoredEvent(event_id=row.event_id, at=row.occurred_at, data=row.data)
