"""The provider emulators themselves: the HTTP control endpoint other processes use, their
authentication checks, HTTP/2 on the APNs emulator, and the dev set wired to the real senders."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
import pytest_asyncio
from pydantic import SecretStr, ValidationError

from starter.dev.emulators.dev import DEV_APNS_KEY_ID, DEV_APNS_TEAM_ID, DevEmulators
from starter.dev.emulators.fcm import SCOPE, dev_service_account
from starter.dev.emulators.twilio import DEV_ACCOUNT_SID
from tests.channels.helpers import make_settings
from tidings.channels.base import OutgoingMessage, TransientChannelError
from tidings.channels.providers import build_provider_senders
from tidings.channels.push_apns import ApnsClient
from tidings.models import Channel, Device, Platform, RenderedMessage, User
from tidings.settings import Settings
from tidings.store import Store

MESSAGES = f"/2010-04-01/Accounts/{DEV_ACCOUNT_SID}/Messages.json"
APNS_TOKEN = "c" * 64


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def _dev(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[DevEmulators]:
    ports = {"fcm": 0, "apns": 0, "twilio": 0, "slack": 0}
    async with DevEmulators(tmp_path_factory.mktemp("emulators"), ports=ports) as dev:
        yield dev


@pytest.fixture
def dev(_dev: DevEmulators) -> DevEmulators:
    for emulator in _dev.all:
        emulator.reset()
    return _dev


@pytest_asyncio.fixture(loop_scope="session")
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=5) as client:
        yield client


async def sms(
    http: httpx.AsyncClient, dev: DevEmulators, auth: tuple[str, str] | None = None
) -> httpx.Response:
    settings = dev.settings()
    return await http.post(
        dev.twilio.url + MESSAGES,
        data={"To": "+14155550100", "From": "+15005550006", "Body": "hi"},
        auth=auth or (settings["twilio_account_sid"], settings["twilio_auth_token"]),
    )


async def test_faults_received_and_reset_over_http(
    dev: DevEmulators, http: httpx.AsyncClient
) -> None:
    control = dev.twilio.url + "/_emulator"
    answer = await http.post(control + "/faults", json={"mode": "5xx", "count": 2, "status": 503})
    assert answer.status_code == 200 and answer.json()["fault"]["count"] == 2
    assert [(await sms(http, dev)).status_code for _ in range(3)] == [503, 503, 201]

    received = (await http.get(control + "/received")).json()
    assert len(received) == 3  # control requests are not recorded
    assert received[0]["form"]["Body"] == "hi" and received[0]["path"] == MESSAGES

    await http.post(control + "/faults", json={"mode": "429", "retry_after": 2})
    limited = await sms(http, dev)
    assert limited.status_code == 429 and limited.headers["retry-after"] == "2"
    assert limited.json()["code"] == 20429

    await http.post(
        control + "/faults", json={"mode": "invalid_token", "token": "+14155550100", "code": 21610}
    )
    refused = await sms(http, dev)
    assert refused.status_code == 400 and refused.json()["code"] == 21610

    await http.post(control + "/faults", json={"mode": "malformed"})
    assert (await sms(http, dev)).headers["content-type"] == "text/html"

    assert (await http.post(control + "/reset")).json() == {"ok": True}
    assert (await http.get(control + "/received")).json() == []
    assert (await sms(http, dev)).status_code == 201  # the dead number came back too


@pytest.mark.parametrize(
    ("spec", "problem"),
    [
        ({"mode": "sometimes"}, "unknown fault mode 'sometimes'"),
        ({"mode": "5xx", "count": 0}, "count"),
        ({"mode": "5xx", "status": 404}, "status"),
        ({"mode": "invalid_token"}, "needs the token"),
        ({"mode": "5xx", "colour": "red"}, "colour"),
    ],
)
async def test_bad_fault_specs_are_refused_with_the_reason(
    dev: DevEmulators, http: httpx.AsyncClient, spec: dict[str, Any], problem: str
) -> None:
    answer = await http.post(dev.slack.url + "/_emulator/faults", json=spec)
    assert answer.status_code == 400 and problem in answer.json()["error"]


async def test_down_for_answers_503_then_recovers(
    dev: DevEmulators, http: httpx.AsyncClient
) -> None:
    await http.post(dev.twilio.url + "/_emulator/faults", json={"mode": "down_for", "seconds": 0.5})
    assert (await sms(http, dev)).status_code == 503
    await asyncio.sleep(0.6)
    assert (await sms(http, dev)).status_code == 201


async def test_slow_holds_the_answer(dev: DevEmulators, http: httpx.AsyncClient) -> None:
    await http.post(dev.twilio.url + "/_emulator/faults", json={"mode": "slow", "seconds": 5})
    with pytest.raises(httpx.ReadTimeout):
        await http.post(dev.twilio.url + MESSAGES, timeout=0.3)
    assert len(dev.twilio.received) == 1


async def test_twilio_checks_basic_auth(dev: DevEmulators, http: httpx.AsyncClient) -> None:
    answer = await sms(http, dev, auth=(DEV_ACCOUNT_SID, "wrong"))
    assert answer.status_code == 401
    assert answer.json() == {
        "code": 20003,
        "message": "Authenticate",
        "more_info": "https://www.twilio.com/docs/errors/20003",
        "status": 401,
    }


async def test_fcm_token_endpoint_verifies_the_assertion(
    dev: DevEmulators, http: httpx.AsyncClient, tmp_path: Path
) -> None:
    token_url = f"{dev.fcm.url}/token"
    trusted = dev.settings()["fcm_service_account_file"]
    rogue = dev_service_account(tmp_path / "rogue.json", token_uri=token_url)

    def assertion(key_file: str | Path, **claims: Any) -> str:
        doc = json.loads(Path(key_file).read_text())
        now = int(time.time())
        base = {
            "iss": doc["client_email"],
            "scope": SCOPE,
            "aud": token_url,
            "iat": now,
            "exp": now + 3600,
        }
        return jwt.encode(base | claims, doc["private_key"], algorithm="RS256")

    async def exchange(value: str) -> httpx.Response:
        grant = "urn:ietf:params:oauth:grant-type:jwt-bearer"
        return await http.post(token_url, data={"grant_type": grant, "assertion": value})

    good = await exchange(assertion(trusted))
    assert good.status_code == 200 and good.json()["access_token"].startswith("ya29.")
    for bad in (
        assertion(rogue),  # same issuer, different key
        assertion(trusted, aud="https://oauth2.googleapis.com/token"),
        assertion(trusted, exp=int(time.time()) - 10),
    ):
        refused = await exchange(bad)
        assert refused.status_code == 400 and refused.json()["error"] == "invalid_grant"
    scope = await exchange(assertion(trusted, scope="https://www.googleapis.com/auth/drive"))
    assert scope.json()["error"] == "invalid_scope"

    # A fault scoped to the token endpoint reaches the sender as a transient error.
    dev.fcm.inject({"mode": "5xx", "path": "/token"})
    store = await _store(tmp_path)
    try:
        senders = build_provider_senders(make_settings(**dev.settings()), store, http)
        devices = [Device(user_id="u-1", platform=Platform.FCM, token="fcm-token-1234")]
        with pytest.raises(TransientChannelError, match="OAuth token endpoint answered 500"):
            await senders[Channel.PUSH].send(_delivery(Channel.PUSH, devices=devices))
    finally:
        await store.close()


async def test_apns_speaks_http2_and_checks_the_provider_token(
    dev: DevEmulators, tmp_path: Path
) -> None:
    async with httpx.AsyncClient(http1=False, http2=True, timeout=5) as h2:
        url = f"{dev.apns.url}/3/device/{APNS_TOKEN}"
        missing = await h2.post(url, json={"aps": {}}, headers={"apns-topic": "t"})
        assert missing.http_version == "HTTP/2"
        assert (missing.status_code, missing.json()["reason"]) == (403, "MissingProviderToken")
        forged = jwt.encode({"iss": DEV_APNS_TEAM_ID, "iat": int(time.time())}, "x" * 32)
        bad = await h2.post(url, json={"aps": {}}, headers={"authorization": f"bearer {forged}"})
        assert bad.json()["reason"] == "InvalidProviderToken"

        # Enough recorded requests that the control answer spans several HTTP/2 flow-control
        # windows (64 KiB each): the server must wait for WINDOW_UPDATE, not truncate.
        await asyncio.gather(*(h2.post(url, content=b"x" * 4000) for _ in range(40)))
        received = (await h2.get(f"{dev.apns.url}/_emulator/received")).json()
        assert len(received) == 42 and all(r["http_version"] == "2" for r in received)

    # Plain HTTP/1.1 clients (the dev stack, curl) reach the same port for the control endpoints.
    async with httpx.AsyncClient(timeout=5) as h1:
        fault = await h1.post(f"{dev.apns.url}/_emulator/faults", json={"mode": "5xx"})
        assert fault.http_version == "HTTP/1.1" and fault.json()["ok"] is True
        assert len((await h1.get(f"{dev.apns.url}/_emulator/received")).json()) == 42


async def test_apns_client_resigns_an_expired_provider_token(
    dev: DevEmulators, http: httpx.AsyncClient
) -> None:
    client = ApnsClient(make_settings(**dev.settings()))
    try:
        stale = {"iss": DEV_APNS_TEAM_ID, "iat": int(time.time()) - 7200}
        client._jwt = jwt.encode(
            stale, client._key, algorithm="ES256", headers={"kid": DEV_APNS_KEY_ID}
        )
        client._jwt_at = time.monotonic()  # the client believes it is fresh
        await client.send_to(_delivery(Channel.PUSH), APNS_TOKEN)
    finally:
        await client.aclose()
    reasons = [r.headers.get("authorization") for r in dev.apns.received]
    assert len(reasons) == 2 and reasons[0] != reasons[1]
    assert len(dev.apns.accepted) == 1


async def test_dev_set_drives_every_provider_sender(
    dev: DevEmulators, http: httpx.AsyncClient, tmp_path: Path
) -> None:
    store = await _store(tmp_path)
    try:
        senders = build_provider_senders(make_settings(**dev.settings()), store, http)
        assert set(senders) == {Channel.PUSH, Channel.SMS, Channel.SLACK}
        devices = [
            Device(user_id="u-1", platform=Platform.FCM, token="fcm-token-1234"),
            Device(user_id="u-1", platform=Platform.APNS, token=APNS_TOKEN),
        ]
        await senders[Channel.PUSH].send(_delivery(Channel.PUSH, devices=devices))
        await senders[Channel.SMS].send(_delivery(Channel.SMS))
        await senders[Channel.SLACK].send(_delivery(Channel.SLACK))
    finally:
        await store.close()
    assert len(dev.fcm.messages) == len(dev.apns.accepted) == len(dev.twilio.messages) == 1
    assert dev.slack.posted[0].via == "chat.postMessage"


async def test_nothing_is_built_without_credentials(
    http: httpx.AsyncClient, tmp_path: Path
) -> None:
    store = await _store(tmp_path)
    try:
        senders = build_provider_senders(make_settings(), store, http)
    finally:
        await store.close()
    assert set(senders) == {Channel.SLACK}  # Slack webhooks need no server-side credentials


async def _store(tmp_path: Path) -> Store:
    store = await Store.open(f"sqlite+aiosqlite:///{tmp_path / 'emulators.db'}")
    await store.upsert_user(User(id="u-1"))
    return store


def _delivery(channel: Channel, devices: list[Device] | None = None) -> OutgoingMessage:
    return OutgoingMessage(
        notification_id="n-3",
        idempotency_key=f"n-3:{channel.value}",
        user=User(id="u-1", phone="+14155550100", slack_user_id="U0000DEV"),
        message=RenderedMessage(channel=channel, subject="Hello", text="From the emulators"),
        devices=devices or [],
    )


def production_settings(**overrides: Any) -> Settings:
    # Whatever else production insists on, set so that only the provider check can fail.
    secret = SecretStr("whsec_cHJvZHVjdGlvbi1zZWNyZXQtZm9yLXRoZS10ZXN0cw==")
    return Settings(
        _env_file=None,
        environment="production",
        webhook_secret=secret,
        tracking_secret=secret,
        receipt_secret=secret,
        inbox_secret=secret,
        payload_keys=SecretStr("k1:dGlkaW5ncy10ZXN0LXBheWxvYWQta2V5LTMyLWJ5dGU="),
        **overrides,
    )


def test_production_refuses_a_configured_provider_left_on_its_emulator() -> None:
    with pytest.raises(ValidationError, match="TIDINGS_TWILIO_BASE_URL must be an https"):
        production_settings(twilio_account_sid=DEV_ACCOUNT_SID)
    with pytest.raises(ValidationError, match="TIDINGS_APNS_BASE_URL must be an https"):
        production_settings(apns_key_file=Path("key.p8"))
    # Unconfigured providers may keep their defaults; configured ones on https are fine.
    production_settings()
    production_settings(
        twilio_account_sid=DEV_ACCOUNT_SID, twilio_base_url="https://api.twilio.com"
    )
