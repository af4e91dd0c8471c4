"""Email tracking end to end: a message sent through the real SMTP sink by a stack whose
public_base_url is the HTTP app carries click links and an open pixel; following a link
through the app redirects to the original URL and records one `clicked` however many times."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest_asyncio
from temporalio.testing import WorkflowEnvironment

from tests.http.helpers import api, eventually
from tests.support import Stack, running_stack
from tidings import tracking
from tidings.models import Channel, EngagementType

BASE = "http://test"  # the in-process app's base URL (tests.http.helpers.api)
TARGET = "https://example.com/orders/42?ref=mail&x=1"


@pytest_asyncio.fixture(loop_scope="session")
async def stack(time_env: WorkflowEnvironment, tmp_path: Path) -> AsyncIterator[Stack]:
    async with running_stack(time_env.client, tmp_path, public_base_url=BASE) as s:
        await s.seed()
        yield s


@pytest_asyncio.fixture(loop_scope="session")
async def client(stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    async with api(stack.tidings) as c:
        yield c


async def test_a_sent_emails_link_redirects_and_counts_one_click(
    client: httpx.AsyncClient, stack: Stack
) -> None:
    await stack.tidings.register_template(
        {
            "id": "order_link",
            "channels": ["email"],
            "content": {
                "subject": "Your order",
                "text": "See " + TARGET,
                "html": '<p><a href="' + TARGET.replace("&", "&amp;") + '">your order</a></p>',
            },
        }
    )
    ref = await stack.tidings.notify(user_id="user_001", template_id="order_link")
    await stack.tidings.wait_sent(ref.notification_id)
    assert len(stack.sink.messages) == 1
    mail = stack.sink.messages[0]
    html_part, text_part = mail.body("html"), mail.body("plain")
    assert html_part is not None and text_part is not None
    assert TARGET not in html_part and TARGET not in text_part  # every link is tracked
    links = re.findall(r'href="([^"]+)"', html_part)
    pixels = re.findall(r'<img src="([^"]+)"', html_part)
    assert len(links) == 1 and links[0].startswith(f"{BASE}/t/")
    assert len(pixels) == 1 and pixels[0].startswith(f"{BASE}/t/")
    assert re.findall(rf"{BASE}/t/\S+", text_part)

    for _ in range(3):
        r = await client.get(links[0])
        assert r.status_code == 302 and r.headers["location"] == TARGET
    pixel = await client.get(pixels[0])
    assert pixel.status_code == 200 and pixel.headers["content-type"] == "image/gif"

    async def recorded() -> bool:
        stored = await stack.store.get_notification(ref.notification_id)
        kinds = sorted(e.type for e in stored.engagement) if stored else []
        return kinds == [EngagementType.CLICKED, EngagementType.OPENED]

    await eventually(recorded)
    await asyncio.sleep(0.3)  # a repeat that would be recorded has been by now
    stored = await stack.store.get_notification(ref.notification_id)
    assert stored is not None
    clicks = [e for e in stored.engagement if e.type is EngagementType.CLICKED]
    assert len(clicks) == 1 and clicks[0].metadata == {"url": TARGET}
    assert {e.channel for e in stored.engagement} == {Channel.EMAIL}

    # The same URL sent by SMS is another link: its click is recorded on channel sms.
    sms_link = tracking.make_tracking_link(
        stack.settings, BASE, ref.notification_id, TARGET, channel=Channel.SMS
    )
    for _ in range(2):
        r = await client.get(sms_link)
        assert r.status_code == 302 and r.headers["location"] == TARGET

    async def sms_recorded() -> bool:
        stored = await stack.store.get_notification(ref.notification_id)
        return stored is not None and any(e.channel is Channel.SMS for e in stored.engagement)

    await eventually(sms_recorded)
    await asyncio.sleep(0.3)
    stored = await stack.store.get_notification(ref.notification_id)
    assert stored is not None
    assert sorted((e.type, e.channel) for e in stored.engagement if e.channel) == [
        (EngagementType.CLICKED, Channel.EMAIL),
        (EngagementType.CLICKED, Channel.SMS),
        (EngagementType.OPENED, Channel.EMAIL),
    ]


async def test_without_a_public_base_url_links_are_left_alone(
    time_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    async with running_stack(time_env.client, tmp_path) as plain:
        await plain.seed()
        await plain.tidings.register_template(
            {
                "id": "plain_link",
                "channels": ["email"],
                "content": {"subject": "Hi", "text": "See " + TARGET},
            }
        )
        ref = await plain.tidings.notify(user_id="user_001", template_id="plain_link")
        await plain.tidings.wait_sent(ref.notification_id)
        assert TARGET in (plain.sink.messages[0].body("plain") or "")


async def test_a_template_may_turn_tracking_off(stack: Stack) -> None:
    template = await stack.tidings.register_template(
        {
            "id": "untracked",
            "channels": ["email"],
            "tracking": False,
            "content": {"subject": "Hi", "text": "See " + TARGET, "html": "<p>" + TARGET},
        }
    )
    assert template.tracking is False  # stored, and read back
    before = len(stack.sink.messages)
    ref = await stack.tidings.notify(user_id="user_001", template_id="untracked")
    await stack.tidings.wait_sent(ref.notification_id)
    mail = stack.sink.messages[before]
    assert TARGET in (mail.body("plain") or "")
    html_part = mail.body("html") or ""
    assert "/t/" not in html_part and "<img" not in html_part
