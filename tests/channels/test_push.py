"""Push over real HTTP against the FCM (HTTP/1.1 + OAuth) and APNs (HTTP/2) emulators, with dead
tokens pruned from a real SQLite store."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
import pytest_asyncio

from starter.dev.emulators.apns import ApnsEmulator, dev_apns_key
from starter.dev.emulators.fcm import FcmEmulator, dev_service_account
from tests.channels.helpers import make_settings
from tidings.channels.base import (
    OutgoingMessage,
    PermanentChannelError,
    RateLimitedError,
    TransientChannelError,
)
from tidings.channels.push import PushSender
from tidings.channels.push_apns import ApnsClient, apns_id
from tidings.channels.push_fcm import JWT_BEARER, SCOPE, FcmClient
from tidings.models import Channel, Device, Platform, Priority, RenderedMessage, User
from tidings.store import Store

KEY_ID, TEAM_ID, TOPIC = "KEY0000001", "TEAM000001", "app.tidings.test"
FCM_A, FCM_B = "fcm-token-aaaaaaaa", "fcm-token-bbbbbbbb"
APNS_A, APNS_B = "a" * 64, "b" * 64


@dataclass
class Providers:
    fcm: FcmEmulator
    apns: ApnsEmulator
    fcm_key: Path
    apns_key: Path


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def providers(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Providers]:
    keys = tmp_path_factory.mktemp("push-keys")
    async with FcmEmulator(port=0) as fcm, ApnsEmulator(port=0) as apns:
        fcm_key = dev_service_account(keys / "sa.json", token_uri=f"{fcm.url}/token")
        fcm.trust_service_account(fcm_key)
        apns_key = dev_apns_key(keys / "apns.p8")
        apns.trust_key(KEY_ID, TEAM_ID, apns_key)
        yield Providers(fcm, apns, fcm_key, apns_key)


@pytest.fixture
def emulators(providers: Providers) -> Providers:
    providers.fcm.reset()
    providers.apns.reset()
    return providers


@pytest_asyncio.fixture(loop_scope="session")
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    s = await Store.open(f"sqlite+aiosqlite:///{tmp_path / 'push.db'}")
    await s.upsert_user(User(id="u-1"))
    yield s
    await s.close()


@pytest_asyncio.fixture(loop_scope="session")
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as client:
        yield client


def settings_for(p: Providers, **overrides: Any) -> Any:
    values: dict[str, Any] = {
        "fcm_base_url": p.fcm.url,
        "fcm_service_account_file": p.fcm_key,
        "apns_base_url": p.apns.url,
        "apns_key_file": p.apns_key,
        "apns_key_id": KEY_ID,
        "apns_team_id": TEAM_ID,
        "apns_topic": TOPIC,
        "fcm_timeout_seconds": 2.0,
        "apns_timeout_seconds": 2.0,
    }
    return make_settings(**(values | overrides))


@pytest_asyncio.fixture(loop_scope="session")
async def sender(
    emulators: Providers, store: Store, http: httpx.AsyncClient
) -> AsyncIterator[PushSender]:
    settings = settings_for(emulators)
    s = PushSender(store, fcm=FcmClient(settings, http), apns=ApnsClient(settings))
    yield s
    await s.aclose()


async def register(store: Store, *devices: tuple[Platform, str]) -> list[Device]:
    for platform, token in devices:
        await store.add_device(Device(user_id="u-1", platform=platform, token=token))
    return await store.list_devices("u-1")


def delivery(
    devices: list[Device],
    *,
    priority: Priority = Priority.HIGH,
    expires_at: datetime | None = None,
    body: str = "Order 42 is on its way.",
    title: str = "Shipped",
    link: str | None = None,
) -> OutgoingMessage:
    return OutgoingMessage(
        notification_id="n-1",
        idempotency_key="n-1:push",
        user=User(id="u-1"),
        message=RenderedMessage(channel=Channel.PUSH, subject=title, text=body),
        priority=priority,
        expires_at=expires_at,
        devices=devices,
        link=link,
    )


async def stored_tokens(store: Store) -> set[str]:
    return {d.token for d in await store.list_devices("u-1")}


async def test_good_path_reaches_both_platforms_with_the_real_wire_format(
    emulators: Providers, store: Store, sender: PushSender
) -> None:
    devices = await register(store, (Platform.FCM, FCM_A), (Platform.APNS, APNS_A))
    expires = datetime.now(UTC) + timedelta(hours=1)
    outcome = await sender.send(delivery(devices, expires_at=expires))

    assert outcome.target == "fcm-to…, aaaaaa…"
    assert outcome.provider_message_id is not None
    assert "projects/tidings-dev/messages/" in outcome.provider_message_id

    token_req, send_req = emulators.fcm.received
    assert token_req.path == "/token" and token_req.form()["grant_type"] == JWT_BEARER
    claims = jwt.decode(token_req.form()["assertion"], options={"verify_signature": False})
    assert claims["scope"] == SCOPE and claims["aud"] == f"{emulators.fcm.url}/token"
    assert send_req.path == "/v1/projects/tidings-dev/messages:send"
    assert send_req.headers["authorization"].startswith("Bearer ya29.dev-")
    message = send_req.json()["message"]
    assert message["token"] == FCM_A
    assert message["notification"] == {"title": "Shipped", "body": "Order 42 is on its way."}
    ids = {"notification_id": "n-1", "tidings_notification_id": "n-1", "priority": "high"}
    assert message["data"] == ids
    assert message["android"]["priority"] == "HIGH"
    assert message["android"]["notification"] == {"tag": "n-1"}
    assert 3500 <= int(message["android"]["ttl"].removesuffix("s")) <= 3600

    (apns_req,) = emulators.apns.received
    assert apns_req.http_version == "2"  # real HTTP/2 (h2c), not a fallback to HTTP/1.1
    assert apns_req.path == f"/3/device/{APNS_A}"
    h = apns_req.headers
    assert h["apns-topic"] == TOPIC and h["apns-push-type"] == "alert"
    assert h["apns-priority"] == "10"
    assert h["apns-expiration"] == str(int(expires.timestamp()))
    assert h["apns-collapse-id"] == "n-1"
    assert h["apns-id"] == apns_id("n-1:push", APNS_A) == str(uuid.UUID(h["apns-id"]))
    assert jwt.get_unverified_header(h["authorization"].split()[1])["kid"] == KEY_ID
    assert apns_req.json() == {
        "aps": {"alert": {"title": "Shipped", "body": "Order 42 is on its way."}},
        **ids,
    }


async def test_the_link_reaches_the_app_in_both_payloads(
    emulators: Providers, store: Store, sender: PushSender
) -> None:
    devices = await register(store, (Platform.FCM, FCM_A), (Platform.APNS, APNS_A))
    await sender.send(delivery(devices, link="https://t.example/t/abc"))
    fcm = emulators.fcm.received[-1].json()["message"]["data"]
    apns = emulators.apns.received[-1].json()
    for payload in (fcm, apns):
        assert payload["url"] == "https://t.example/t/abc"
        assert payload["tidings_notification_id"] == "n-1"


async def test_normal_priority_no_expiry_no_title(
    emulators: Providers, store: Store, sender: PushSender
) -> None:
    devices = await register(store, (Platform.FCM, FCM_A), (Platform.APNS, APNS_A))
    await sender.send(delivery(devices, priority=Priority.LOW, title=""))
    message = emulators.fcm.received[-1].json()["message"]
    assert message["android"]["priority"] == "NORMAL" and "ttl" not in message["android"]
    assert message["notification"] == {"body": "Order 42 is on its way."}
    apns = emulators.apns.received[-1]
    assert apns.headers["apns-priority"] == "5" and "apns-expiration" not in apns.headers
    assert apns.json()["aps"]["alert"] == {"body": "Order 42 is on its way."}


async def test_a_retry_reuses_the_apns_id(
    emulators: Providers, store: Store, sender: PushSender
) -> None:
    devices = await register(store, (Platform.APNS, APNS_A), (Platform.APNS, APNS_B))
    await sender.send(delivery(devices))
    await sender.send(delivery(devices))
    sent = [(r.path.rsplit("/", 1)[1], r.headers["apns-id"]) for r in emulators.apns.received]
    assert len(sent) == 4
    # One id per device, the same on every attempt.
    assert set(sent) == {
        (APNS_A, apns_id("n-1:push", APNS_A)),
        (APNS_B, apns_id("n-1:push", APNS_B)),
    }


async def test_access_token_is_fetched_once_for_concurrent_sends(
    emulators: Providers, store: Store, sender: PushSender
) -> None:
    tokens = [f"fcm-token-{i:08d}" for i in range(4)]
    devices = await register(store, *[(Platform.FCM, t) for t in tokens])
    await asyncio.gather(sender.send(delivery(devices)), sender.send(delivery(devices)))
    paths = [r.path for r in emulators.fcm.received]
    assert paths.count("/token") == 1
    assert len(emulators.fcm.messages) == 8


async def test_revoked_access_token_is_refreshed_once(
    emulators: Providers, store: Store, sender: PushSender
) -> None:
    devices = await register(store, (Platform.FCM, FCM_A))
    await sender.send(delivery(devices))
    emulators.fcm.expire_access_tokens()
    await sender.send(delivery(devices))
    statuses = [r.path for r in emulators.fcm.received]
    assert statuses.count("/token") == 2
    assert len(emulators.fcm.messages) == 2


async def test_401_after_a_fresh_token_is_transient(
    emulators: Providers, store: Store, sender: PushSender
) -> None:
    devices = await register(store, (Platform.FCM, FCM_A))
    emulators.fcm.token_lifetime = 0  # every token it issues is already expired
    try:
        with pytest.raises(TransientChannelError, match="401 twice"):
            await sender.send(delivery(devices))
    finally:
        emulators.fcm.token_lifetime = 3600


@pytest.mark.parametrize("platform", [Platform.FCM, Platform.APNS])
async def test_5xx_is_transient(
    emulators: Providers, store: Store, sender: PushSender, platform: Platform
) -> None:
    devices = await register(store, (platform, FCM_A if platform is Platform.FCM else APNS_A))
    target = emulators.fcm if platform is Platform.FCM else emulators.apns
    target.fail_next(1, status=503)
    with pytest.raises(TransientChannelError, match="503") as info:
        await sender.send(delivery(devices))
    assert not isinstance(info.value, RateLimitedError)
    await sender.send(delivery(devices))  # the fault was used up: the next send goes through


@pytest.mark.parametrize("platform", [Platform.FCM, Platform.APNS])
async def test_429_is_rate_limited_with_retry_after(
    emulators: Providers, store: Store, sender: PushSender, platform: Platform
) -> None:
    devices = await register(store, (platform, FCM_A if platform is Platform.FCM else APNS_A))
    (emulators.fcm if platform is Platform.FCM else emulators.apns).rate_limit_next(7)
    with pytest.raises(RateLimitedError) as info:
        await sender.send(delivery(devices))
    assert info.value.retry_after == 7


@pytest.mark.parametrize("platform", [Platform.FCM, Platform.APNS])
async def test_slow_provider_beyond_the_timeout_is_transient(
    emulators: Providers, store: Store, http: httpx.AsyncClient, platform: Platform
) -> None:
    settings = settings_for(emulators, fcm_timeout_seconds=0.3, apns_timeout_seconds=0.3)
    sender = PushSender(store, fcm=FcmClient(settings, http), apns=ApnsClient(settings))
    devices = await register(store, (platform, FCM_A if platform is Platform.FCM else APNS_A))
    (emulators.fcm if platform is Platform.FCM else emulators.apns).slow_next(3)
    try:
        with pytest.raises(TransientChannelError, match=r"timed out after 0.3s"):
            await sender.send(delivery(devices))
    finally:
        await sender.aclose()


async def test_dead_tokens_are_pruned_and_other_devices_still_get_it(
    emulators: Providers, store: Store, sender: PushSender
) -> None:
    devices = await register(
        store, (Platform.FCM, FCM_A), (Platform.FCM, FCM_B), (Platform.APNS, APNS_A)
    )
    emulators.fcm.invalidate(FCM_A)
    emulators.apns.invalidate(APNS_A)
    outcome = await sender.send(delivery(devices))
    assert outcome.target == "fcm-to…"
    assert [m["token"] for m in emulators.fcm.messages] == [FCM_B]
    assert await stored_tokens(store) == {FCM_B}


async def test_invalid_argument_about_the_token_prunes_it(
    emulators: Providers, store: Store, sender: PushSender
) -> None:
    devices = await register(store, (Platform.FCM, FCM_A), (Platform.APNS, APNS_A))
    emulators.fcm.inject({"mode": "invalid_token", "token": FCM_A, "error": "INVALID_ARGUMENT"})
    await sender.send(delivery(devices))
    assert await stored_tokens(store) == {APNS_A}


async def test_every_token_dead_is_permanent_and_all_are_removed(
    emulators: Providers, store: Store, sender: PushSender
) -> None:
    devices = await register(store, (Platform.FCM, FCM_A), (Platform.APNS, APNS_A))
    emulators.fcm.invalidate(FCM_A)
    emulators.apns.invalidate(APNS_A)
    with pytest.raises(PermanentChannelError, match=r"all push tokens are invalid \(removed 2\)"):
        await sender.send(delivery(devices))
    assert await stored_tokens(store) == set()


async def test_dead_token_plus_outage_is_transient_and_still_prunes(
    emulators: Providers, store: Store, sender: PushSender
) -> None:
    devices = await register(store, (Platform.FCM, FCM_A), (Platform.APNS, APNS_A))
    emulators.fcm.invalidate(FCM_A)
    emulators.apns.fail_next(1)
    with pytest.raises(TransientChannelError, match="InternalServerError"):
        await sender.send(delivery(devices))
    assert await stored_tokens(store) == {APNS_A}


async def test_one_device_rate_limited_still_counts_as_sent(
    emulators: Providers, store: Store, sender: PushSender
) -> None:
    devices = await register(store, (Platform.FCM, FCM_A), (Platform.APNS, APNS_A))
    emulators.apns.rate_limit_next(5)
    outcome = await sender.send(delivery(devices))
    assert outcome.target == "fcm-to…"
    assert await stored_tokens(store) == {FCM_A, APNS_A}  # a rate limit is not a dead token


@pytest.mark.parametrize("platform", [Platform.FCM, Platform.APNS])
async def test_malformed_provider_response_is_transient(
    emulators: Providers, store: Store, sender: PushSender, platform: Platform
) -> None:
    devices = await register(store, (platform, FCM_A if platform is Platform.FCM else APNS_A))
    (emulators.fcm if platform is Platform.FCM else emulators.apns).malformed_next()
    with pytest.raises(TransientChannelError, match="malformed body"):
        await sender.send(delivery(devices))
    assert len(await stored_tokens(store)) == 1


async def test_payload_over_4_kib_is_permanent_and_never_sent(
    emulators: Providers, store: Store, sender: PushSender
) -> None:
    devices = await register(store, (Platform.FCM, FCM_A), (Platform.APNS, APNS_A))
    too_big = r"payload is 4[12]\d\d bytes; the limit is 4096"
    with pytest.raises(PermanentChannelError, match=too_big):
        await sender.send(delivery(devices, body="x" * 4100))
    assert emulators.fcm.messages == [] and emulators.apns.received == []
    assert [r.path for r in emulators.fcm.received] in ([], ["/token"])


async def test_untrusted_apns_key_is_permanent_with_apples_reason(
    emulators: Providers, store: Store, tmp_path: Path
) -> None:
    other_key = dev_apns_key(tmp_path / "other.p8")
    settings = settings_for(emulators, apns_key_file=other_key)
    sender = PushSender(store, apns=ApnsClient(settings))
    devices = await register(store, (Platform.APNS, APNS_A))
    try:
        with pytest.raises(PermanentChannelError, match="403 InvalidProviderToken"):
            await sender.send(delivery(devices))
    finally:
        await sender.aclose()
    assert await stored_tokens(store) == {APNS_A}


async def test_untrusted_service_account_is_permanent(
    emulators: Providers, store: Store, http: httpx.AsyncClient, tmp_path: Path
) -> None:
    key = dev_service_account(
        tmp_path / "other.json",
        token_uri=f"{emulators.fcm.url}/token",
        client_email="rogue@x.iam.gserviceaccount.com",
    )
    settings = settings_for(emulators, fcm_service_account_file=key)
    sender = PushSender(store, fcm=FcmClient(settings, http))
    devices = await register(store, (Platform.FCM, FCM_A))
    with pytest.raises(
        PermanentChannelError, match=r"refused the service-account key .*invalid_grant"
    ):
        await sender.send(delivery(devices))


async def test_no_devices_and_unconfigured_platform_are_permanent(
    emulators: Providers, store: Store, http: httpx.AsyncClient
) -> None:
    sender = PushSender(store, fcm=FcmClient(settings_for(emulators), http))
    with pytest.raises(PermanentChannelError, match="no registered push device"):
        await sender.send(delivery([]))
    devices = await register(store, (Platform.APNS, APNS_A))
    with pytest.raises(PermanentChannelError, match="no apns credentials configured"):
        await sender.send(delivery(devices))
