"""Email's SMTP connection reuse, over real SMTP conversations with the dev sink.

Each test that counts connections runs its own sink: the session's sink keeps connections that
other tests' senders leave idle.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from pydantic import ValidationError

from starter.dev.smtp_sink import SmtpSink
from tests.channels.helpers import make_delivery, make_settings
from tidings.channels.base import PermanentChannelError, TransientChannelError
from tidings.channels.email import EmailSender
from tidings.channels.failover import FailoverSender
from tidings.models import Channel, DeliveryStatus, User


@pytest_asyncio.fixture
async def own_sink() -> AsyncIterator[SmtpSink]:
    async with SmtpSink() as s:
        yield s


def sender_for(sink: SmtpSink, **overrides: object) -> EmailSender:
    return EmailSender(make_settings(smtp_host=sink.host, smtp_port=sink.port, **overrides))


def ids(sink: SmtpSink) -> list[str]:
    return [m.parsed()["X-Tidings-Notification"] for m in sink.messages]


async def send_all(sender: EmailSender, *notification_ids: str) -> None:
    for notification_id in notification_ids:
        outcome = await sender.send(make_delivery(notification_id=notification_id))
        assert outcome.status is DeliveryStatus.SENT


async def until_closed(sink: SmtpSink) -> None:
    # The server notices a client's close on its next loop turn; wait for that, not for a time.
    for _ in range(200):
        if sink.open_connections == 0:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{sink.open_connections} connection(s) still open at the sink")


async def test_messages_through_one_sender_share_one_connection(own_sink: SmtpSink) -> None:
    sender = sender_for(own_sink)

    await send_all(sender, *(f"n-{i}" for i in range(5)))

    assert ids(own_sink) == [f"n-{i}" for i in range(5)]
    assert own_sink.connections_opened == 1
    assert own_sink.open_connections == 1
    assert sender.idle_connections == 1
    await sender.aclose()
    await until_closed(own_sink)


async def test_authenticates_once_per_connection() -> None:
    async with SmtpSink(credentials={"app": "s3cret"}) as sink:
        sender = sender_for(sink, smtp_username="app", smtp_password="s3cret")
        await send_all(sender, "n-1", "n-2", "n-3")
        assert ids(sink) == ["n-1", "n-2", "n-3"]
        assert sink.connections_opened == 1
        await sender.aclose()


async def test_server_dropping_idle_connections_costs_no_message(own_sink: SmtpSink) -> None:
    sender = sender_for(own_sink)
    await send_all(sender, "n-1")

    own_sink.drop_connections()
    await until_closed(own_sink)
    await send_all(sender, "n-2")
    own_sink.drop_connections()
    await send_all(sender, "n-3")  # dropped but perhaps not yet noticed by the client

    assert ids(own_sink) == ["n-1", "n-2", "n-3"]
    assert own_sink.connections_opened == 3
    await sender.aclose()


@pytest.mark.parametrize(
    ("reply", "after"),
    [
        ("421 4.3.2 Service shutting down", 0.0),  # a server going away
        (None, 0.0),  # closed without a word at the first command
        (None, 1.0),  # no answer at all: the client's timeout (0.3 s) ends it
    ],
    ids=["421", "closed", "timeout"],
)
async def test_reused_connection_failing_at_mail_is_retried_on_a_new_one(
    own_sink: SmtpSink, reply: str | None, after: float
) -> None:
    sender = sender_for(own_sink, smtp_timeout_seconds=0.3)
    await send_all(sender, "n-1")

    own_sink.hang_up_at_mail(reply=reply, after=after)
    await send_all(sender, "n-2")
    await send_all(sender, "n-3")

    assert ids(own_sink) == ["n-1", "n-2", "n-3"]  # each exactly once
    assert own_sink.connections_opened == 2
    await sender.aclose()


async def test_a_new_connection_failing_at_mail_is_not_retried(own_sink: SmtpSink) -> None:
    """Only a reused connection's failure says the connection was stale; on a new one a 421 is
    the server's answer to this message, transient as before."""
    sender = sender_for(own_sink)
    own_sink.hang_up_at_mail(reply="421 4.3.2 Service shutting down")

    with pytest.raises(TransientChannelError, match="421"):
        await sender.send(make_delivery())

    assert own_sink.messages == []
    assert own_sink.connections_opened == 1
    await send_all(sender, "n-2")
    assert ids(own_sink) == ["n-2"]


async def test_a_second_failure_after_the_retry_is_raised(own_sink: SmtpSink) -> None:
    sender = sender_for(own_sink)
    await send_all(sender, "n-1")

    own_sink.hang_up_at_mail(2)
    with pytest.raises(TransientChannelError, match="421"):
        await sender.send(make_delivery(notification_id="n-2"))

    assert ids(own_sink) == ["n-1"]
    assert own_sink.connections_opened == 2  # one retry, not more


async def test_reply_lost_after_the_data_is_transient_and_not_resent(own_sink: SmtpSink) -> None:
    """The server kept the message and the connection died before its 250: sending again here
    would make a second copy, so the activity's retry (same Message-ID) decides instead."""
    sender = sender_for(own_sink)
    await send_all(sender, "n-1")

    own_sink.hang_up_after_data()
    with pytest.raises(TransientChannelError) as exc:
        await sender.send(make_delivery(notification_id="n-2"))
    assert not isinstance(exc.value, PermanentChannelError)

    assert ids(own_sink) == ["n-1", "n-2"]  # kept once, not sent again
    assert own_sink.connections_opened == 1
    await send_all(sender, "n-3")
    assert ids(own_sink) == ["n-1", "n-2", "n-3"]
    await sender.aclose()


async def test_refusals_on_a_reused_connection_do_not_poison_the_next_message(
    own_sink: SmtpSink,
) -> None:
    sender = sender_for(own_sink)
    await send_all(sender, "n-1")
    own_sink.reject_permanently.add("gone@example.com")
    own_sink.defer_recipients.add("later@example.com")

    with pytest.raises(PermanentChannelError, match="550"):
        await sender.send(make_delivery(user=User(id="u-2", email="gone@example.com")))
    await send_all(sender, "n-2")
    with pytest.raises(TransientChannelError, match="450"):
        await sender.send(make_delivery(user=User(id="u-3", email="later@example.com")))
    await send_all(sender, "n-3")
    own_sink.fail_transiently(1)
    with pytest.raises(TransientChannelError, match="451"):
        await sender.send(make_delivery(notification_id="n-4"))
    await send_all(sender, "n-5")

    assert ids(own_sink) == ["n-1", "n-2", "n-3", "n-5"]
    for mail in own_sink.messages:
        assert mail.rcpt_tos == ["jane@example.com"]
        assert mail.mail_from == "noreply@tidings.localhost"
    assert own_sink.connections_opened == 1
    await sender.aclose()


async def test_an_idle_connection_past_its_time_is_replaced(own_sink: SmtpSink) -> None:
    sender = sender_for(own_sink, smtp_pool_idle_seconds=0.05)
    await send_all(sender, "n-1", "n-2")
    assert own_sink.connections_opened == 1

    await asyncio.sleep(0.1)
    await send_all(sender, "n-3")

    assert ids(own_sink) == ["n-1", "n-2", "n-3"]
    assert own_sink.connections_opened == 2
    await sender.aclose()
    await until_closed(own_sink)  # the expired one was closed, not left behind


async def test_a_connection_carries_at_most_max_messages(own_sink: SmtpSink) -> None:
    sender = sender_for(own_sink, smtp_pool_max_messages=3)

    await send_all(sender, *(f"n-{i}" for i in range(7)))

    assert len(own_sink.messages) == 7
    assert own_sink.connections_opened == 3  # 3 + 3 + 1
    await sender.aclose()


@pytest.mark.parametrize(
    "off",
    [{"smtp_pool_max_idle": 0}, {"smtp_pool_idle_seconds": 0}, {"smtp_pool_max_messages": 0}],
    ids=["max_idle", "idle_seconds", "max_messages"],
)
async def test_any_bound_at_zero_gives_a_connection_per_message(
    own_sink: SmtpSink, off: dict[str, object]
) -> None:
    sender = sender_for(own_sink, **off)

    for i in range(3):
        await send_all(sender, f"n-{i}")
        assert sender.idle_connections == 0
        await until_closed(own_sink)  # QUIT after every message, as before the pool

    assert own_sink.connections_opened == 3
    assert len(own_sink.messages) == 3


async def test_concurrent_sends_each_get_a_connection_and_max_idle_are_kept(
    own_sink: SmtpSink,
) -> None:
    sender = sender_for(own_sink)  # smtp_pool_max_idle: 4 by default

    async def burst(prefix: str) -> None:
        deliveries = [make_delivery(notification_id=f"{prefix}-{i}") for i in range(10)]
        outcomes = await asyncio.gather(*(sender.send(d) for d in deliveries))
        assert all(o.status is DeliveryStatus.SENT for o in outcomes)

    await burst("a")
    assert own_sink.connections_opened == 10
    assert sender.idle_connections == 4
    await burst("b")
    assert own_sink.connections_opened == 16  # the 4 kept were reused

    assert sorted(ids(own_sink)) == sorted(f"{p}-{i}" for p in "ab" for i in range(10))
    await sender.aclose()
    await until_closed(own_sink)


async def test_aclose_quits_idle_connections_and_closes_those_lent_out(
    own_sink: SmtpSink,
) -> None:
    sender = sender_for(own_sink)
    await asyncio.gather(*(sender.send(make_delivery(notification_id=f"n-{i}")) for i in range(3)))
    assert own_sink.open_connections == 3

    own_sink.hold_replies(0.2)
    in_flight = asyncio.create_task(sender.send(make_delivery(notification_id="late")))
    for _ in range(200):  # until the held message is at the sink
        if len(own_sink.messages) == 4:
            break
        await asyncio.sleep(0.01)
    await sender.aclose()
    assert (await in_flight).status is DeliveryStatus.SENT

    assert sender.idle_connections == 0
    await until_closed(own_sink)


async def test_failover_closes_every_relays_connections(own_sink: SmtpSink) -> None:
    async with SmtpSink() as second:
        relays = [(f"relay-{s.port}", sender_for(s)) for s in (own_sink, second)]
        failover = FailoverSender(Channel.EMAIL, relays)
        await failover.send(make_delivery())
        await relays[1][1].send(make_delivery())
        assert own_sink.open_connections == second.open_connections == 1

        await failover.aclose()

        await until_closed(own_sink)
        await until_closed(second)


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        ("smtp_pool_max_idle", -1, "greater than or equal to 0"),
        ("smtp_pool_idle_seconds", -0.5, "greater than or equal to 0"),
        ("smtp_pool_idle_seconds", float("inf"), "finite number"),
        ("smtp_pool_idle_seconds", float("nan"), "finite number"),
        ("smtp_pool_max_messages", -3, "greater than or equal to 0"),
        ("smtp_pool_max_idle", "some", "valid integer"),
    ],
)
def test_bad_pool_settings_name_the_field_and_the_reason(
    field: str, value: object, reason: str
) -> None:
    with pytest.raises(ValidationError) as exc:
        make_settings(**{field: value})
    text = str(exc.value)
    assert field in text and reason in text


def test_pool_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert (lambda s: (s.smtp_pool_max_idle, s.smtp_pool_idle_seconds, s.smtp_pool_max_messages))(
        make_settings()
    ) == (4, 30.0, 100)
    monkeypatch.setenv("TIDINGS_SMTP_POOL_MAX_IDLE", "2")
    monkeypatch.setenv("TIDINGS_SMTP_POOL_IDLE_SECONDS", "12.5")
    monkeypatch.setenv("TIDINGS_SMTP_POOL_MAX_MESSAGES", "0")
    settings = make_settings()
    assert (
        settings.smtp_pool_max_idle,
        settings.smtp_pool_idle_seconds,
        settings.smtp_pool_max_messages,
    ) == (2, 12.5, 0)
