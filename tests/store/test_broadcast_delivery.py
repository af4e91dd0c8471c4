"""Planning reads and in-app delivery of a broadcast page on SQLite and PostgreSQL: the
unvalidated users planning reads carry what routing needs, and the in-app batch renders once per
locale yet gives every recipient the message in their own language."""

from __future__ import annotations

from datetime import UTC, datetime

from tidings import broadcasts
from tidings.broadcast_models import AllUsersAudience, RecipientStatus
from tidings.channels.in_app import InAppSender
from tidings.models import Channel, Priority, TemplateContent, TemplateDefinition, User
from tidings.store import Store

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


async def test_planning_users_match_the_validated_ones(store: Store) -> None:
    await store.upsert_user(
        User(
            id="p1",
            email="p1@example.com",
            timezone="Europe/Paris",
            locale="fr",
            webhook_url="https://hooks.example.com/p1",
            slack_user_id="U123",
        )
    )
    await store.upsert_user(User(id="p2"))
    reads = await store.page_reads(["p1", "p2"], category=None, since=T0)
    full = await store.users_by_id(["p1", "p2"])
    for user in reads.users:
        validated = full[user.id]
        assert user.email == validated.email
        assert (user.timezone, user.locale, user.phone) == (
            validated.timezone,
            validated.locale,
            validated.phone,
        )
        assert bool(user.webhook_endpoints) == bool(validated.webhook_endpoints)
        assert user.slack_user_id == validated.slack_user_id
    [no_prefs] = broadcasts.recipients_from(reads, caps_apply=False)[1:]
    assert no_prefs.preferences.channels == {} and no_prefs.preferences.quiet_hours is None


async def test_in_app_batch_renders_each_locale(store: Store) -> None:
    for user_id, locale in (("a1", "en"), ("a2", "fr"), ("a3", "fr"), ("a4", "de")):
        await store.upsert_user(User(id=user_id, locale=locale))
    template = await store.add_template_version(
        TemplateDefinition(
            id="hello",
            channels=[Channel.IN_APP],
            content=TemplateContent(subject="Hello {{ n }}", text="News {{ n }}"),
            locales={"fr": TemplateContent(subject="Bonjour {{ n }}", text="Nouvelles {{ n }}")},
        )
    )
    await store.create_broadcast(
        broadcast_id="bl",
        template_id="hello",
        template_version=template.version,
        audience=AllUsersAudience(),
        channels=[Channel.IN_APP],
        priority=Priority.MEDIUM,
    )
    reached: list[int] = []

    async def on_progress(index: int) -> None:
        reached.append(index)

    result = await broadcasts.deliver_batch(
        store,
        InAppSender(store),
        broadcasts.BatchRequest(
            broadcast_id="bl",
            channel=Channel.IN_APP,
            batch=0,
            user_ids=["a1", "a2", "a3", "a4", "gone"],
            template_id="hello",
            template_version=template.version,
            data={"n": 7},
        ),
        limiter=broadcasts.RateLimiter(None),
        on_progress=on_progress,
    )
    assert (result.sent, result.failed) == (4, 1)
    titles = {u: [i.title for i in await store.list_inbox(u)] for u in ("a1", "a2", "a3", "a4")}
    assert titles == {
        "a1": ["Hello 7"],
        "a2": ["Bonjour 7"],
        "a3": ["Bonjour 7"],
        "a4": ["Hello 7"],
    }
    statuses = {r.user_id: r.status for r in await store.broadcast_recipients("bl")}
    assert statuses["gone"] is RecipientStatus.FAILED
    assert reached[-1] == 5
