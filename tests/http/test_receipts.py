"""Delivery receipts: signed, forwards-only, reflected in the database and in the live run."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest_asyncio
from temporalio.testing import WorkflowEnvironment

from tests.http.helpers import api
from tests.support import Stack, running_stack
from tidings.channels.webhook import sign
from tidings.models import (
    Channel,
    ChannelResult,
    DeliveryStatus,
    EngagementType,
    NotificationStatus,
    Priority,
)
from tidings.receipts import twilio_signature
from tidings.store import LedgerEntry

TOKEN = "twilio-auth-token-for-tests"
PUBLIC = "https://tidings.example.com"
WELCOME = {"app_name": "MyApp", "user_name": "John"}


@pytest_asyncio.fixture(loop_scope="session")
async def stack(time_env: WorkflowEnvironment, tmp_path: Path) -> AsyncIterator[Stack]:
    async with running_stack(
        time_env.client, tmp_path, twilio_auth_token=TOKEN, public_base_url=PUBLIC
    ) as s:
        await s.seed()
        yield s


@pytest_asyncio.fixture(loop_scope="session")
async def client(stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    async with api(stack.tidings) as c:
        yield c


def _signed(stack: Stack, payload: dict[str, Any], msg_id: str = "r1") -> dict[str, Any]:
    body = json.dumps(payload).encode()
    ts = int(time.time())
    secret = stack.settings.receipt_secret.get_secret_value()
    headers = {
        "webhook-id": msg_id,
        "webhook-timestamp": str(ts),
        "webhook-signature": sign(secret, msg_id, ts, body),
        "content-type": "application/json",
    }
    return {"content": body, "headers": headers}


async def test_signed_receipt_moves_sent_to_delivered_once(
    stack: Stack, client: httpx.AsyncClient
) -> None:
    ref = await stack.tidings.notify(
        user_id="user_001", template_id="welcome", data=WELCOME, channels=["email"]
    )
    await stack.tidings.wait_sent(ref.notification_id)
    receipt = {"notification_id": ref.notification_id, "channel": "email", "status": "delivered"}

    response = await client.post("/v1/receipts", **_signed(stack, receipt))
    assert response.status_code == 200, response.text
    assert response.json()["applied"] is True
    live = await stack.tidings.status(ref.notification_id)
    assert [c.status for c in live.channels] == [DeliveryStatus.DELIVERED]
    stored = await stack.store.get_notification(ref.notification_id)
    assert stored is not None and [c.status for c in stored.channels] == ["delivered"]
    # The receipt is a `delivered` engagement event too, on its channel: once, though the
    # provider repeats itself; the run keeps no copy (it heard of the receipt as a receipt).
    repeat = await client.post("/v1/receipts", **_signed(stack, receipt, "r1b"))
    assert repeat.json()["applied"] is False
    stored = await stack.store.get_notification(ref.notification_id)
    assert stored is not None
    assert [(e.type, e.channel) for e in stored.engagement] == [
        (EngagementType.DELIVERED, Channel.EMAIL)
    ]
    assert (await stack.tidings.stats()).engagement[EngagementType.DELIVERED] >= 1
    assert (await stack.tidings.status(ref.notification_id)).engagement == []

    late_failure = {**receipt, "status": "failed", "reason": "bounced"}
    again = await client.post("/v1/receipts", **_signed(stack, late_failure, "r2"))
    assert again.json()["applied"] is False  # forwards only: delivered stays delivered
    stored = await stack.store.get_notification(ref.notification_id)
    assert stored is not None and [c.status for c in stored.channels] == ["delivered"]


async def test_forged_or_unsigned_receipts_are_refused(
    stack: Stack, client: httpx.AsyncClient
) -> None:
    ref = await stack.tidings.notify(
        user_id="user_001", template_id="welcome", data=WELCOME, channels=["email"]
    )
    await stack.tidings.wait_sent(ref.notification_id)
    receipt = {"notification_id": ref.notification_id, "channel": "email", "status": "failed"}
    signed = _signed(stack, receipt)
    tampered = dict(signed, content=json.dumps({**receipt, "status": "delivered"}).encode())
    attempts: list[dict[str, Any]] = [tampered, {"json": receipt}]
    for attempt in attempts:
        response = await client.post("/v1/receipts", **attempt)
        assert response.status_code == 401
        assert response.json()["error"]["type"] == "unauthorized"
    stored = await stack.store.get_notification(ref.notification_id)
    assert stored is not None and [c.status for c in stored.channels] == ["sent"]

    bad = await client.post(
        "/v1/receipts",
        **_signed(stack, {**receipt, "status": "opened"}),
    )
    assert bad.status_code == 422 and bad.json()["error"]["field"] == "status"


async def test_twilio_status_callback(stack: Stack, client: httpx.AsyncClient) -> None:
    await stack.store.upsert_notification(
        notification_id="sms-1",
        user_id="user_002",
        template_id="order_confirmation",
        template_version=1,
        priority=Priority.HIGH,
        status=NotificationStatus.SENT,
        channels=[
            ChannelResult(
                channel=Channel.SMS, status=DeliveryStatus.SENT, provider_message_id="SM" + "a" * 32
            )
        ],
    )
    # What the deliver activity wrote the moment Twilio accepted: receipts are found through it.
    await stack.store.ledger_put(
        LedgerEntry(
            key="sms-1:sms",
            notification_id="sms-1",
            channel=Channel.SMS,
            target="+1***",
            provider_message_id="SM" + "a" * 32,
        )
    )
    form = {"MessageSid": "SM" + "a" * 32, "MessageStatus": "undelivered", "ErrorCode": "30003"}
    url = f"{PUBLIC}/v1/receipts/twilio"

    forged = await client.post(
        "/v1/receipts/twilio", data=form, headers={"x-twilio-signature": "bm9wZQ=="}
    )
    assert forged.status_code == 401

    interim = {**form, "MessageStatus": "sent"}
    response = await client.post(
        "/v1/receipts/twilio",
        data=interim,
        headers={"x-twilio-signature": twilio_signature(TOKEN, url, interim)},
    )
    assert response.json()["applied"] is False

    response = await client.post(
        "/v1/receipts/twilio",
        data=form,
        headers={"x-twilio-signature": twilio_signature(TOKEN, url, form)},
    )
    assert response.status_code == 200 and response.json()["applied"] is True
    stored = await stack.store.get_notification("sms-1")
    assert stored is not None
    [sms] = stored.channels
    assert sms.status is DeliveryStatus.FAILED
    assert sms.reason == "twilio: undelivered (error 30003)"
    assert stored.engagement == []  # a failure is no `delivered` event


def test_twilio_signature_matches_the_documented_example() -> None:
    # The example in Twilio's request-validation docs (twilio-php): token 12345, this URL and
    # these parameters sign to this value.
    url = "https://mycompany.com/myapp.php?foo=1&bar=2"
    params = {
        "CallSid": "CA1234567890ABCDE",
        "Caller": "+14158675309",
        "Digits": "1234",
        "From": "+14158675309",
        "To": "+18005551212",
    }
    assert twilio_signature("12345", url, params) == "RSOYDt4T1cUTdK1PDd93/VVr8B8="
