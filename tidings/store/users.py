"""Users, their devices and their channel preferences."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any, cast

from sqlalchemy import Select, bindparam, delete, select, update

from tidings.models import Device, NotificationStatus, Platform, Preferences, User
from tidings.store.base import IN_CHUNK, StoreBase, check_limit, rowcount, utcnow
from tidings.store.tables import (
    DeliveryRow,
    DeviceRow,
    DigestEventRow,
    EngagementRow,
    InboxEventRow,
    InboxRow,
    LedgerRow,
    NotificationRow,
    PreferencesRow,
    UserRow,
)

ERASED = "(erased)"

# Every notification's front door reads its user: a Core select built once (an ORM lookup
# built per call cost more CPU than the query).
_USERS = cast(Any, UserRow.__table__)
USER_BY_ID = select(*_USERS.c).where(_USERS.c.id == bindparam("user_id"))


def _token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _user(row: UserRow) -> User:
    return User.model_validate(
        {
            "id": row.id,
            "email": row.email,
            "phone": row.phone,
            "timezone": row.timezone,
            "locale": row.locale,
            "webhook_url": row.webhook_url,
            "webhook_urls": row.webhook_urls,
            "slack_webhook_url": row.slack_webhook_url,
            "slack_user_id": row.slack_user_id,
            "attributes": row.attributes,
        }
    )


def _device(row: DeviceRow) -> Device:
    return Device(
        user_id=row.user_id, platform=Platform(row.platform), token=row.token, label=row.label
    )


def _preferences(row: PreferencesRow) -> Preferences:
    return Preferences.model_validate(
        {
            "user_id": row.user_id,
            "channels": row.channels,
            "categories": row.categories,
            "templates": row.templates,
            "quiet_hours": row.quiet_hours,
        }
    )


def devices_of(user_id: str) -> Select[DeviceRow]:
    return (
        select(DeviceRow)
        .where(DeviceRow.user_id == user_id)
        .order_by(DeviceRow.created_at, DeviceRow.platform, DeviceRow.token_sha256)
    )


class UsersMixin(StoreBase):
    async def upsert_user(self, user: User) -> User:
        now = utcnow()
        values = {
            "email": str(user.email) if user.email else None,
            "phone": user.phone,
            "timezone": user.timezone,
            "locale": user.locale,
            "webhook_url": str(user.webhook_url) if user.webhook_url else None,
            "webhook_urls": [str(u) for u in user.webhook_urls],
            "slack_webhook_url": str(user.slack_webhook_url) if user.slack_webhook_url else None,
            "slack_user_id": user.slack_user_id,
            "attributes": user.attributes,
            "updated_at": now,
        }
        stmt = self._insert(UserRow).values(id=user.id, created_at=now, **values)
        stmt = stmt.on_conflict_do_update(index_elements=["id"], set_=values)
        async with self._write() as session:
            await session.execute(stmt)
            row = await session.get_one(UserRow, user.id, populate_existing=True)
            return _user(row)

    async def get_user(self, user_id: str) -> User | None:
        async with self._read_one() as conn:
            row = (await conn.execute(USER_BY_ID, {"user_id": user_id})).one_or_none()
            return None if row is None else _user(cast(UserRow, row))

    async def get_users(self, user_ids: Sequence[str]) -> dict[str, User]:
        """The users among `user_ids` that exist, by id: one read for a whole bulk (in chunks
        under the drivers' bound on bound parameters)."""
        wanted = list(dict.fromkeys(user_ids))
        found: dict[str, User] = {}
        async with self._read() as session:
            for start in range(0, len(wanted), IN_CHUNK):
                chunk = wanted[start : start + IN_CHUNK]
                rows = await session.scalars(select(UserRow).where(UserRow.id.in_(chunk)))
                found.update((row.id, _user(row)) for row in rows)
        return found

    async def list_users(self, *, limit: int = 100, offset: int = 0) -> list[User]:
        check_limit(limit, offset)
        stmt = select(UserRow).order_by(UserRow.id).limit(limit).offset(offset)
        async with self._read() as session:
            return [_user(row) for row in (await session.scalars(stmt)).all()]

    async def add_device(self, device: Device) -> Device:
        """Idempotent on (platform, token). A token registered again by another user moves to
        that user: a phone that changes hands must stop receiving the old owner's pushes."""
        now = utcnow()
        digest = _token_digest(device.token)
        values = {"user_id": device.user_id, "label": device.label, "updated_at": now}
        stmt = self._insert(DeviceRow).values(
            platform=device.platform.value,
            token_sha256=digest,
            token=device.token,
            created_at=now,
            **values,
        )
        stmt = stmt.on_conflict_do_update(index_elements=["platform", "token_sha256"], set_=values)
        async with self._write() as session:
            if await session.get(UserRow, device.user_id) is None:
                raise LookupError(f"user {device.user_id} not found")
            await session.execute(stmt)
            row = await session.get_one(
                DeviceRow, (device.platform.value, digest), populate_existing=True
            )
            return _device(row)

    async def list_devices(self, user_id: str) -> list[Device]:
        stmt = devices_of(user_id)
        async with self._read() as session:
            return [_device(row) for row in (await session.scalars(stmt)).all()]

    async def remove_device(self, platform: Platform, token: str) -> bool:
        stmt = delete(DeviceRow).where(
            DeviceRow.platform == Platform(platform).value,
            DeviceRow.token_sha256 == _token_digest(token),
        )
        async with self._write() as session:
            return rowcount(await session.execute(stmt)) > 0

    async def set_preferences(self, prefs: Preferences) -> Preferences:
        dumped = prefs.model_dump(mode="json")
        values = {
            "channels": dumped["channels"],
            "categories": dumped["categories"],
            "templates": dumped["templates"],
            "quiet_hours": dumped["quiet_hours"],
            "updated_at": utcnow(),
        }
        stmt = self._insert(PreferencesRow).values(user_id=prefs.user_id, **values)
        stmt = stmt.on_conflict_do_update(index_elements=["user_id"], set_=values)
        async with self._write() as session:
            if await session.get(UserRow, prefs.user_id) is None:
                raise LookupError(f"user {prefs.user_id} not found")
            await session.execute(stmt)
            row = await session.get_one(PreferencesRow, prefs.user_id, populate_existing=True)
            return _preferences(row)

    async def get_preferences(self, user_id: str) -> Preferences:
        """Stored preferences, or the defaults (every channel on, no quiet hours)."""
        async with self._read() as session:
            row = await session.get(PreferencesRow, user_id)
            return Preferences(user_id=user_id) if row is None else _preferences(row)


class ErasureMixin(StoreBase):
    async def pending_notification_ids(self, user_id: str) -> list[str]:
        """The user's notifications that have not been sent yet (scheduled or sending)."""
        pending = [NotificationStatus.SCHEDULED.value, NotificationStatus.SENDING.value]
        stmt = select(NotificationRow.id).where(
            NotificationRow.user_id == user_id, NotificationRow.status.in_(pending)
        )
        async with self._read() as session:
            return list((await session.scalars(stmt)).all())

    async def erase_user(self, user_id: str) -> bool:
        """Remove the user's personal data in one transaction: the user (devices and preferences
        go with it), their inbox, and the addresses and engagement details recorded with their
        notifications. Counts and statuses stay, keyed by the (opaque) user id."""
        mine = select(NotificationRow.id).where(NotificationRow.user_id == user_id)
        async with self._write() as session:
            existed = await session.get(UserRow, user_id) is not None
            await session.execute(delete(InboxRow).where(InboxRow.user_id == user_id))
            # The inbox stream's log repeats item titles and bodies.
            await session.execute(delete(InboxEventRow).where(InboxEventRow.user_id == user_id))
            await session.execute(
                update(DeliveryRow)
                .where(DeliveryRow.notification_id.in_(mine))
                .values(target=ERASED)
            )
            await session.execute(
                update(LedgerRow).where(LedgerRow.notification_id.in_(mine)).values(target=ERASED)
            )
            await session.execute(
                update(EngagementRow).where(EngagementRow.notification_id.in_(mine)).values(meta={})
            )
            await session.execute(delete(DeviceRow).where(DeviceRow.user_id == user_id))
            # A digest's events carry app data about the user.
            await session.execute(delete(DigestEventRow).where(DigestEventRow.user_id == user_id))
            await session.execute(delete(PreferencesRow).where(PreferencesRow.user_id == user_id))
            await session.execute(delete(UserRow).where(UserRow.id == user_id))
            return existed
