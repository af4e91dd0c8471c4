"""SMS over real HTTP against the Twilio emulator."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import pytest_asyncio

from starter.dev.emulators.twilio import DEV_ACCOUNT_SID, DEV_AUTH_TOKEN, TwilioEmulator
from tests.channels.helpers import make_settings
from tidings.channels.base import (
    OutgoingMessage,
    PermanentChannelError,
    RateLimitedError,
    TransientChannelError,
)
from tidings.channels.failover import FailoverSender
from tidings.channels.providers import build_sms_sender
from tidings.channels.sms_twilio import TwilioSmsSender
from tidings.models import Channel, RenderedMessage, User
from tidings.settings import TwilioAccount

PHONE = "+14155550100"
FROM = "+15005550006"


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def _twilio() -> AsyncIterator[TwilioEmulator]:
    async with TwilioEmulator(port=0) as emulator:
        yield emulator


@pytest.fixture
def twilio(_twilio: TwilioEmulator) -> TwilioEmulator:
    _twilio.reset()
    return _twilio


@pytest_asyncio.fixture(loop_scope="session")
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as client:
        yield client


def sender_for(
    twilio: TwilioEmulator, http: httpx.AsyncClient, **overrides: Any
) -> TwilioSmsSender:
    values: dict[str, Any] = {
        "twilio_base_url": twilio.url,
        "twilio_account_sid": DEV_ACCOUNT_SID,
        "twilio_auth_token": DEV_AUTH_TOKEN,
        "twilio_from_number": FROM,
        "twilio_timeout_seconds": 2.0,
        "public_base_url": "https://tidings.example.com/",
    }
    return TwilioSmsSender(make_settings(**(values | overrides)), http)


@pytest.fixture
def sender(twilio: TwilioEmulator, http: httpx.AsyncClient) -> TwilioSmsSender:
    return sender_for(twilio, http)


def delivery(text: str = "Your code is 123456", phone: str | None = PHONE) -> OutgoingMessage:
    return OutgoingMessage(
        notification_id="n-7",
        idempotency_key="n-7:sms",
        user=User(id="u-1", phone=phone),
        message=RenderedMessage(channel=Channel.SMS, text=text),
    )


async def test_good_path_posts_twilios_form_with_basic_auth(
    twilio: TwilioEmulator, sender: TwilioSmsSender
) -> None:
    outcome = await sender.send(delivery())

    (sms,) = twilio.messages
    assert outcome.provider_message_id == sms.sid
    assert sms.sid.startswith("SM") and len(sms.sid) == 34
    assert outcome.target == "+14*******00"
    (req,) = twilio.received
    assert req.path == f"/2010-04-01/Accounts/{DEV_ACCOUNT_SID}/Messages.json"
    assert req.headers["content-type"] == "application/x-www-form-urlencoded"
    expected_auth = base64.b64encode(f"{DEV_ACCOUNT_SID}:{DEV_AUTH_TOKEN}".encode()).decode()
    assert req.headers["authorization"] == f"Basic {expected_auth}"
    assert req.headers["i-twilio-idempotency-token"] == "n-7:sms"
    assert req.form() == {
        "To": PHONE,
        "From": FROM,
        "Body": "Your code is 123456",
        "StatusCallback": "https://tidings.example.com/v1/receipts/twilio",
    }


async def test_messaging_service_replaces_from_and_no_callback_without_public_url(
    twilio: TwilioEmulator, http: httpx.AsyncClient
) -> None:
    sender = sender_for(
        twilio, http, twilio_messaging_service_sid="MG" + "1" * 32, public_base_url=None
    )
    await sender.send(delivery())
    form = twilio.received[0].form()
    assert form["MessagingServiceSid"] == "MG" + "1" * 32
    assert "From" not in form and "StatusCallback" not in form


async def test_wrong_auth_token_is_permanent(
    twilio: TwilioEmulator, http: httpx.AsyncClient
) -> None:
    sender = sender_for(twilio, http, twilio_auth_token="wrong")
    with pytest.raises(PermanentChannelError, match="refused the credentials: 20003 Authenticate"):
        await sender.send(delivery())
    assert twilio.messages == []


@pytest.mark.parametrize(
    ("code", "meaning"),
    [
        (21211, "invalid To number"),
        (21610, "unsubscribed"),
        (21614, "not a mobile number"),
    ],
)
async def test_recipient_errors_are_permanent_with_twilios_message(
    twilio: TwilioEmulator, sender: TwilioSmsSender, code: int, meaning: str
) -> None:
    twilio.invalidate(PHONE, code=code)
    with pytest.raises(PermanentChannelError, match=f"{code} .*{meaning}") as info:
        await sender.send(delivery())
    assert "+14*******00" in info.value.reason and PHONE not in info.value.reason


async def test_5xx_is_transient(twilio: TwilioEmulator, sender: TwilioSmsSender) -> None:
    twilio.fail_next(2)
    for _ in range(2):
        with pytest.raises(TransientChannelError, match="Twilio answered 500"):
            await sender.send(delivery())
    await sender.send(delivery())
    assert len(twilio.messages) == 1 and len(twilio.received) == 3


async def test_429_is_rate_limited_with_retry_after(
    twilio: TwilioEmulator, sender: TwilioSmsSender
) -> None:
    twilio.rate_limit_next(2.5)
    with pytest.raises(RateLimitedError) as info:
        await sender.send(delivery())
    assert info.value.retry_after == 2.5


async def test_slow_beyond_the_timeout_is_transient(
    twilio: TwilioEmulator, http: httpx.AsyncClient
) -> None:
    sender = sender_for(twilio, http, twilio_timeout_seconds=0.3)
    twilio.slow_next(3)
    with pytest.raises(TransientChannelError, match=r"Twilio timed out after 0.3s"):
        await sender.send(delivery())


async def test_malformed_response_is_transient(
    twilio: TwilioEmulator, sender: TwilioSmsSender
) -> None:
    twilio.malformed_next()
    with pytest.raises(TransientChannelError, match=r"malformed body .*not JSON"):
        await sender.send(delivery())


async def test_provider_down_is_transient(twilio: TwilioEmulator, sender: TwilioSmsSender) -> None:
    twilio.down_for(30)
    with pytest.raises(TransientChannelError, match="503"):
        await sender.send(delivery())


@pytest.mark.parametrize(
    ("text", "segments", "encoding"),
    [
        ("a" * 153 * 4 + "a", 5, "GSM-7"),
        ("ж" * 67 * 4 + "ж", 5, "UCS-2"),
        ("€" * 307, 5, "GSM-7"),  # 307 characters, 614 septets
    ],
)
async def test_over_the_segment_limit_is_permanent_and_never_sent(
    twilio: TwilioEmulator, sender: TwilioSmsSender, text: str, segments: int, encoding: str
) -> None:
    with pytest.raises(
        PermanentChannelError, match=f"{segments} {encoding} segments .* the limit is 4"
    ):
        await sender.send(delivery(text))
    assert twilio.received == []


async def test_exactly_at_the_segment_limit_is_sent_whole(
    twilio: TwilioEmulator, sender: TwilioSmsSender
) -> None:
    text = "ж" * 67 * 4
    await sender.send(delivery(text))
    assert twilio.messages[0].body == text  # never truncated


async def test_missing_phone_and_empty_text_are_permanent(
    twilio: TwilioEmulator, sender: TwilioSmsSender
) -> None:
    with pytest.raises(PermanentChannelError, match="has no phone number"):
        await sender.send(delivery(phone=None))
    with pytest.raises(PermanentChannelError, match="empty"):
        await sender.send(delivery(""))
    assert twilio.received == []


def test_sender_refuses_incomplete_configuration(http: httpx.AsyncClient) -> None:
    with pytest.raises(ValueError, match="AUTH_TOKEN"):
        TwilioSmsSender(make_settings(twilio_account_sid=DEV_ACCOUNT_SID), http)
    with pytest.raises(ValueError, match="FROM_NUMBER"):
        TwilioSmsSender(
            make_settings(twilio_account_sid=DEV_ACCOUNT_SID, twilio_auth_token="t"), http
        )


async def test_second_twilio_account_takes_over_when_the_first_fails(
    http: httpx.AsyncClient,
) -> None:
    second_sid, second_token = "AC" + "0" * 31 + "2", "second-token"
    async with (
        TwilioEmulator(port=0) as first,
        TwilioEmulator(port=0, account_sid=second_sid, auth_token=second_token) as second,
    ):
        settings = make_settings(
            twilio_base_url=first.url,
            twilio_account_sid=DEV_ACCOUNT_SID,
            twilio_auth_token=DEV_AUTH_TOKEN,
            twilio_from_number=FROM,
            twilio_timeout_seconds=2.0,
            twilio_fallback_accounts=[
                TwilioAccount(
                    account_sid=second_sid,
                    auth_token=second_token,
                    from_number=FROM,
                    base_url=second.url,
                )
            ],
        )
        sender = build_sms_sender(settings, http)
        assert isinstance(sender, FailoverSender)
        first.fail_next(1)
        outcome = await sender.send(delivery())
        assert outcome.provider_message_id is not None
        assert len(first.received) == 1  # the 500
        [accepted] = second.received
        assert accepted.form()["To"] == PHONE
        assert (
            accepted.headers["authorization"]
            == "Basic " + base64.b64encode(f"{second_sid}:{second_token}".encode()).decode()
        )
