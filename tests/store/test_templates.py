from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import event

from tidings.models import Channel, Priority, TemplateContent, TemplateDefinition, User
from tidings.store import Store


def definition(subject: str = "Hello {{ name }}", **overrides: object) -> TemplateDefinition:
    fields: dict[str, object] = {
        "id": "welcome",
        "name": "Welcome",
        "category": "onboarding",
        "channels": [Channel.EMAIL, Channel.IN_APP],
        "default_priority": Priority.HIGH,
        "content": TemplateContent(subject=subject, text="Hi {{ name }}", html="<p>Hi</p>"),
        "locales": {"fr": TemplateContent(subject="Bonjour {{ name }}", text="Salut")},
        "sample_data": {"name": "Ada", "items": [1, 2], "nested": {"a": None}},
        **overrides,
    }
    return TemplateDefinition.model_validate(fields)


async def test_first_registration_is_version_1_and_round_trips(store: Store) -> None:
    template = await store.add_template_version(definition())
    assert template.version == 1
    assert template.created_at is not None and template.created_at.tzinfo is not None
    fetched = await store.get_template("welcome")
    assert fetched == template
    assert (
        TemplateDefinition.model_validate(fetched.model_dump(exclude={"version", "created_at"}))
        == definition()
    )


async def test_identical_registration_returns_the_same_version(store: Store) -> None:
    first = await store.add_template_version(definition())
    again = await store.add_template_version(definition())
    assert again == first
    assert again.version == 1


async def test_a_change_makes_a_new_version_and_the_old_stays_readable(store: Store) -> None:
    v1 = await store.add_template_version(definition())
    v2 = await store.add_template_version(definition(subject="Welcome aboard, {{ name }}"))
    assert v2.version == 2
    assert (await store.get_template("welcome")) == v2
    pinned = await store.get_template("welcome", 1)
    assert pinned == v1
    assert pinned is not None and pinned.content.subject == "Hello {{ name }}"
    # Going back to the first content is a change from the latest, so it is version 3.
    v3 = await store.add_template_version(definition())
    assert v3.version == 3
    assert await store.get_template("welcome", 4) is None
    assert await store.get_template("nope") is None


async def test_user_and_template_reads_the_latest_version_and_either_may_be_missing(
    store: Store,
) -> None:
    await store.add_template_version(definition())
    v2 = await store.add_template_version(definition(subject="Welcome aboard, {{ name }}"))
    ada = await store.upsert_user(User(id="ada", email="ada@example.com"))
    assert await store.user_and_template("ada", "welcome") == (ada, v2)
    assert await store.user_and_template("nobody", "welcome") == (None, v2)
    assert await store.user_and_template("ada", "nope") == (ada, None)
    assert await store.user_and_template("nobody", "nope") == (None, None)


async def test_the_reads_every_notification_makes_are_lone_statements_on_sqlite(
    store: Store,
) -> None:
    """The front door's read and each delivery's read are one SELECT each, without a BEGIN of
    their own on SQLite (a lone statement reads one snapshot); the plan's two statements still
    share a transaction."""
    await store.add_template_version(definition())
    await store.upsert_user(User(id="ada", email="ada@example.com"))
    sent: list[str] = []

    def log(_c: Any, _cur: Any, statement: str, *_: Any) -> None:
        sent.append(statement.split()[0].upper())

    event.listen(store.engine.sync_engine, "before_cursor_execute", log)
    try:
        await store.user_and_template("ada", "welcome")
        await store.recipient_state("ada", ledger_key="n1:email")
        one_each = list(sent)
        sent.clear()
        since = datetime.now(UTC) - timedelta(days=1)
        await store.recipient_state("ada", preferences=True, engagement_since=since)
    finally:
        event.remove(store.engine.sync_engine, "before_cursor_execute", log)
    if store.engine.dialect.name == "sqlite":
        assert one_each == ["SELECT", "SELECT"]
        assert sent == ["BEGIN", "SELECT", "SELECT"]
    else:  # asyncpg begins on the driver, not by a statement
        assert one_each == ["SELECT", "SELECT"]


async def test_only_sample_data_changing_is_a_change(store: Store) -> None:
    await store.add_template_version(definition())
    changed = await store.add_template_version(definition(sample_data={"name": "Grace"}))
    assert changed.version == 2


async def test_list_templates_gives_the_latest_of_each(store: Store) -> None:
    await store.add_template_version(definition())
    await store.add_template_version(definition(subject="v2"))
    await store.add_template_version(definition(id="alert", channels=[Channel.SMS]))
    listed = await store.list_templates()
    assert [(t.id, t.version) for t in listed] == [("alert", 1), ("welcome", 2)]
    assert all(t.created_at is not None and t.created_at.tzinfo is UTC for t in listed)


async def test_concurrent_registrations_never_duplicate_a_version(store: Store) -> None:
    changes = [definition(subject=f"subject {i}") for i in range(6)]
    results = await asyncio.gather(*(store.add_template_version(d) for d in changes))
    assert sorted(t.version for t in results) == [1, 2, 3, 4, 5, 6]
    assert {t.content.subject for t in results} == {f"subject {i}" for i in range(6)}
    for t in results:
        assert await store.get_template("welcome", t.version) == t


async def test_concurrent_identical_registrations_make_one_version(store: Store) -> None:
    results = await asyncio.gather(*(store.add_template_version(definition()) for _ in range(5)))
    assert {t.version for t in results} == {1}
    assert (await store.get_template("welcome")) == results[0]
    assert await store.get_template("welcome", 2) is None


def test_bounded_cache_evicts_the_least_recently_used() -> None:
    from tidings.store.base import BoundedCache

    cache: BoundedCache[str, int] = BoundedCache(2)
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.get("a") == 1  # "a" is now the most recent
    cache.put("c", 3)
    assert (cache.get("a"), cache.get("b"), cache.get("c")) == (1, None, 3)
