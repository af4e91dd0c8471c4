"""Switching a category off (the one-click unsubscribe's write) on SQLite and PostgreSQL: other
switches kept, idempotent, concurrent unsubscribes all land, unknown user or category refused."""

from __future__ import annotations

import asyncio

import pytest

from tidings.models import Channel, Preferences, TemplateContent, TemplateDefinition, User
from tidings.store import Store
from tidings.store.unsubscribe import UnknownCategory

OFF = {channel: False for channel in Channel}
CATEGORIES = ("news", "tips", "offers", "digest")


async def _templates(store: Store) -> None:
    for category in CATEGORIES:
        await store.add_template_version(
            TemplateDefinition(
                id=f"t_{category}",
                category=category,
                channels=[Channel.EMAIL],
                content=TemplateContent(subject="s", text="t"),
            )
        )


async def test_switch_off_keeps_other_switches_and_is_idempotent(store: Store, user: User) -> None:
    await _templates(store)
    await store.set_preferences(
        Preferences(user_id=user.id, channels={Channel.SMS: False}, templates={"x": {}})
    )
    first = await store.switch_off_category(user.id, "news")
    again = await store.switch_off_category(user.id, "news")
    assert (first.changed, again.changed) == (True, False)
    prefs = await store.get_preferences(user.id)
    assert prefs.categories == {"news": OFF} and prefs.channels == {Channel.SMS: False}


async def test_concurrent_unsubscribes_without_stored_preferences_all_land(
    store: Store, user: User
) -> None:
    await _templates(store)
    await asyncio.gather(*(store.switch_off_category(user.id, c) for c in CATEGORIES))
    prefs = await store.get_preferences(user.id)
    assert prefs.categories == {c: OFF for c in CATEGORIES}


async def test_unknown_user_or_category_changes_nothing(store: Store, user: User) -> None:
    await _templates(store)
    assert await store.has_category("news") and not await store.has_category("nothing_has_this")
    with pytest.raises(UnknownCategory):
        await store.switch_off_category(user.id, "nothing_has_this")
    with pytest.raises(LookupError, match="user nobody"):
        await store.switch_off_category("nobody", "news")
    assert (await store.get_preferences(user.id)).categories == {}
    assert await store.get_user("nobody") is None
