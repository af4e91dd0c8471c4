"""Bulks accepted durably (`tidings.bulks`): the one transaction that accepts a bulk, the pages
its fan-out reads, its progress, and the release of a bulk whose fan-out could not start."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, Integer, String, Text, delete, select, update
from sqlalchemy.orm import Mapped, mapped_column

from tidings.bulks import BulkRecord, BulkStatus
from tidings.models import NotificationStatus, Priority
from tidings.store.base import IN_CHUNK, StoreBase, rowcount, utcnow
from tidings.store.tables import (
    Base,
    IdempotencyKeyRow,
    JSONValue,
    NotificationRow,
    UTCDateTime,
)


class BulkRow(Base):
    """One bulk accepted durably. `started` is absolute (the fan-out's position reached), so a
    retried page writing it again changes nothing."""

    __tablename__ = "bulks"
    __table_args__ = (Index(None, "created_at"),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    template_id: Mapped[str] = mapped_column(String(128))
    total: Mapped[int] = mapped_column(Integer)
    started: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class BulkRecipientRow(Base):
    """A recipient whose run the fan-out has still to start: the run's whole input. Deleted
    once its page is started, so the table holds only work in flight (and no data of users
    whose notifications are running)."""

    __tablename__ = "bulk_recipients"

    bulk_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("bulks.id", ondelete="CASCADE"), primary_key=True
    )
    position: Mapped[int] = mapped_column(Integer, primary_key=True)
    notification_id: Mapped[str] = mapped_column(String)
    payload: Mapped[dict[str, Any]] = mapped_column(JSONValue)


@dataclass(frozen=True)
class BulkEntry:
    """One accepted recipient: its notification row, its run's input (`payload`), and its
    idempotency fingerprint when it has a key."""

    notification_id: str
    user_id: str
    template_id: str
    template_version: int
    priority: Priority
    payload: dict[str, Any]
    fingerprint: str | None = None


@dataclass
class BulkAcceptance:
    # Keys claimed before with the same fingerprint: the same notification (an "existed").
    existed: set[str] = field(default_factory=set)
    # Keys claimed before for another request: rejected, and not part of the bulk.
    conflicts: set[str] = field(default_factory=set)
    # Keys this call claimed: the ones a release gives back.
    claimed: list[str] = field(default_factory=list)


class BulkConflict(Exception):
    """An atomic bulk met keys used before for other requests: nothing was written."""

    def __init__(self, conflicts: set[str]) -> None:
        super().__init__(f"{len(conflicts)} idempotency keys used before for other requests")
        self.conflicts = conflicts


def pending_reason(bulk_id: str) -> str:
    """The reason a notification row carries until its run starts and writes its own."""
    return f"accepted in bulk {bulk_id}; its run has not started yet"


def _record(row: BulkRow) -> BulkRecord:
    return BulkRecord(
        bulk_id=row.id,
        template_id=row.template_id,
        total=row.total,
        started=row.started,
        status=BulkStatus(row.status),
        reason=row.reason,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


class BulksMixin(StoreBase):
    async def accept_bulk(
        self,
        bulk_id: str,
        template_id: str,
        entries: Sequence[BulkEntry],
        *,
        atomic: bool = False,
    ) -> BulkAcceptance:
        """In one transaction: claim every entry's key, then write the bulk, a `scheduled`
        notification row per accepted entry (kept if the notification exists already) and the
        fan-out's list. An entry whose key was used for another request is left out (raised as
        `BulkConflict`, with nothing written, when `atomic`)."""
        now = utcnow()
        out = BulkAcceptance()
        keyed = {e.notification_id: e.fingerprint for e in entries if e.fingerprint is not None}
        async with self._write() as session:
            keys = list(keyed)
            for start in range(0, len(keys), IN_CHUNK):
                chunk = keys[start : start + IN_CHUNK]
                rows = [{"key": k, "fingerprint": keyed[k], "created_at": now} for k in chunk]
                stmt = (
                    self._insert(IdempotencyKeyRow)
                    .values(rows)
                    .on_conflict_do_nothing(index_elements=["key"])
                    .returning(IdempotencyKeyRow.key)
                )
                mine = set((await session.scalars(stmt)).all())
                out.claimed += [k for k in chunk if k in mine]
                theirs = [k for k in chunk if k not in mine]
                if theirs:
                    before = await session.execute(
                        select(IdempotencyKeyRow.key, IdempotencyKeyRow.fingerprint).where(
                            IdempotencyKeyRow.key.in_(theirs)
                        )
                    )
                    for k, fingerprint in before:
                        (out.existed if fingerprint == keyed[k] else out.conflicts).add(k)
            if atomic and out.conflicts:
                raise BulkConflict(out.conflicts)  # rolls the claims back
            accepted = [e for e in entries if e.notification_id not in out.conflicts]
            conn = await session.connection()
            await conn.execute(
                self._insert(BulkRow).values(
                    id=bulk_id,
                    template_id=template_id,
                    total=len(accepted),
                    started=0,
                    status=BulkStatus.ACCEPTED.value,
                    created_at=now,
                    updated_at=now,
                )
            )
            reason = pending_reason(bulk_id)
            notifications = [
                {
                    "id": e.notification_id,
                    "user_id": e.user_id,
                    "template_id": e.template_id,
                    "template_version": e.template_version,
                    "priority": e.priority.value,
                    "status": NotificationStatus.SCHEDULED.value,
                    "reason": reason,
                    "created_at": now,
                    "updated_at": now,
                }
                for e in accepted
            ]
            recipients = [
                {
                    "bulk_id": bulk_id,
                    "position": i,
                    "notification_id": e.notification_id,
                    "payload": e.payload,
                }
                for i, e in enumerate(accepted)
            ]
            # executemany: SQLAlchemy batches these into multi-row INSERTs itself.
            if notifications:
                await conn.execute(
                    self._insert(NotificationRow).on_conflict_do_nothing(index_elements=["id"]),
                    notifications,
                )
                await conn.execute(self._insert(BulkRecipientRow), recipients)
        return out

    async def get_bulk(self, bulk_id: str) -> BulkRecord | None:
        async with self._read() as session:
            row = await session.get(BulkRow, bulk_id)
            return None if row is None else _record(row)

    async def bulk_page(
        self, bulk_id: str, from_position: int, limit: int
    ) -> list[tuple[int, dict[str, Any]]] | None:
        """The next `limit` recipients still to start, from `from_position` (position, run
        input), marking the bulk `starting`; None when the bulk was released or is gone, which
        tells the fan-out to start nobody."""
        async with self._write() as session:
            claimed = await session.execute(
                update(BulkRow)
                .where(
                    BulkRow.id == bulk_id,
                    BulkRow.status.in_([BulkStatus.ACCEPTED.value, BulkStatus.STARTING.value]),
                )
                .values(status=BulkStatus.STARTING.value, updated_at=utcnow())
            )
            if rowcount(claimed) == 0:
                return None
            rows = await session.execute(
                select(BulkRecipientRow.position, BulkRecipientRow.payload)
                .where(
                    BulkRecipientRow.bulk_id == bulk_id,
                    BulkRecipientRow.position >= from_position,
                )
                .order_by(BulkRecipientRow.position)
                .limit(limit)
            )
            return [(position, payload) for position, payload in rows]

    async def record_bulk_progress(self, bulk_id: str, reached: int, *, done: bool) -> None:
        """Every recipient before position `reached` has a run: count them and drop their rows;
        `done` when nobody is left."""
        now = utcnow()
        async with self._write() as session:
            await session.execute(
                update(BulkRow)
                .where(BulkRow.id == bulk_id, BulkRow.started < reached)
                .values(started=reached, updated_at=now)
            )
            await session.execute(
                delete(BulkRecipientRow).where(
                    BulkRecipientRow.bulk_id == bulk_id, BulkRecipientRow.position < reached
                )
            )
            if done:
                await session.execute(
                    update(BulkRow)
                    .where(BulkRow.id == bulk_id, BulkRow.status != BulkStatus.FAILED.value)
                    .values(status=BulkStatus.STARTED.value, updated_at=now)
                )

    async def release_bulk(self, bulk_id: str, claimed: Sequence[str], reason: str) -> bool:
        """Undo an accepted bulk whose fan-out could not be started: its rows, the notification
        rows it wrote (those still waiting for it) and the keys it claimed. False, and nothing
        changed, if the fan-out has begun after all (its start answered an error but went
        through): then the bulk stands."""
        now = utcnow()
        async with self._write() as session:
            released = await session.execute(
                update(BulkRow)
                .where(BulkRow.id == bulk_id, BulkRow.status == BulkStatus.ACCEPTED.value)
                .values(status=BulkStatus.FAILED.value, reason=reason, updated_at=now)
            )
            if rowcount(released) == 0:
                return False
            ids = select(BulkRecipientRow.notification_id).where(
                BulkRecipientRow.bulk_id == bulk_id
            )
            await session.execute(
                delete(NotificationRow).where(
                    NotificationRow.id.in_(ids), NotificationRow.reason == pending_reason(bulk_id)
                )
            )
            await session.execute(
                delete(BulkRecipientRow).where(BulkRecipientRow.bulk_id == bulk_id)
            )
            for start in range(0, len(claimed), IN_CHUNK):
                chunk = list(claimed[start : start + IN_CHUNK])
                await session.execute(
                    delete(IdempotencyKeyRow).where(IdempotencyKeyRow.key.in_(chunk))
                )
            await session.execute(
                update(BulkRow).where(BulkRow.id == bulk_id).values(total=0, updated_at=now)
            )
        return True


__all__ = [
    "BulkAcceptance",
    "BulkConflict",
    "BulkEntry",
    "BulkRecipientRow",
    "BulkRow",
    "BulksMixin",
    "pending_reason",
]
