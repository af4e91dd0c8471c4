"""What the send path (tidings.delivery) hands each channel when tracking is on: SMS and Slack
text links and the push link become click links naming their channel, webhook and in-app are
sent as rendered, `tracking: false` and a missing public URL leave every link alone; emails
carry the unsubscribe URL, except CRITICAL ones."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest

from tests.fakes import RecordingSender
from tidings import tracking, unsubscribe
from tidings.delivery import SendRequest, send
from tidings.models import (
    Channel,
    Device,
    EngagementType,
    Platform,
    Priority,
    TemplateContent,
    TemplateDefinition,
    User,
)
from tidings.settings import Settings
from tidings.store import Store

NOW = datetime(2026, 3, 4, 12, 0, tzinfo=UTC)
BASE = "https://t.example"
SETTINGS = Settings(_env_file=None, tracking_secret="s3cret", public_base_url=BASE)
TRACKED = re.compile(r"https://t\.example/t/[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")
LINK = "https://shop.example/o/42"
ALL = [Channel.EMAIL, Channel.SMS, Channel.SLACK, Channel.PUSH, Channel.WEBHOOK, Channel.IN_APP]


def _template(template_id: str, *, tracking_on: bool = True) -> TemplateDefinition:
    return TemplateDefinition(
        id=template_id,
        category="orders",
        channels=ALL,
        tracking=tracking_on,
        content=TemplateContent(
            subject="Order",
            text="See {{ url }} or <{{ url }}|the order>. Keep {{ url | untracked }}",
            html='<a href="{{ url }}">order</a><a href="{{ unsubscribe_url }}">stop</a>',
        ),
        sample_data={"url": LINK},
    )


@pytest.fixture
async def store(sqlite_store: Store) -> Store:
    await sqlite_store.upsert_user(
        User(id="ada", email="ada@example.com", phone="+14155550100", slack_user_id="U123")
    )
    await sqlite_store.add_device(Device(user_id="ada", platform=Platform.FCM, token="tok-1234567"))
    await sqlite_store.add_template_version(_template("tracked"))
    await sqlite_store.add_template_version(_template("plain", tracking_on=False))
    return sqlite_store


async def _sent(
    store: Store,
    channel: Channel,
    *,
    template_id: str = "tracked",
    settings: Settings = SETTINGS,
    priority: Priority = Priority.MEDIUM,
) -> RecordingSender:
    sender = RecordingSender(channel=channel)
    request = SendRequest(
        notification_id=f"n-{channel.value}-{template_id}-{priority.value}",
        channel=channel,
        user_id="ada",
        template_id=template_id,
        template_version=1,
        data={"url": LINK},
        priority=priority,
    )
    await send(store, {channel: sender}, request, now=lambda: NOW, settings=settings)
    return sender


def _action(link: str) -> tracking.TrackedAction:
    return tracking.verify("s3cret", link.rsplit("/", 1)[1])


@pytest.mark.parametrize("channel", [Channel.SMS, Channel.SLACK])
async def test_sms_and_slack_text_links_are_tracked_on_their_channel(
    store: Store, channel: Channel
) -> None:
    [out] = (await _sent(store, channel)).sent
    text = out.message.text
    links = TRACKED.findall(text)
    assert len(links) == 2 and text.endswith(f"Keep {LINK}")
    for link in links:
        action = _action(link)
        assert (action.url, action.channel, action.type) == (LINK, channel, EngagementType.CLICKED)
    assert re.search(r"<https://t\.example/t/\S+\|the order>", text)
    assert tracking.MARK_OPEN not in text and out.link is None and out.unsubscribe_url is None


async def test_push_gets_a_tracked_link_and_an_untouched_body(store: Store) -> None:
    [out] = (await _sent(store, Channel.PUSH)).sent
    assert out.link is not None and _action(out.link).channel is Channel.PUSH
    assert _action(out.link).url == LINK
    assert TRACKED.search(out.message.text) is None and LINK in out.message.text


@pytest.mark.parametrize("channel", [Channel.WEBHOOK, Channel.IN_APP])
async def test_webhook_and_in_app_are_sent_as_rendered(store: Store, channel: Channel) -> None:
    [out] = (await _sent(store, channel)).sent
    assert TRACKED.search(out.message.text) is None
    assert out.message.text == f"See {LINK} or <{LINK}|the order>. Keep {LINK}"


@pytest.mark.parametrize(
    ("template_id", "settings"),
    [("plain", SETTINGS), ("tracked", Settings(_env_file=None, tracking_secret="s3cret"))],
)
async def test_tracking_off_or_no_public_url_leaves_every_link_alone(
    store: Store, template_id: str, settings: Settings
) -> None:
    for channel in (Channel.SMS, Channel.SLACK, Channel.PUSH, Channel.EMAIL):
        [out] = (await _sent(store, channel, template_id=template_id, settings=settings)).sent
        text = out.message.text + (out.message.html or "")
        assert TRACKED.search(text) is None and tracking.MARK_OPEN not in text
        if channel is Channel.PUSH:
            assert out.link == LINK


async def test_email_is_tracked_and_carries_the_unsubscribe_url(store: Store) -> None:
    [out] = (await _sent(store, Channel.EMAIL)).sent
    html = out.message.html or ""
    click, pixel = TRACKED.findall(html)
    assert _action(click).url == LINK and _action(pixel).type is EngagementType.OPENED
    assert out.unsubscribe_url is not None
    assert f'href="{out.unsubscribe_url}"' in html  # the variable, not a tracked copy
    token = out.unsubscribe_url.removeprefix(f"{BASE}/u/")
    assert unsubscribe.verify("s3cret", token) == unsubscribe.Unsubscription("ada", "orders")


async def test_critical_email_has_no_unsubscribe_url(store: Store) -> None:
    [out] = (await _sent(store, Channel.EMAIL, priority=Priority.CRITICAL)).sent
    assert out.unsubscribe_url is None
    assert '<a href="">stop</a>' in (out.message.html or "")
