from __future__ import annotations

import asyncio
import re
import socket
from pathlib import Path

import pytest

from starter.dev.smtp_sink import SmtpSink, list_mail, read_mail
from tests.channels.helpers import make_delivery, make_settings
from tests.ports import refused_port
from tidings.channels.base import PermanentChannelError, TransientChannelError
from tidings.channels.email import EmailSender, message_id_for
from tidings.models import Channel, DeliveryStatus, User


def sender_for(sink: SmtpSink, **overrides: object) -> EmailSender:
    return EmailSender(
        make_settings(
            smtp_host=sink.host,
            smtp_port=sink.port,
            message_id_domain="tidings.test",
            email_from="Tidings <noreply@tidings.test>",
            **overrides,
        )
    )


async def test_sends_multipart_text_and_html(sink: SmtpSink) -> None:
    outcome = await sender_for(sink).send(make_delivery(notification_id="order-42"))

    assert outcome.status is DeliveryStatus.SENT
    assert outcome.target == "j***@example.com"
    assert len(sink.messages) == 1
    mail = sink.messages[0]
    assert mail.rcpt_tos == ["jane@example.com"]
    assert mail.mail_from == "noreply@tidings.test"
    msg = mail.parsed()
    assert msg.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in msg.iter_parts()] == ["text/plain", "text/html"]
    assert mail.body("plain") == "Order 42 is on its way.\n"
    assert mail.body("html") == "<p>Order <b>42</b> is on its way.</p>\n"
    assert msg["From"] == "Tidings <noreply@tidings.test>"
    assert msg["To"] == "jane@example.com"
    assert msg["Subject"] == "Your order shipped"
    assert msg["Date"] is not None and msg["Date"].datetime.tzinfo is not None
    assert msg["X-Tidings-Notification"] == "order-42"
    assert msg["Auto-Submitted"] == "auto-generated"
    assert msg["Message-ID"] == "<order-42.email@tidings.test>"
    assert outcome.provider_message_id == mail.message_id == "<order-42.email@tidings.test>"


async def test_text_only_when_no_html(sink: SmtpSink) -> None:
    await sender_for(sink).send(make_delivery(html=None))

    msg = sink.messages[0].parsed()
    assert msg.get_content_type() == "text/plain"
    assert sink.messages[0].body("html") is None


async def test_subject_newlines_cannot_inject_headers(sink: SmtpSink) -> None:
    await sender_for(sink).send(make_delivery(subject="Hello\r\nBcc: evil@example.com"))

    msg = sink.messages[0].parsed()
    assert msg["Subject"] == "Hello Bcc: evil@example.com"
    assert msg["Bcc"] is None
    assert sink.messages[0].rcpt_tos == ["jane@example.com"]


async def test_message_id_is_stable_per_notification(sink: SmtpSink) -> None:
    sender = sender_for(sink)
    first = await sender.send(make_delivery(notification_id="tpl:welcome@u-1"))
    retry = await sender.send(make_delivery(notification_id="tpl:welcome@u-1"))
    other = await sender.send(make_delivery(notification_id="tpl-welcome-u-1"))

    assert first.provider_message_id == retry.provider_message_id
    assert first.provider_message_id != other.provider_message_id
    received = [m.message_id for m in sink.messages]
    assert received == [first.provider_message_id] * 2 + [other.provider_message_id]
    # The left part must be a dot-atom without '@' or ':' for receivers to parse it.
    assert first.provider_message_id is not None
    assert re.fullmatch(r"<[A-Za-z0-9_=-]+\.email@tidings\.test>", first.provider_message_id)


def test_message_id_escaping_keeps_ids_distinct() -> None:
    ids = ["a:b", "a=3Ab", "a.b", "a-b", "a@b", "ä"]
    made = {message_id_for(i, Channel.EMAIL, "x.test") for i in ids}
    assert len(made) == len(ids)


async def test_unknown_user_550_is_permanent(sink: SmtpSink) -> None:
    sink.reject_permanently.add("jane@example.com")

    with pytest.raises(PermanentChannelError) as exc:
        await sender_for(sink).send(make_delivery())

    assert "550" in exc.value.reason and "no such user" in exc.value.reason
    assert sink.messages == []


async def test_greylisted_recipient_450_is_transient(sink: SmtpSink) -> None:
    sink.defer_recipients.add("jane@example.com")

    with pytest.raises(TransientChannelError) as exc:
        await sender_for(sink).send(make_delivery())

    assert not isinstance(exc.value, PermanentChannelError)
    assert "450" in exc.value.reason


async def test_451_is_transient_and_a_retry_succeeds(sink: SmtpSink) -> None:
    sink.fail_transiently(1)
    sender = sender_for(sink)

    with pytest.raises(TransientChannelError) as exc:
        await sender.send(make_delivery())
    assert "451" in exc.value.reason
    assert sink.messages == []

    outcome = await sender.send(make_delivery())
    assert outcome.status is DeliveryStatus.SENT
    assert len(sink.messages) == 1


async def test_nothing_listening_is_transient() -> None:
    with refused_port() as port, pytest.raises(TransientChannelError) as exc:
        sender = EmailSender(make_settings(smtp_host="127.0.0.1", smtp_port=port))
        await sender.send(make_delivery())
    assert "127.0.0.1" in exc.value.reason


async def test_silent_server_times_out_as_transient() -> None:
    async def never_greet(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # hold the connection open until the client leaves
        writer.close()

    server = await asyncio.start_server(never_greet, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        sender = EmailSender(
            make_settings(smtp_host="127.0.0.1", smtp_port=port, smtp_timeout_seconds=0.3)
        )
        with pytest.raises(TransientChannelError) as exc:
            await sender.send(make_delivery())
        assert "timeout" in exc.value.reason.lower()
    finally:
        server.close()
        await server.wait_closed()


async def test_user_without_email_is_permanent(sink: SmtpSink) -> None:
    with pytest.raises(PermanentChannelError) as exc:
        await sender_for(sink).send(make_delivery(user=User(id="u-9")))
    assert "u-9" in exc.value.reason and "email" in exc.value.reason
    assert sink.messages == []


async def test_credentials_are_used_and_bad_ones_are_permanent() -> None:
    async with SmtpSink(credentials={"app": "s3cret"}) as sink:
        good = sender_for(sink, smtp_username="app", smtp_password="s3cret")
        assert (await good.send(make_delivery())).status is DeliveryStatus.SENT

        bad = sender_for(sink, smtp_username="app", smtp_password="wrong")
        with pytest.raises(PermanentChannelError) as exc:
            await bad.send(make_delivery())
        assert "535" in exc.value.reason

        anonymous = sender_for(sink)
        with pytest.raises(PermanentChannelError) as exc:
            await anonymous.send(make_delivery())
        assert "530" in exc.value.reason
        assert len(sink.messages) == 1


async def test_maildir_is_readable_from_outside(tmp_path: Path) -> None:
    maildir = tmp_path / "mail"
    assert list_mail(maildir) == []
    async with SmtpSink(maildir=maildir) as sink:
        await sender_for(sink).send(make_delivery(notification_id="n-a", subject="First"))
    # A restarted sink on the same maildir appends rather than overwriting.
    async with SmtpSink(maildir=maildir) as sink:
        await sender_for(sink).send(make_delivery(notification_id="n-b", subject="Second"))

    listed = list_mail(maildir)
    assert [m.subject for m in listed] == ["First", "Second"]
    assert [m.message_id for m in listed] == [
        "<n-a.email@tidings.test>",
        "<n-b.email@tidings.test>",
    ]
    one = read_mail(maildir, listed[1].id)
    assert one.raw == sink.messages[0].raw
    assert one.body("plain") == "Order 42 is on its way.\n"
    assert one.rcpt_tos == ["jane@example.com"]
    assert (maildir / f"{one.id}.eml").read_bytes() == one.raw

    with pytest.raises(KeyError):
        read_mail(maildir, "0000000000000-00000000")
    with pytest.raises(ValueError, match="mail_id"):
        read_mail(maildir, "../index")


async def test_every_connection_greets_with_this_hosts_name_looked_up_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The EHLO name is looked up once per sender (not per connection, as aiosmtplib would) and is
    still the host's fully qualified name, on every connection the sender opens."""
    greetings: list[str] = []
    fqdn = socket.getfqdn()
    lookups: list[str] = []

    def counted_getfqdn(name: str = "") -> str:
        lookups.append(name)
        return fqdn

    monkeypatch.setattr(socket, "getfqdn", counted_getfqdn)

    async def refuse_after_ehlo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 test ESMTP\r\n")
        await writer.drain()
        greetings.append((await reader.readline()).decode().strip())
        writer.write(b"421 closing\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(refuse_after_ehlo, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        sender = EmailSender(make_settings(smtp_host="127.0.0.1", smtp_port=port))
        for _ in range(2):
            with pytest.raises(TransientChannelError, match="421"):
                await sender.send(make_delivery())
    finally:
        server.close()
        await server.wait_closed()
    assert greetings == [f"EHLO {fqdn}"] * 2
    assert len(lookups) == 1
