"""Broadcasts' audience and planning reads: the audience in keyset pages (a list of ids, a saved
segment or everyone) and the bulk reads that plan a page, each a few queries for the whole page."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Row, func, select, type_coerce
from sqlalchemy.ext.asyncio import AsyncSession

from tidings.broadcast_models import (
    Audience,
    SegmentAudience,
    UnknownSegment,
    UserIdsAudience,
)
from tidings.models import Preferences, User
from tidings.store.base import check_limit
from tidings.store.frequency import first_sends
from tidings.store.segments import SegmentsMixin
from tidings.store.tables import (
    DeviceRow,
    PreferencesRow,
    UserRow,
    UTCDateTime,
)
from tidings.store.users import _preferences, _user


@dataclass
class PageReads:
    """What planning a page needs, read in four queries."""

    users: list[User]
    preferences: dict[str, Preferences]
    with_devices: set[str]
    recent: dict[str, tuple[int, datetime | None]]  # user -> sends in the category, earliest


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


class BroadcastAudienceMixin(SegmentsMixin):
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
