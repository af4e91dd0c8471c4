"""The send protocol (tidings.delivery) against a real SQLite store and a recording sender: the
ledger stops a second send, expiry and missing providers are permanent, rendering errors and
provider errors come out typed, and only an accepted send is written to the ledger."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tests.fakes import ACCEPTED, RecordingSender
from tests.store.test_notifications import record
from tidings.channels.base import (
    PermanentChannelError,
    ProviderAcceptance,
    RateLimitedError,
    TransientChannelError,
)
from tidings.delivery import SendRequest, Sent, ledger_key, send
from tidings.errors import NotFound
from tidings.models import (
    Channel,
    ChannelResult,
    DeliveryStatus,
    Device,
    NotificationStatus,
    Platform,
    TemplateContent,
    TemplateDefinition,
    User,
)
from tidings.rendering import TemplateError
from tidings.store import Store

NOW = datetime(2026, 3, 4, 12, 0, tzinfo=UTC)


def request(**overrides: object) -> SendRequest:
    values: dict[str, object] = {
        "notification_id": "n-1",
        "channel": Channel.EMAIL,
        "user_id": "ada",
        "template_id": "hello",
        "template_version": 1,
        "data": {"name": "Ada"},
        **overrides,
    }
    return SendRequest(**values)  # type: ignore[arg-type]


@pytest.fixture
async def store(sqlite_store: Store) -> Store:
    await sqlite_store.upsert_user(User(id="ada", email="ada@example.com", locale="fr"))
    await sqlite_store.add_template_version(
        TemplateDefinition(
            id="hello",
            channels=[Channel.EMAIL, Channel.PUSH],
            content=TemplateContent(subject="Hi {{ name }}", text="Hello {{ name }}"),
            locales={"fr": TemplateContent(subject="Salut {{ name }}", text="Bonjour {{ name }}")},
        )
    )
    return sqlite_store


async def _send(store: Store, sender: RecordingSender, req: SendRequest | None = None) -> Sent:
    return await send(store, {sender.channel: sender}, req or request(), now=lambda: NOW)


async def test_renders_in_the_users_locale_sends_once_and_writes_the_ledger(store: Store) -> None:
    sender = RecordingSender()
    sent = await _send(store, sender)
    assert sent == Sent(ACCEPTED, duplicate=False)
    [message] = sender.sent
    assert (message.message.subject, message.message.text) == ("Salut Ada", "Bonjour Ada")
    assert message.idempotency_key == "n-1:email" == ledger_key("n-1", Channel.EMAIL)
    entry = await store.ledger_get("n-1:email")
    assert entry is not None
    assert (entry.status, entry.target, entry.sent_at) == (ACCEPTED.status, ACCEPTED.target, NOW)


async def test_a_retry_finds_the_ledger_entry_and_does_not_send_again(store: Store) -> None:
    answer = ProviderAcceptance(DeliveryStatus.DELIVERED, "x", provider_message_id="m-1")
    sender = RecordingSender(script=[answer])
    await _send(store, sender)
    again = await _send(store, sender)
    assert again == Sent(answer, duplicate=True)
    assert len(sender.sent) == 1


async def test_the_last_channel_finishes_the_notification_also_on_a_retry(store: Store) -> None:
    """`finish`: the send's transaction writes the notification's final status when its row is
    the last to land; a retry that finds the ledger entry reports it written (the attempt that
    sent may have died before the run heard of it)."""
    sending = ChannelResult(channel=Channel.EMAIL, status=DeliveryStatus.SENDING)
    await record(store, "n-1", template_id="hello", channels=[sending])
    sender = RecordingSender()
    req = request(record_attempt=1, finish=True)
    sent = await _send(store, sender, req)
    assert sent == Sent(ACCEPTED, final_status=NotificationStatus.SENT)
    again = await _send(store, sender, req)
    assert again == Sent(ACCEPTED, duplicate=True, final_status=NotificationStatus.SENT)
    assert len(sender.sent) == 1
    stored = await store.get_notification("n-1")
    assert stored is not None and stored.status is NotificationStatus.SENT


async def test_push_is_handed_the_users_devices(store: Store) -> None:
    await store.add_device(Device(user_id="ada", platform=Platform.FCM, token="tok-12345678"))
    sender = RecordingSender(channel=Channel.PUSH)
    await _send(store, sender, request(channel=Channel.PUSH))
    assert [d.token for d in sender.sent[0].devices] == ["tok-12345678"]


async def test_expired_is_permanent_and_sends_nothing(store: Store) -> None:
    sender = RecordingSender()
    with pytest.raises(PermanentChannelError, match="expired before it could be delivered"):
        await _send(store, sender, request(expires_at=NOW))
    assert sender.sent == []
    await _send(store, sender, request(expires_at=NOW + timedelta(seconds=1)))
    assert len(sender.sent) == 1


async def test_a_channel_without_a_sender_is_permanent(store: Store) -> None:
    with pytest.raises(PermanentChannelError, match="no sms provider is configured"):
        await _send(store, RecordingSender(), request(channel=Channel.SMS))


async def test_data_that_does_not_render_is_a_template_error(store: Store) -> None:
    sender = RecordingSender()
    with pytest.raises(TemplateError, match="name"):
        await _send(store, sender, request(data={}))
    assert sender.sent == []


async def test_a_deleted_user_is_not_found(store: Store) -> None:
    with pytest.raises(NotFound, match="user 'gone'"):
        await _send(store, RecordingSender(), request(user_id="gone"))


@pytest.mark.parametrize(
    "error",
    [
        PermanentChannelError("mailbox does not exist"),
        TransientChannelError("HTTP 503"),
        RateLimitedError("HTTP 429", retry_after=7),
    ],
)
async def test_provider_errors_come_out_typed_and_leave_no_ledger_entry(
    store: Store, error: Exception
) -> None:
    sender = RecordingSender(script=[error])
    with pytest.raises(type(error)) as raised:
        await _send(store, sender)
    assert raised.value is error
    assert await store.ledger_get("n-1:email") is None
    # The next attempt sends (nothing was recorded as sent).
    assert (await _send(store, sender)).duplicate is False
    assert len(sender.sent) == 2
