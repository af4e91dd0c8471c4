"""Slack over real HTTP against the Slack emulator: incoming webhooks and chat.postMessage."""

from __future__ import annotations

import ipaddress
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import pytest_asyncio

from starter.dev.emulators.slack import DEV_BOT_TOKEN, SlackEmulator
from tests.channels.helpers import make_settings
from tidings import targets
from tidings.channels.base import (
    OutgoingMessage,
    PermanentChannelError,
    RateLimitedError,
    TransientChannelError,
)
from tidings.channels.slack import HEADER_MAX, SECTION_MAX, SlackSender, blocks
from tidings.models import Channel, RenderedMessage, User

HOOK = "T0001/B0001/s3cr3t"


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def _slack() -> AsyncIterator[SlackEmulator]:
    async with SlackEmulator(port=0) as emulator:
        yield emulator


@pytest.fixture
def slack(_slack: SlackEmulator) -> SlackEmulator:
    _slack.reset()
    return _slack


@pytest_asyncio.fixture(loop_scope="session")
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as client:
        yield client


def sender_for(slack: SlackEmulator, http: httpx.AsyncClient, **overrides: Any) -> SlackSender:
    values: dict[str, Any] = {
        "slack_base_url": slack.url,
        "slack_bot_token": DEV_BOT_TOKEN,
        "slack_timeout_seconds": 2.0,
    }
    return SlackSender(make_settings(**(values | overrides)), http)


@pytest.fixture
def sender(slack: SlackEmulator, http: httpx.AsyncClient) -> SlackSender:
    return sender_for(slack, http)


def delivery(
    user: User, subject: str = "Deploy finished", text: str = "*prod* is on v42 <@here>"
) -> OutgoingMessage:
    return OutgoingMessage(
        notification_id="n-9",
        idempotency_key="n-9:slack",
        user=user,
        message=RenderedMessage(channel=Channel.SLACK, subject=subject, text=text),
    )


def webhook_user(slack: SlackEmulator, hook: str = HOOK) -> User:
    return User(id="u-1", slack_webhook_url=slack.webhook_url(hook))


def bot_user() -> User:
    return User(id="u-1", slack_user_id="U0123ABCD")


async def test_webhook_good_path_posts_block_kit(slack: SlackEmulator, sender: SlackSender) -> None:
    outcome = await sender.send(delivery(webhook_user(slack)))
    assert outcome.target == "http://127.0.0.1/services/T0001/…"  # the secret part is not kept
    (req,) = slack.received
    assert req.path == f"/services/{HOOK}"
    assert "authorization" not in req.headers
    assert req.json() == {
        "text": "Deploy finished\n*prod* is on v42 &lt;@here&gt;",
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": "Deploy finished"}},
            {
                "type": "section",
                "text": {"type": "mrkdwn", "text": "*prod* is on v42 &lt;@here&gt;"},
            },
        ],
        "unfurl_links": False,
    }


async def test_bot_token_posts_to_the_users_id(slack: SlackEmulator, sender: SlackSender) -> None:
    user = bot_user().model_copy(update={"slack_webhook_url": slack.webhook_url(HOOK)})
    outcome = await sender.send(delivery(user))
    (posted,) = slack.posted
    assert posted.via == "chat.postMessage" and posted.target == "U0123ABCD"
    assert outcome.target == "slack:U0123ABCD" and outcome.provider_message_id == posted.ts
    (req,) = slack.received
    assert req.headers["authorization"] == f"Bearer {DEV_BOT_TOKEN}"
    body = req.json()
    assert body["channel"] == "U0123ABCD" and body["blocks"][0]["type"] == "header"
    assert body["metadata"]["event_payload"] == {"notification_id": "n-9"}


async def test_slack_user_id_without_bot_token_falls_back_to_the_webhook(
    slack: SlackEmulator, http: httpx.AsyncClient
) -> None:
    sender = sender_for(slack, http, slack_bot_token=None)
    user = bot_user().model_copy(update={"slack_webhook_url": slack.webhook_url(HOOK)})
    await sender.send(delivery(user))
    assert slack.posted[0].via == "webhook"
    with pytest.raises(PermanentChannelError, match="no TIDINGS_SLACK_BOT_TOKEN"):
        await sender.send(delivery(bot_user()))


async def test_webhook_host_must_be_allowed(slack: SlackEmulator, http: httpx.AsyncClient) -> None:
    # Loopback (the emulator) only when allowed, as the dev stack and these tests do; else only
    # the hosts in TIDINGS_SLACK_WEBHOOK_HOSTS, and then only at public addresses.
    settings = make_settings(slack_bot_token=None, webhook_allowed_networks=[])
    sender = SlackSender(settings, http)
    with pytest.raises(PermanentChannelError, match="not an allowed Slack webhook host"):
        await sender.send(delivery(webhook_user(slack)))
    assert slack.received == []


@pytest.mark.parametrize(
    ("user", "error"),
    [("webhook", "404 no_service"), ("bot", "channel_not_found")],
)
async def test_unknown_destination_is_permanent(
    slack: SlackEmulator, sender: SlackSender, user: str, error: str
) -> None:
    slack.invalidate(HOOK if user == "webhook" else "U0123ABCD")
    target = webhook_user(slack) if user == "webhook" else bot_user()
    with pytest.raises(PermanentChannelError, match=error):
        await sender.send(delivery(target))


async def test_bad_bot_token_is_permanent(slack: SlackEmulator, http: httpx.AsyncClient) -> None:
    sender = sender_for(slack, http, slack_bot_token="xoxb-wrong")
    with pytest.raises(PermanentChannelError, match="invalid_auth"):
        await sender.send(delivery(bot_user()))


@pytest.mark.parametrize("user", ["webhook", "bot"])
async def test_429_is_rate_limited_with_retry_after(
    slack: SlackEmulator, sender: SlackSender, user: str
) -> None:
    slack.rate_limit_next(30)
    with pytest.raises(RateLimitedError) as info:
        await sender.send(delivery(webhook_user(slack) if user == "webhook" else bot_user()))
    assert info.value.retry_after == 30


async def test_ratelimited_error_in_an_ok_false_body_is_rate_limited(
    slack: SlackEmulator, sender: SlackSender
) -> None:
    slack.inject({"mode": "error", "error": "ratelimited"})
    with pytest.raises(RateLimitedError, match="ratelimited"):
        await sender.send(delivery(bot_user()))


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        ("not_in_channel", PermanentChannelError),
        ("account_inactive", PermanentChannelError),
        ("internal_error", TransientChannelError),
        ("fatal_error", TransientChannelError),
    ],
)
async def test_api_errors_are_classified(
    slack: SlackEmulator, sender: SlackSender, error: str, kind: type[Exception]
) -> None:
    slack.inject({"mode": "error", "error": error})
    with pytest.raises(kind, match=error) as info:
        await sender.send(delivery(bot_user()))
    assert not isinstance(info.value, RateLimitedError)
    if kind is TransientChannelError:
        assert not isinstance(info.value, PermanentChannelError)


@pytest.mark.parametrize("user", ["webhook", "bot"])
async def test_5xx_is_transient(slack: SlackEmulator, sender: SlackSender, user: str) -> None:
    slack.fail_next()
    with pytest.raises(TransientChannelError, match="500"):
        await sender.send(delivery(webhook_user(slack) if user == "webhook" else bot_user()))


@pytest.mark.parametrize("user", ["webhook", "bot"])
async def test_malformed_response_is_transient(
    slack: SlackEmulator, sender: SlackSender, user: str
) -> None:
    slack.malformed_next()
    with pytest.raises(TransientChannelError, match="malformed body"):
        await sender.send(delivery(webhook_user(slack) if user == "webhook" else bot_user()))


async def test_slow_beyond_the_timeout_is_transient(
    slack: SlackEmulator, http: httpx.AsyncClient
) -> None:
    sender = sender_for(slack, http, slack_timeout_seconds=0.3)
    slack.slow_next(3)
    with pytest.raises(TransientChannelError, match=r"timed out after 0.3s"):
        await sender.send(delivery(bot_user()))


async def test_long_text_is_split_into_sections_the_emulator_accepts(
    slack: SlackEmulator, sender: SlackSender
) -> None:
    words = " ".join(f"word{i}" for i in range(2000))  # ~17,000 characters
    subject = "S" * 400
    await sender.send(delivery(webhook_user(slack), subject=subject, text=words))
    sent = slack.posted[0].payload["blocks"]
    assert len(sent[0]["text"]["text"]) == HEADER_MAX
    sections = [b["text"]["text"] for b in sent[1:]]
    assert all(len(s) <= SECTION_MAX for s in sections)
    assert "".join(sections) == words  # split, not truncated


def test_blocks_never_cut_an_escaped_entity() -> None:
    text = "a" * (SECTION_MAX - 2) + "<b>"  # escapes to ...&lt;b&gt;, across the limit
    sections = [b["text"]["text"] for b in blocks("", text)]
    assert "".join(sections) == "a" * (SECTION_MAX - 2) + "&lt;b&gt;"
    assert all(not s.endswith(("&", "&l", "&lt")) for s in sections)


def test_too_long_for_fifty_blocks_is_permanent() -> None:
    with pytest.raises(PermanentChannelError, match="the limit is 50"):
        blocks("", "x" * (SECTION_MAX * 50 + 1))


async def test_a_slack_host_resolving_to_a_private_address_is_refused(
    http: httpx.AsyncClient,
) -> None:
    async def private(host: str, port: int) -> list[targets.IPAddress]:
        return [ipaddress.ip_address("10.0.0.7")]

    settings = make_settings(slack_bot_token=None, webhook_allowed_networks=[])
    sender = SlackSender(settings, http, resolver=private)
    user = User(id="u-s", slack_webhook_url="https://hooks.slack.com/services/T0/B0/secret")
    with pytest.raises(PermanentChannelError, match=r"10\.0\.0\.7 is a private address"):
        await sender.send(delivery(user))
