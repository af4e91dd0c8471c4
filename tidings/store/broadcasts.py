"""Broadcasts: the audience in keyset pages, the bulk reads that plan a page, each recipient's
outcome per channel, and the counters the workflow last recorded."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from pydantic import AwareDatetime, BaseModel, TypeAdapter
from sqlalchemy import Row, Table, func, select, type_coerce, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from tidings.broadcast_models import (
    Audience,
    BroadcastCounters,
    Outcome,
    RecipientStatus,
    SegmentAudience,
    UnknownSegment,
    UserIdsAudience,
)
from tidings.models import Channel, Preferences, Priority, User
from tidings.store.base import Upsert, check_limit, rowcount, utcnow
from tidings.store.frequency import first_sends
from tidings.store.segments import SegmentsMixin
from tidings.store.tables import (
    BroadcastRecipientRow,
    BroadcastRow,
    DeviceRow,
    EnrolmentRow,
    InboxRow,
    PreferencesRow,
    UserRow,
    UTCDateTime,
)
from tidings.store.users import _preferences, _user

AUDIENCE: TypeAdapter[Audience] = TypeAdapter(Audience)


@dataclass
class PageReads:
    """What planning a page needs, read in four queries."""

    users: list[User]
    preferences: dict[str, Preferences]
    with_devices: set[str]
    recent: dict[str, tuple[int, datetime | None]]  # user -> sends in the category, earliest


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


class RecipientRecord(BaseModel):
    user_id: str
    channel: Channel
    status: RecipientStatus
    batch: int
    target: str | None = None
    provider_message_id: str | None = None
    error: str | None = None


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


# The user columns routing and planning read: a Core row each, not an ORM entity.
_PLANNING_COLUMNS = (
    UserRow.id,
    UserRow.email,
    UserRow.phone,
    UserRow.timezone,
    UserRow.locale,
    UserRow.webhook_url,
    UserRow.webhook_urls,
    UserRow.slack_webhook_url,
    UserRow.slack_user_id,
)


def _trusted_user(row: Row[*tuple[Any, ...]]) -> User:
    """A User for planning built without validation: every row was validated when it was
    written (`upsert_user`), and validating 500 e-mail addresses and URLs per page again was
    the largest cost of planning one. Only planning sees these (the email channel reads full,
    validated users); URLs stay strings, which routing only tests for presence. Attributes are
    left out: planning never reads them."""
    return User.model_construct(
        id=row.id,
        email=row.email,
        phone=row.phone,
        timezone=row.timezone,
        locale=row.locale,
        webhook_url=row.webhook_url,
        webhook_urls=list(row.webhook_urls or []),
        slack_webhook_url=row.slack_webhook_url,
        slack_user_id=row.slack_user_id,
        attributes={},
    )


_RECIPIENTS = cast(Table, BroadcastRecipientRow.__table__)
_INBOX = cast(Table, InboxRow.__table__)


class BroadcastsMixin(SegmentsMixin):
    def _insert_many(self, table: Table) -> Upsert:
        """A Core INSERT for executemany: compiled once and cached, where a multi-row VALUES
        built per call costs more to compile than to run."""
        if self.engine.dialect.name == "postgresql":
            return postgresql.insert(table)
        return sqlite.insert(table)

    def _upsert_recipients(self) -> Upsert:
        stmt = self._insert_many(_RECIPIENTS)
        return stmt.on_conflict_do_update(
            index_elements=["broadcast_id", "user_id", "channel"],
            set_={
                "status": stmt.excluded.status,
                "batch": stmt.excluded.batch,
                "target": stmt.excluded.target,
                "provider_message_id": stmt.excluded.provider_message_id,
                "error": stmt.excluded.error,
                "updated_at": stmt.excluded.updated_at,
            },
        )

    async def user_locales(self, user_ids: Sequence[str]) -> dict[str, str]:
        """Each existing user's locale: all the in-app channel needs to render."""
        stmt = select(UserRow.id, UserRow.locale).where(UserRow.id.in_(list(user_ids)))
        async with self._read() as session:
            return {user_id: locale for user_id, locale in (await session.execute(stmt)).all()}

    # --- the audience (the AudienceSource seam) -------------------------------------------------

    async def audience_page(self, audience: Audience, after: str, limit: int) -> list[str]:
        """The next `limit` user ids after `after`, in id order. A list of ids keeps only the
        users that exist."""
        check_limit(limit)
        if isinstance(audience, SegmentAudience):
            return await self._segment_members(audience.segment, after, limit)
        stmt = select(UserRow.id).where(UserRow.id > after).order_by(UserRow.id).limit(limit)
        if isinstance(audience, UserIdsAudience):
            wanted = sorted({u for u in audience.user_ids if u > after})[:limit]
            stmt = select(UserRow.id).where(UserRow.id.in_(wanted)).order_by(UserRow.id)
        async with self._read() as session:
            return list((await session.scalars(stmt)).all())

    async def _segment_members(self, name: str, after: str, limit: int) -> list[str]:
        """The saved segment's members, evaluated at each page (a user who joins the segment
        while the broadcast runs is sent to if their id is still ahead of the cursor)."""
        try:
            return await self.segment_page(name, after or None, limit)
        except LookupError as e:
            raise UnknownSegment(name) from e

    # --- bulk reads for planning ----------------------------------------------------------------

    async def page_reads(
        self,
        user_ids: Sequence[str],
        *,
        category: str | None,
        since: datetime,
        broadcast_id: str | None = None,
    ) -> PageReads:
        """Users, preferences, whether each has a device and (when `category` is given: the cap
        applies) their recent sends in it: four queries for the whole page, users in id order."""
        ids = list(user_ids)
        async with self._read() as session:
            users = [
                _trusted_user(row)
                for row in await session.execute(
                    select(*_PLANNING_COLUMNS).where(UserRow.id.in_(ids)).order_by(UserRow.id)
                )
            ]
            prefs = {
                row.user_id: _preferences(row)
                for row in await session.scalars(
                    select(PreferencesRow).where(PreferencesRow.user_id.in_(ids))
                )
            }
            with_devices = set(
                await session.scalars(
                    select(DeviceRow.user_id).where(DeviceRow.user_id.in_(ids)).distinct()
                )
            )
            recent = (
                await self._recent_sends_bulk(session, ids, category, since, broadcast_id)
                if category is not None
                else {}
            )
        return PageReads(users, prefs, with_devices, recent)

    async def _recent_sends_bulk(
        self,
        session: AsyncSession,
        ids: list[str],
        category: str,
        since: datetime,
        exclude_broadcast: str | None,
    ) -> dict[str, tuple[int, datetime | None]]:
        """`recent_sends` for many users at once: per user, the notifications and broadcasts in
        `category` first sent since `since`, and the earliest of those sends."""
        sends = first_sends(ids, category, since, exclude_broadcast=exclude_broadcast)
        stmt = select(
            sends.c.user_id, func.count(), type_coerce(func.min(sends.c.at), UTCDateTime)
        ).group_by(sends.c.user_id)
        rows = (await session.execute(stmt)).all()
        return {user_id: (int(count), earliest) for user_id, count, earliest in rows}

    async def users_by_id(self, user_ids: Sequence[str]) -> dict[str, User]:
        async with self._read() as session:
            rows = await session.scalars(select(UserRow).where(UserRow.id.in_(list(user_ids))))
            return {row.id: _user(row) for row in rows}

    # --- the broadcast and its counters ---------------------------------------------------------

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

    # --- recipients -----------------------------------------------------------------------------

    async def claim_recipients(
        self, broadcast_id: str, channel: Channel, batch: int, user_ids: Sequence[str]
    ) -> dict[str, RecipientStatus]:
        """Claim each recipient's send before it happens (a row in CLAIMED unless one exists)
        and return every recipient's status after the claim: a retried batch sends only those
        still CLAIMED."""
        if not user_ids:
            return {}
        now = utcnow()
        rows = [
            {
                "broadcast_id": broadcast_id,
                "user_id": u,
                "channel": channel.value,
                "status": RecipientStatus.CLAIMED.value,
                "batch": batch,
                "target": None,
                "provider_message_id": None,
                "error": None,
                "updated_at": now,
            }
            for u in user_ids
        ]
        stmt = self._insert_many(_RECIPIENTS).on_conflict_do_nothing(
            index_elements=["broadcast_id", "user_id", "channel"]
        )
        read = select(BroadcastRecipientRow.user_id, BroadcastRecipientRow.status).where(
            BroadcastRecipientRow.broadcast_id == broadcast_id,
            BroadcastRecipientRow.channel == channel.value,
            BroadcastRecipientRow.user_id.in_(list(user_ids)),
        )
        async with self._write() as session:
            await (await session.connection()).execute(stmt, rows)
            found = (await session.execute(read)).all()
        return {user_id: RecipientStatus(status) for user_id, status in found}

    async def record_recipients(
        self,
        broadcast_id: str,
        channel: Channel,
        batch: int,
        outcomes: Sequence[Outcome],
    ) -> None:
        """Write each recipient's outcome on `channel` (one statement for all of them)."""
        if not outcomes:
            return
        now = utcnow()
        rows = [
            {
                "broadcast_id": broadcast_id,
                "user_id": o.user_id,
                "channel": channel.value,
                "status": o.status.value,
                "batch": batch,
                "target": o.target,
                "provider_message_id": o.provider_message_id,
                "error": o.error,
                "updated_at": now,
            }
            for o in outcomes
        ]
        async with self._write() as session:
            await (await session.connection()).execute(self._upsert_recipients(), rows)

    async def broadcast_recipients(
        self, broadcast_id: str, *, after: tuple[str, str] = ("", ""), limit: int = 100
    ) -> list[RecipientRecord]:
        """Recipients' outcomes in (user, channel) order, a keyset page after `after`."""
        check_limit(limit)
        r = BroadcastRecipientRow
        user, channel = after
        stmt = (
            select(r)
            .where(
                r.broadcast_id == broadcast_id,
                (r.user_id > user) | ((r.user_id == user) & (r.channel > channel)),
            )
            .order_by(r.user_id, r.channel)
            .limit(limit)
        )
        async with self._read() as session:
            return [
                RecipientRecord(
                    user_id=row.user_id,
                    channel=Channel(row.channel),
                    status=RecipientStatus(row.status),
                    batch=row.batch,
                    target=row.target,
                    provider_message_id=row.provider_message_id,
                    error=row.error,
                )
                for row in await session.scalars(stmt)
            ]

    async def broadcast_status_counts(self, broadcast_id: str) -> dict[tuple[Channel, str], int]:
        r = BroadcastRecipientRow
        stmt = (
            select(r.channel, r.status, func.count())
            .where(r.broadcast_id == broadcast_id)
            .group_by(r.channel, r.status)
        )
        async with self._read() as session:
            rows = (await session.execute(stmt)).all()
        return {(Channel(c), s): int(n) for c, s, n in rows}

    async def deliver_in_app(
        self, broadcast_id: str, batch: int, items: Sequence[tuple[str, str, str, str]]
    ) -> dict[str, int]:
        """Put each (user, notification id, title, body) in the user's inbox and record the
        recipient DELIVERED, in one transaction: the in-app send and its record cannot part,
        so a retried batch has nothing in doubt. An item already there (keyed by notification
        id) is kept. Returns each user's inbox item id."""
        if not items:
            return {}
        now = utcnow()
        inbox_rows = [
            {
                "user_id": user_id,
                "notification_id": nid,
                "title": title,
                "body": body,
                "created_at": now,
                "read_at": None,
            }
            for user_id, nid, title, body in items
        ]
        insert_items = self._insert_many(_INBOX).on_conflict_do_nothing(
            index_elements=["notification_id"]
        )
        by_nid = {nid: user_id for user_id, nid, _, _ in items}
        read_ids = select(InboxRow.notification_id, InboxRow.id).where(
            InboxRow.notification_id.in_(list(by_nid))
        )
        async with self._write() as session:
            conn = await session.connection()
            await conn.execute(insert_items, inbox_rows)
            ids = {by_nid[nid]: item_id for nid, item_id in (await conn.execute(read_ids)).all()}
            await conn.execute(
                self._upsert_recipients(),
                [
                    {
                        "broadcast_id": broadcast_id,
                        "user_id": user_id,
                        "channel": Channel.IN_APP.value,
                        "status": RecipientStatus.DELIVERED.value,
                        "batch": batch,
                        "target": f"inbox:{user_id}",
                        "provider_message_id": str(item_id),
                        "error": None,
                        "updated_at": now,
                    }
                    for user_id, item_id in ids.items()
                ],
            )
        return ids
