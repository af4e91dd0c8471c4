"""A/B tests in the database: each test's configuration and outcome, the first enrolment of
each user, and the per-arm counts the parent workflow decides on, aggregated in SQL."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel
from sqlalchemy import ColumnElement, and_, case, func, select, update
from sqlalchemy.exc import IntegrityError

from tidings.experiments import ArmCounts, Claim
from tidings.models import DeliveryStatus
from tidings.store.base import StoreBase, check_limit, rowcount, utcnow
from tidings.store.tables import (
    DeliveryRow,
    EngagementRow,
    EnrolmentRow,
    ExperimentRow,
    NotificationRow,
)

RUNNING = "running"
FINISHED = "finished"
_DELIVERED = [DeliveryStatus.SENT.value, DeliveryStatus.DELIVERED.value]


class ExperimentRecord(BaseModel):
    id: str
    config: dict[str, Any]
    status: str
    ending: str | None = None
    winner: str | None = None
    reason: str | None = None
    outcome: dict[str, Any] | None = None
    created_at: datetime
    finished_at: datetime | None = None


def _record(row: ExperimentRow) -> ExperimentRecord:
    return ExperimentRecord(
        id=row.id,
        config=row.config,
        status=row.status,
        ending=row.ending,
        winner=row.winner,
        reason=row.reason,
        outcome=row.outcome,
        created_at=row.created_at,
        finished_at=row.finished_at,
    )


class ExperimentsMixin(StoreBase):
    async def create_experiment(self, experiment_id: str, config: dict[str, Any]) -> bool:
        """False (and nothing changed) when a test with this id exists already."""
        stmt = self._insert(ExperimentRow).values(
            id=experiment_id, config=config, status=RUNNING, created_at=utcnow()
        )
        async with self._write() as session:
            result = await session.execute(stmt.on_conflict_do_nothing(index_elements=["id"]))
            return rowcount(result) == 1

    async def get_experiment(self, experiment_id: str) -> ExperimentRecord | None:
        async with self._read() as session:
            row = await session.get(ExperimentRow, experiment_id)
            return None if row is None else _record(row)

    async def list_experiments(self, *, limit: int = 100) -> list[ExperimentRecord]:
        check_limit(limit)
        stmt = select(ExperimentRow).order_by(ExperimentRow.created_at.desc()).limit(limit)
        async with self._read() as session:
            return [_record(r) for r in (await session.scalars(stmt)).all()]

    async def finish_experiment(
        self,
        experiment_id: str,
        *,
        ending: str,
        winner: str | None,
        reason: str,
        outcome: dict[str, Any],
    ) -> None:
        """Record the ending; the first one recorded stays (a retried activity changes nothing)."""
        stmt = (
            update(ExperimentRow)
            .where(ExperimentRow.id == experiment_id, ExperimentRow.status == RUNNING)
            .values(
                status=FINISHED,
                ending=ending,
                winner=winner,
                reason=reason,
                outcome=outcome,
                finished_at=utcnow(),
            )
        )
        async with self._write() as session:
            await session.execute(stmt)

    async def claim_enrolment(
        self,
        *,
        experiment_id: str,
        user_id: str,
        variant: str,
        notification_id: str | None,
        claim_id: str,
    ) -> Claim:
        """Enrol the user unless enrolled already, atomically. The same `claim_id` (a retry of
        the same enrolment) gets `first=True` back, so a retried step still sends once."""
        stmt = self._insert(EnrolmentRow).values(
            experiment_id=experiment_id,
            user_id=user_id,
            variant=variant,
            notification_id=notification_id,
            claim_id=claim_id,
            enrolled_at=utcnow(),
        )
        stmt = stmt.on_conflict_do_nothing(index_elements=["experiment_id", "user_id"])
        async with self._write() as session:
            try:
                await session.execute(stmt)
            except IntegrityError as e:  # the experiment row is missing
                raise LookupError(f"experiment {experiment_id} not found") from e
            row = await session.get(EnrolmentRow, (experiment_id, user_id))
            assert row is not None
            return Claim(
                experiment_id=experiment_id,
                user_id=user_id,
                variant=row.variant,
                notification_id=row.notification_id,
                first=row.claim_id == claim_id,
                claim_id=row.claim_id,
            )

    async def get_enrolment(self, experiment_id: str, user_id: str) -> Claim | None:
        async with self._read() as session:
            row = await session.get(EnrolmentRow, (experiment_id, user_id))
            if row is None:
                return None
            return Claim(
                experiment_id=experiment_id,
                user_id=user_id,
                variant=row.variant,
                notification_id=row.notification_id,
                first=False,
            )

    async def enrolment_counts(self, experiment_id: str) -> dict[str, int]:
        """Users enrolled per arm, holdout included."""
        stmt = (
            select(EnrolmentRow.variant, func.count())
            .where(EnrolmentRow.experiment_id == experiment_id)
            .group_by(EnrolmentRow.variant)
        )
        async with self._read() as session:
            return {v: n for v, n in (await session.execute(stmt)).all()}

    async def experiment_counts(
        self, experiment_id: str, *, engagement_types: tuple[str, ...], window: timedelta
    ) -> dict[str, ArmCounts]:
        """Per variant: notifications delivered (a channel sent or delivered), and how many of
        them reached the metric (an engagement of one of `engagement_types`) within `window`
        of the first delivery. One query; the database does the counting."""
        delivered = (
            select(
                DeliveryRow.notification_id.label("nid"),
                func.min(DeliveryRow.at).label("at"),
            )
            .join(NotificationRow, NotificationRow.id == DeliveryRow.notification_id)
            .where(
                NotificationRow.experiment_id == experiment_id,
                DeliveryRow.status.in_(_DELIVERED),
            )
            .group_by(DeliveryRow.notification_id)
            .subquery()
        )
        within = self._within(EngagementRow.at, delivered.c.at, window)
        reached = (
            select(EngagementRow.notification_id.label("nid"))
            .join(delivered, delivered.c.nid == EngagementRow.notification_id)
            .where(EngagementRow.type.in_(engagement_types), within)
            .group_by(EngagementRow.notification_id)
            .subquery()
        )
        stmt = (
            select(
                NotificationRow.variant,
                func.count(delivered.c.nid),
                func.sum(case((reached.c.nid.is_not(None), 1), else_=0)),
            )
            .join(delivered, delivered.c.nid == NotificationRow.id)
            .outerjoin(reached, reached.c.nid == NotificationRow.id)
            .group_by(NotificationRow.variant)
        )
        async with self._read() as session:
            rows = (await session.execute(stmt)).all()
        return {
            variant: ArmCounts(delivered=n, reached=int(r or 0))
            for variant, n, r in rows
            if variant is not None
        }

    def _within(self, at: Any, start: Any, window: timedelta) -> ColumnElement[bool]:
        seconds = window.total_seconds()
        elapsed: ColumnElement[Any]
        if self.engine.dialect.name == "postgresql":
            elapsed = func.extract("epoch", at - start)
        else:
            elapsed = (func.julianday(at) - func.julianday(start)) * 86400.0
        return and_(elapsed <= seconds)
