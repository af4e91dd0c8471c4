from __future__ import annotations

import ipaddress
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import httpx
import pytest
import pytest_asyncio

from starter.dev.webhook_receiver import WebhookReceiver
from tests.channels.helpers import make_delivery, make_settings
from tests.ports import refused_port
from tidings import targets
from tidings.channels.base import (
    PermanentChannelError,
    RateLimitedError,
    TransientChannelError,
)
from tidings.channels.webhook import WebhookSender, parse_retry_after, sign, verify
from tidings.models import Channel, DeliveryStatus, User


@pytest_asyncio.fixture(loop_scope="session")
async def http() -> AsyncIterator[httpx.AsyncClient]:
    # follow_redirects=True on the client proves the sender turns it off per request.
    async with httpx.AsyncClient(follow_redirects=True) as client:
        yield client


def hook_user(url: str) -> User:
    return User(id="u-1", email="jane@example.com", webhook_url=url)


def sender(http: httpx.AsyncClient, secret: str, **overrides: Any) -> WebhookSender:
    return WebhookSender(make_settings(webhook_secret=secret, **overrides), http)


async def test_delivers_signed_json(
    receiver: WebhookReceiver, http: httpx.AsyncClient, webhook_secret: str
) -> None:
    delivery = make_delivery(
        notification_id="n-7",
        channel=Channel.WEBHOOK,
        user=hook_user(f"{receiver.url}/hooks/in?token=abc"),
    )

    outcome = await sender(http, webhook_secret).send(delivery)

    assert outcome.status is DeliveryStatus.DELIVERED
    assert outcome.target == f"{receiver.url}/hooks/in"
    assert outcome.provider_message_id == "n-7:webhook"
    [req] = receiver.received
    assert (req.method, req.path, req.query) == ("POST", "/hooks/in", "token=abc")
    assert req.headers["content-type"] == "application/json"
    assert req.headers["webhook-id"] == "n-7:webhook"
    assert abs(int(req.headers["webhook-timestamp"]) - time.time()) < 60
    verify(webhook_secret, req.headers, req.body)
    body = req.json()
    assert body.pop("timestamp")
    assert body == {
        "type": "notification",
        "notification_id": "n-7",
        "user_id": "u-1",
        "channel": "webhook",
        "subject": "Your order shipped",
        "text": "Order 42 is on its way.",
    }


async def test_tampering_and_wrong_secret_fail_verification(
    receiver: WebhookReceiver, http: httpx.AsyncClient, webhook_secret: str
) -> None:
    user = hook_user(receiver.url)
    await sender(http, webhook_secret).send(make_delivery(channel=Channel.WEBHOOK, user=user))
    [req] = receiver.received

    tampered = req.body.replace(b"Order 42", b"Order 43")
    with pytest.raises(ValueError, match="does not match"):
        verify(webhook_secret, req.headers, tampered)
    other = "whsec_" + "QUJD" * 8
    with pytest.raises(ValueError, match="does not match"):
        verify(other, req.headers, req.body)
    with pytest.raises(ValueError, match="webhook-timestamp"):
        verify(webhook_secret, req.headers, req.body, now=time.time() + 301)
    with pytest.raises(ValueError, match="required"):
        verify(webhook_secret, {"webhook-id": "x"}, req.body)


def test_sign_matches_standard_webhooks_reference_vector() -> None:
    # From the Standard Webhooks reference libraries' test suite.
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    msg_id = "msg_p5jXN8AQM9LWM0D4loKWxJek"
    body = b'{"test": 2432232314}'
    assert (
        sign(secret, msg_id, 1614265330, body) == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    )
    headers = {
        "Webhook-Id": msg_id,
        "Webhook-Timestamp": "1614265330",
        "Webhook-Signature": "v1,bogus v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
    }
    verify(secret, headers, body, now=1614265330)


async def test_webhook_id_is_stable_across_retries(
    receiver: WebhookReceiver, http: httpx.AsyncClient, webhook_secret: str
) -> None:
    receiver.fail_next(1, status=503)
    s = sender(http, webhook_secret)
    delivery = make_delivery(channel=Channel.WEBHOOK, user=hook_user(receiver.url))

    with pytest.raises(TransientChannelError):
        await s.send(delivery)
    await s.send(delivery)

    ids = [r.headers["webhook-id"] for r in receiver.received]
    assert ids == [delivery.idempotency_key] * 2


@pytest.mark.parametrize("status", [500, 502, 408])
async def test_server_errors_and_408_are_transient(
    receiver: WebhookReceiver, http: httpx.AsyncClient, webhook_secret: str, status: int
) -> None:
    receiver.fail_next(1, status=status)
    delivery = make_delivery(channel=Channel.WEBHOOK, user=hook_user(receiver.url))

    with pytest.raises(TransientChannelError) as exc:
        await sender(http, webhook_secret).send(delivery)

    assert not isinstance(exc.value, PermanentChannelError | RateLimitedError)
    assert str(status) in exc.value.reason


@pytest.mark.parametrize("status", [400, 401, 404, 410])
async def test_other_client_errors_are_permanent(
    receiver: WebhookReceiver, http: httpx.AsyncClient, webhook_secret: str, status: int
) -> None:
    receiver.fail_next(1, status=status)
    delivery = make_delivery(channel=Channel.WEBHOOK, user=hook_user(receiver.url))

    with pytest.raises(PermanentChannelError) as exc:
        await sender(http, webhook_secret).send(delivery)
    assert str(status) in exc.value.reason


async def test_429_carries_retry_after_seconds(
    receiver: WebhookReceiver, http: httpx.AsyncClient, webhook_secret: str
) -> None:
    receiver.rate_limit_next("7")
    delivery = make_delivery(channel=Channel.WEBHOOK, user=hook_user(receiver.url))

    with pytest.raises(RateLimitedError) as exc:
        await sender(http, webhook_secret).send(delivery)
    assert exc.value.retry_after == 7.0


async def test_429_carries_retry_after_http_date(
    receiver: WebhookReceiver, http: httpx.AsyncClient, webhook_secret: str
) -> None:
    receiver.rate_limit_next(format_datetime(datetime.now(UTC) + timedelta(seconds=120), True))
    delivery = make_delivery(channel=Channel.WEBHOOK, user=hook_user(receiver.url))

    with pytest.raises(RateLimitedError) as exc:
        await sender(http, webhook_secret).send(delivery)
    assert exc.value.retry_after is not None and 100 < exc.value.retry_after <= 120


def test_parse_retry_after() -> None:
    now = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)
    assert parse_retry_after("30", now=now) == 30.0
    assert parse_retry_after("Wed, 01 Jan 2025 12:01:30 GMT", now=now) == 90.0
    assert parse_retry_after("Wed, 01 Jan 2025 11:00:00 GMT", now=now) == 0.0
    assert parse_retry_after("soon", now=now) is None
    assert parse_retry_after(None) is None


async def test_redirects_are_not_followed(
    receiver: WebhookReceiver, http: httpx.AsyncClient, webhook_secret: str
) -> None:
    receiver.respond_with(302, headers={"location": f"{receiver.url}/elsewhere"})
    delivery = make_delivery(channel=Channel.WEBHOOK, user=hook_user(f"{receiver.url}/hook"))

    with pytest.raises(PermanentChannelError) as exc:
        await sender(http, webhook_secret).send(delivery)

    assert "redirect" in exc.value.reason
    assert [r.path for r in receiver.received] == ["/hook"]


async def test_slow_receiver_times_out_as_transient(
    receiver: WebhookReceiver, http: httpx.AsyncClient, webhook_secret: str
) -> None:
    receiver.slow_next(5.0)
    delivery = make_delivery(channel=Channel.WEBHOOK, user=hook_user(receiver.url))

    with pytest.raises(TransientChannelError) as exc:
        await sender(http, webhook_secret, webhook_timeout_seconds=0.3).send(delivery)
    assert "timed out" in exc.value.reason
    assert len(receiver.received) == 1


async def test_nothing_listening_is_transient(http: httpx.AsyncClient, webhook_secret: str) -> None:
    with refused_port() as port, pytest.raises(TransientChannelError) as exc:
        delivery = make_delivery(
            channel=Channel.WEBHOOK, user=hook_user(f"http://127.0.0.1:{port}/h")
        )
        await sender(http, webhook_secret).send(delivery)
    assert "unreachable" in exc.value.reason


async def test_user_without_webhook_url_is_permanent(
    http: httpx.AsyncClient, webhook_secret: str
) -> None:
    delivery = make_delivery(channel=Channel.WEBHOOK, user=User(id="u-2"))
    with pytest.raises(PermanentChannelError, match="webhook_url"):
        await sender(http, webhook_secret).send(delivery)


@pytest.mark.parametrize(
    "host",
    [
        "127.0.0.1",
        "localhost",
        "[::1]",
        "10.1.2.3",
        "169.254.169.254",
        "127.1",
        "2130706433",
        "0x7f000001",
        "0177.0.0.1",
        "[::ffff:127.0.0.1]",
        "[::ffff:a9fe:a9fe]",
    ],
)
async def test_private_targets_refused_unless_allowed(
    receiver: WebhookReceiver, http: httpx.AsyncClient, webhook_secret: str, host: str
) -> None:
    delivery = make_delivery(
        channel=Channel.WEBHOOK, user=hook_user(f"http://{host}:{receiver.port}/h")
    )
    with pytest.raises(PermanentChannelError, match=r"https|loopback|private|link-local"):
        await sender(http, webhook_secret, webhook_allowed_networks=[]).send(delivery)
    delivery = make_delivery(
        channel=Channel.WEBHOOK, user=hook_user(f"https://{host}:{receiver.port}/h")
    )
    with pytest.raises(PermanentChannelError, match=r"loopback|private|link-local"):
        await sender(http, webhook_secret, webhook_allowed_networks=[]).send(delivery)
    assert receiver.received == []


async def test_a_name_resolving_to_a_private_address_is_refused(
    receiver: WebhookReceiver, http: httpx.AsyncClient, webhook_secret: str
) -> None:
    async def rebinding(host: str, port: int) -> list[targets.IPAddress]:
        # One public answer and one metadata-service answer: refused, whichever would be used.
        return [ipaddress.ip_address("93.184.216.34"), ipaddress.ip_address("169.254.169.254")]

    delivery = make_delivery(channel=Channel.WEBHOOK, user=hook_user("https://hooks.example.com/h"))
    settings = make_settings(webhook_secret=webhook_secret, webhook_allowed_networks=[])
    with pytest.raises(PermanentChannelError, match=r"169\.254\.169\.254 is a link-local"):
        await WebhookSender(settings, http, resolver=rebinding).send(delivery)


async def test_checked_address_is_the_one_connected_to(webhook_secret: str) -> None:
    # The resolver seam answers loopback for a made-up name (allowed for this test); the request
    # must go to that address, not a second lookup, while keeping the original Host header.
    looked_up: list[str] = []
    sent_to: list[str] = []

    async def resolver(host: str, port: int) -> list[targets.IPAddress]:
        looked_up.append(host)
        return [ipaddress.ip_address("127.0.0.1")]

    async def record(request: httpx.Request) -> None:
        sent_to.append(request.url.host)

    async with (
        WebhookReceiver(host="127.0.0.1") as receiver,
        httpx.AsyncClient(event_hooks={"request": [record]}) as client,
    ):
        url = f"http://hooks.tidings.test:{receiver.port}/h"
        delivery = make_delivery(channel=Channel.WEBHOOK, user=hook_user(url))
        settings = make_settings(
            webhook_secret=webhook_secret, webhook_allowed_networks=["127.0.0.0/8"]
        )
        outcome = await WebhookSender(settings, client, resolver=resolver).send(delivery)

        assert outcome.status is DeliveryStatus.DELIVERED
        assert outcome.target == url
        assert looked_up == ["hooks.tidings.test"]
        assert sent_to == ["127.0.0.1"]
        [req] = receiver.received
        assert req.headers["host"] == f"hooks.tidings.test:{receiver.port}"
        verify(webhook_secret, req.headers, req.body)


def test_malformed_secret_is_refused_at_construction(http: httpx.AsyncClient) -> None:
    with pytest.raises(ValueError, match="whsec_"):
        WebhookSender(make_settings(webhook_secret="whsec_not base64!"), http)


async def test_every_endpoint_of_the_user_gets_it(
    receiver: WebhookReceiver, http: httpx.AsyncClient, webhook_secret: str
) -> None:
    async with WebhookReceiver() as second:
        user = User(id="u-2", webhook_url=f"{receiver.url}/a", webhook_urls=[f"{second.url}/b"])
        delivery = make_delivery(notification_id="n-9", channel=Channel.WEBHOOK, user=user)
        outcome = await sender(http, webhook_secret).send(delivery)
        assert outcome.status is DeliveryStatus.DELIVERED
        assert outcome.target == f"{receiver.url}/a, {second.url}/b"
        [a], [b] = receiver.received, second.received
        assert a.headers["webhook-id"] == b.headers["webhook-id"] == "n-9:webhook"
        verify(webhook_secret, b.headers, b.body)

        # One endpoint gone for good: the other keeps its delivery, the refusal is recorded.
        second.respond_with(410)
        outcome = await sender(http, webhook_secret).send(delivery)
        assert outcome.status is DeliveryStatus.DELIVERED
        assert outcome.target.startswith(f"{receiver.url}/a (refused: ")
        assert "410" in outcome.target

        # One endpoint failing transiently retries the whole send.
        second.respond_with(503)
        with pytest.raises(TransientChannelError, match="503"):
            await sender(http, webhook_secret).send(delivery)

        # Every endpoint refusing is permanent.
        receiver.respond_with(404)
        second.respond_with(410)
        with pytest.raises(PermanentChannelError):
            await sender(http, webhook_secret).send(delivery)
