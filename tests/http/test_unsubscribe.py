"""One-click unsubscribe end to end: the List-Unsubscribe headers as the SMTP sink received
them, the `unsubscribe_url` template variable, GET (a page, nothing changes) and POST /u/
(the category off, idempotently), CRITICAL mail without either, and refused tokens."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from temporalio.testing import WorkflowEnvironment

from starter.dev.maildir import ReceivedMail
from tests.http.helpers import api, error_of
from tests.support import Stack, running_stack
from tidings import tracking, unsubscribe
from tidings.models import Channel, DeliveryStatus, EngagementType, Preferences
from tidings.tracking import TrackedAction

BASE = "http://test"  # the in-process app's base URL (tests.http.helpers.api)
ONE_CLICK = {"List-Unsubscribe": "One-Click"}
OFF = {channel: False for channel in Channel}


@pytest_asyncio.fixture(loop_scope="session")
async def stack(time_env: WorkflowEnvironment, tmp_path: Path) -> AsyncIterator[Stack]:
    async with running_stack(time_env.client, tmp_path, public_base_url=BASE) as s:
        await s.seed()
        await s.tidings.register_template(
            {
                "id": "digest",
                "category": "news",
                "channels": ["email"],
                "content": {
                    "subject": "News",
                    "text": "Read https://news.example/1. Stop: {{ unsubscribe_url }}",
                    "html": '<a href="https://news.example/1">read</a>'
                    '<a href="{{ unsubscribe_url }}">stop</a>',
                },
            }
        )
        await s.tidings.register_template(
            {
                "id": "breach",
                "category": "news",
                "channels": ["email"],
                "default_priority": "critical",
                "content": {"subject": "Breach", "text": "[{{ unsubscribe_url }}]"},
            }
        )
        yield s


@pytest_asyncio.fixture(loop_scope="session")
async def client(stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    async with api(stack.tidings) as c:
        yield c


async def _mail(stack: Stack, user_id: str, template_id: str) -> tuple[str, ReceivedMail]:
    before = len(stack.sink.messages)
    ref = await stack.tidings.notify(user_id=user_id, template_id=template_id)
    await stack.tidings.wait_sent(ref.notification_id)
    return ref.notification_id, stack.sink.messages[before]


async def test_email_carries_one_click_headers_and_the_same_url_in_the_body(
    stack: Stack, client: httpx.AsyncClient
) -> None:
    await stack.add_user("reader_1")
    _, mail = await _mail(stack, "reader_1", "digest")
    parsed = mail.parsed()
    header = str(parsed["List-Unsubscribe"])
    assert header.startswith(f"<{BASE}/u/") and header.endswith(">")
    assert str(parsed["List-Unsubscribe-Post"]) == "List-Unsubscribe=One-Click"
    url = header[1:-1]
    token = url.rsplit("/", 1)[1]
    assert unsubscribe.verify(stack.settings.tracking_secret.get_secret_value(), token) == (
        unsubscribe.Unsubscription("reader_1", "news")
    )
    # The variable is the same URL, never wrapped in a tracking link; other links are.
    text, html_part = mail.body("plain") or "", mail.body("html") or ""
    assert text.endswith(f"Stop: {url}\n") or text.endswith(f"Stop: {url}")
    assert f'href="{url}"' in html_part
    assert "https://news.example/1" not in text + html_part

    # GET shows a page with a button and changes nothing: mail scanners prefetch links.
    page = await client.get(url)
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert 'method="post"' in page.text and 'value="One-Click"' in page.text
    assert (await stack.tidings.get_preferences("reader_1")).categories == {}

    # The mail provider's one-click POST (RFC 8058: multipart SHOULD, urlencoded MAY), then
    # again: the same answer.
    multipart = {"files": {"List-Unsubscribe": (None, "One-Click")}}
    for body in (multipart, {"data": ONE_CLICK}):
        done = await client.post(url, headers={"Authorization": ""}, **body)
        assert done.status_code == 200 and "Unsubscribed" in done.text
        prefs = await stack.tidings.get_preferences("reader_1")
        assert prefs.categories == {"news": OFF}

    # The next notification of the category is suppressed; other categories still arrive.
    ref = await stack.tidings.notify(user_id="reader_1", template_id="digest")
    result = await stack.tidings.wait_sent(ref.notification_id)
    assert [c.status for c in result.channels] == [DeliveryStatus.SUPPRESSED]


async def test_unsubscribing_keeps_the_users_other_preferences(stack: Stack) -> None:
    await stack.add_user("reader_2")
    await stack.tidings.set_preferences(
        Preferences(
            user_id="reader_2",
            channels={Channel.SMS: False},
            categories={"onboarding": {Channel.PUSH: False}},
        )
    )
    first = await stack.tidings.unsubscribe("reader_2", "news")
    again = await stack.tidings.unsubscribe("reader_2", "news")
    assert first.changed is True and again.changed is False
    prefs = await stack.tidings.get_preferences("reader_2")
    assert prefs.channels == {Channel.SMS: False}
    assert prefs.categories == {"onboarding": {Channel.PUSH: False}, "news": OFF}


async def test_critical_mail_has_no_unsubscribe_header_and_an_empty_variable(
    stack: Stack,
) -> None:
    await stack.add_user("reader_3")
    _, mail = await _mail(stack, "reader_3", "breach")
    parsed = mail.parsed()
    assert parsed["List-Unsubscribe"] is None and parsed["List-Unsubscribe-Post"] is None
    assert (mail.body("plain") or "").strip() == "[]"


async def test_tampered_foreign_and_misused_tokens_change_nothing(
    stack: Stack, client: httpx.AsyncClient
) -> None:
    await stack.add_user("reader_4")
    secret = stack.settings.tracking_secret.get_secret_value()
    good = unsubscribe.sign(secret, "reader_4", "news")
    payload, signature = good.split(".")
    other = unsubscribe.sign(secret, "reader_9", "news").split(".")[0]
    click = tracking.sign(
        secret,
        TrackedAction(
            "n-1",
            EngagementType.CLICKED,
            "https://e.example/",
            tracking.expiry(stack.settings),
            Channel.EMAIL,
        ),
    )
    for bad in (
        f"{other}.{signature}",  # another user's payload under this signature
        unsubscribe.sign("another-secret", "reader_4", "news"),
        click,  # a tracking token is not an unsubscribe token
        payload,
        f"{payload}.!!!",
        "x" * 2000,
    ):
        for method in ("GET", "POST"):
            r = await client.request(method, f"/u/{bad}", data=ONE_CLICK)
            assert error_of(r, 400, "invalid_request")["field"] == "token", bad
    # A good token with a wrong body: not the one-click POST.
    wrong: list[dict[str, Any]] = [
        {},
        {"data": {"List-Unsubscribe": "yes"}},
        {"content": b"List-Unsubscribe=One-Click", "headers": {"content-type": "text/plain"}},
        {"content": b"--x\r\ngarbage", "headers": {"content-type": "multipart/form-data"}},
    ]
    for body in wrong:
        r = await client.post(f"/u/{good}", **body)
        assert error_of(r, 400, "invalid_request")["field"] == "List-Unsubscribe"
    assert (await stack.tidings.get_preferences("reader_4")).categories == {}


@pytest.mark.parametrize(
    ("user_id", "category", "kind"),
    [("nobody", "news", "user"), ("reader_5", "no_such_category", "category")],
)
async def test_unknown_user_or_category_is_404_and_nothing_changes(
    stack: Stack, client: httpx.AsyncClient, user_id: str, category: str, kind: str
) -> None:
    await stack.add_user("reader_5")
    token = unsubscribe.sign(stack.settings.tracking_secret.get_secret_value(), user_id, category)
    for method in ("GET", "POST"):
        r = await client.request(method, f"/u/{token}", data=ONE_CLICK)
        assert kind in error_of(r, 404, "not_found")["reason"]
    assert (await stack.tidings.get_preferences("reader_5")).categories == {}
    assert await stack.store.get_user("nobody") is None
