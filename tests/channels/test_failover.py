"""Provider failover between two real SMTP relays."""

from __future__ import annotations

from pathlib import Path

import pytest

from starter.dev.smtp_sink import SmtpSink
from tests.support import make_settings
from tidings.channels.base import OutgoingMessage, PermanentChannelError, TransientChannelError
from tidings.channels.failover import FailoverSender
from tidings.models import Channel, RenderedMessage, User
from tidings.settings import SmtpRelay
from worker.main import build_email_sender


def _delivery(n: int, email: str = "ann@example.com") -> OutgoingMessage:
    return OutgoingMessage(
        notification_id=f"n{n}",
        idempotency_key=f"n{n}:email",
        user=User(id="ann", email=email),
        message=RenderedMessage(channel=Channel.EMAIL, subject="Hi", text="Hello"),
    )


async def test_second_relay_takes_over_and_the_first_is_marked_down(tmp_path: Path) -> None:
    async with SmtpSink() as primary, SmtpSink() as secondary:
        settings = make_settings(
            tmp_path,
            smtp_port=primary.port,
            smtp_fallback_relays=[SmtpRelay(host="127.0.0.1", port=secondary.port)],
        )
        sender = build_email_sender(settings)
        assert isinstance(sender, FailoverSender)
        primary_name = f"127.0.0.1:{primary.port}"

        await sender.send(_delivery(0))
        assert (len(primary.messages), len(secondary.messages)) == (1, 0)

        primary.fail_transiently(3)  # 451 three times: past the budget, marked down
        for n in range(1, 4):
            await sender.send(_delivery(n))
        assert len(secondary.messages) == 3
        assert sender.is_down(primary_name)

        await sender.send(_delivery(4))  # skips the primary while it is down
        assert len(secondary.messages) == 4
        assert len(primary.messages) == 1


async def test_permanent_errors_do_not_fail_over(tmp_path: Path) -> None:
    async with SmtpSink() as primary, SmtpSink() as secondary:
        primary.reject_permanently.add("bad@example.com")
        settings = make_settings(
            tmp_path,
            smtp_port=primary.port,
            smtp_fallback_relays=[SmtpRelay(host="127.0.0.1", port=secondary.port)],
        )
        sender = build_email_sender(settings)
        with pytest.raises(PermanentChannelError, match="550"):
            await sender.send(_delivery(1, "bad@example.com"))
        assert secondary.messages == []


async def test_every_relay_failing_is_transient_and_names_each(tmp_path: Path) -> None:
    async with SmtpSink() as primary, SmtpSink() as secondary:
        primary.fail_transiently(1)
        secondary.fail_transiently(1)
        settings = make_settings(
            tmp_path,
            smtp_port=primary.port,
            smtp_fallback_relays=[SmtpRelay(host="127.0.0.1", port=secondary.port)],
        )
        sender = build_email_sender(settings)
        with pytest.raises(TransientChannelError) as info:
            await sender.send(_delivery(1))
        assert f"127.0.0.1:{primary.port}" in info.value.reason
        assert f"127.0.0.1:{secondary.port}" in info.value.reason
