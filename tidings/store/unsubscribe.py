"""Switching one category of notifications off for one user (the one-click unsubscribe)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, update

from tidings.models import Channel, Preferences
from tidings.store.base import StoreBase, utcnow
from tidings.store.tables import PreferencesRow, TemplateRow, UserRow
from tidings.store.users import _preferences


class UnknownCategory(LookupError):
    """No template, in any version, has this category."""


@dataclass(frozen=True)
class CategoryOff:
    preferences: Preferences
    changed: bool  # False when the category was off on every channel already


class UnsubscribeMixin(StoreBase):
    async def has_category(self, category: str) -> bool:
        """Whether any template, in any version, has this category."""
        async with self._read() as session:
            stmt = select(TemplateRow.id).where(TemplateRow.category == category).limit(1)
            return await session.scalar(stmt) is not None

    async def switch_off_category(self, user_id: str, category: str) -> CategoryOff:
        """Every channel of `category` off in the user's preferences, in one transaction (the
        row is locked, so two unsubscribes at once both land). LookupError for an unknown user,
        UnknownCategory for a category no template has; nothing changes then."""
        empty: dict[str, Any] = {
            "channels": {},
            "categories": {},
            "templates": {},
            "quiet_hours": None,
        }
        async with self._write() as session:
            if await session.get(UserRow, user_id) is None:
                raise LookupError(f"user {user_id} not found")
            known = await session.scalar(
                select(TemplateRow.id).where(TemplateRow.category == category).limit(1)
            )
            if known is None:
                raise UnknownCategory(f"no template has category {category!r}")
            await session.execute(
                self._insert(PreferencesRow)
                .values(user_id=user_id, updated_at=utcnow(), **empty)
                .on_conflict_do_nothing(index_elements=["user_id"])
            )
            row = await session.scalar(
                select(PreferencesRow).where(PreferencesRow.user_id == user_id).with_for_update()
            )
            if row is None:  # inserted above, and users are not deleted under a lock
                raise LookupError(f"user {user_id} not found")
            categories = dict(row.categories)
            off = {channel.value: False for channel in Channel}
            changed = categories.get(category) != off
            if changed:
                categories[category] = off
                await session.execute(
                    update(PreferencesRow)
                    .where(PreferencesRow.user_id == user_id)
                    .values(categories=categories, updated_at=utcnow())
                )
                row = await session.get_one(PreferencesRow, user_id, populate_existing=True)
            return CategoryOff(_preferences(row), changed)
