"""Email over SMTP (aiosmtplib), with errors classified where we meet the server.

The Message-ID is derived from the notification id, not generated per attempt, so a retry after a
lost reply re-sends a message the receiving side can recognise as the same one.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime

import aiosmtplib

from tidings.channels.base import (
    OutgoingMessage,
    PermanentChannelError,
    ProviderAcceptance,
    TransientChannelError,
    mask_email,
)
from tidings.channels.smtp_pool import PooledSMTP, SmtpPool
from tidings.models import Channel, DeliveryStatus
from tidings.settings import Settings

logger = logging.getLogger(__name__)

# Characters kept as they are in the left part of a Message-ID; everything else is escaped as =XX
# so that distinct notification ids can never map to the same Message-ID.
_SAFE_ID_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")


def _sanitise_id_part(value: str) -> str:
    out: list[str] = []
    for ch in value:
        if ch in _SAFE_ID_CHARS:
            out.append(ch)
        else:
            out.extend(f"={b:02X}" for b in ch.encode())
    return "".join(out)


def message_id_for(notification_id: str, channel: Channel, domain: str) -> str:
    """The stable Message-ID of one notification's email, angle brackets included."""
    return f"<{_sanitise_id_part(notification_id)}.{channel.value}@{domain}>"


def _one_line(value: str) -> str:
    # Rendered subjects may contain newlines; headers must not (and would be refused anyway).
    return " ".join(value.split())


class EmailSender:
    channel = Channel.EMAIL

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        # The name this host gives in EHLO. aiosmtplib looks it up (socket.getfqdn, on a thread
        # of the loop's executor) for every connection it opens, and every send opens one:
        # looked up once per sender instead (README, "Issue 13, seventh round").
        self._local_hostname: str | None = None
        # Connections to this sender's relay, reused across messages (README, "Issue 13, tenth
        # round"); the pool settings at 0 give a connection per message.
        self._pool = SmtpPool(
            self._connect,
            max_idle=settings.smtp_pool_max_idle,
            idle_seconds=settings.smtp_pool_idle_seconds,
            max_messages=settings.smtp_pool_max_messages,
            quit_timeout=settings.smtp_timeout_seconds,
        )

    @property
    def idle_connections(self) -> int:
        return self._pool.idle_connections

    async def aclose(self) -> None:
        """QUIT the idle connections (the worker's shutdown calls this)."""
        await self._pool.aclose()

    async def _connect(self) -> PooledSMTP:
        s = self._settings
        client = PooledSMTP(
            hostname=s.smtp_host,
            port=s.smtp_port,
            username=s.smtp_username,
            password=s.smtp_password.get_secret_value() if s.smtp_password is not None else None,
            start_tls=s.smtp_starttls,
            use_tls=s.smtp_use_tls,
            timeout=s.smtp_timeout_seconds,
            local_hostname=await self._ehlo_name(),
        )
        await client.connect()
        return client

    async def _ehlo_name(self) -> str:
        if self._local_hostname is None:
            self._local_hostname = await asyncio.to_thread(socket.getfqdn)
        return self._local_hostname

    def build_message(self, delivery: OutgoingMessage) -> EmailMessage:
        address = self._address(delivery)
        message = delivery.message
        msg = EmailMessage()
        msg["From"] = self._settings.email_from
        msg["To"] = address
        msg["Subject"] = _one_line(message.subject)
        msg["Date"] = format_datetime(datetime.now(UTC))
        msg["Message-ID"] = message_id_for(
            delivery.notification_id, self.channel, self._settings.message_id_domain
        )
        msg["X-Tidings-Notification"] = delivery.notification_id
        # Tells auto-responders (vacation replies, RFC 3834) not to answer.
        msg["Auto-Submitted"] = "auto-generated"
        if delivery.unsubscribe_url:
            # RFC 2369 and RFC 8058: mail providers show an unsubscribe button that POSTs
            # `List-Unsubscribe=One-Click` to the URL (no mailto: nobody reads replies here).
            msg["List-Unsubscribe"] = f"<{delivery.unsubscribe_url}>"
            msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
        msg.set_content(message.text)
        if message.html is not None:
            msg.add_alternative(message.html, subtype="html")
        return msg

    async def send(self, delivery: OutgoingMessage) -> ProviderAcceptance:
        address = self._address(delivery)
        msg = self.build_message(delivery)
        message_id = str(msg["Message-ID"])
        target = mask_email(address)
        s = self._settings
        try:
            await self._pool.send_message(msg)
        except aiosmtplib.SMTPRecipientsRefused as e:
            replies = "; ".join(f"{r.code} {r.message}" for r in e.recipients)
            reason = f"SMTP server refused recipient {target}: {replies}"
            if any(r.code >= 500 for r in e.recipients):
                raise PermanentChannelError(reason) from e
            raise TransientChannelError(reason) from e
        except aiosmtplib.SMTPResponseException as e:
            # Covers refused sender, refused data, failed AUTH and a refusing greeting: the reply
            # code is what tells a temporary refusal (4xx) from a final one (5xx).
            reason = f"SMTP server replied {e.code} {e.message}"
            if e.code >= 500:
                raise PermanentChannelError(reason) from e
            raise TransientChannelError(reason) from e
        except aiosmtplib.SMTPNotSupported as e:
            # A configuration mismatch (e.g. STARTTLS required but not offered): every retry with
            # the same settings would fail the same way.
            raise PermanentChannelError(f"SMTP server does not support it: {e.message}") from e
        except aiosmtplib.SMTPTimeoutError as e:
            raise TransientChannelError(
                f"SMTP timeout after {s.smtp_timeout_seconds}s talking to "
                f"{s.smtp_host}:{s.smtp_port}: {e.message}"
            ) from e
        except aiosmtplib.SMTPException as e:
            raise TransientChannelError(
                f"SMTP error talking to {s.smtp_host}:{s.smtp_port}: {e.message}"
            ) from e
        except OSError as e:
            raise TransientChannelError(
                f"SMTP connection to {s.smtp_host}:{s.smtp_port} failed: {e}"
            ) from e
        logger.info(
            "email sent notification=%s to=%s message_id=%s",
            delivery.notification_id,
            target,
            message_id,
        )
        return ProviderAcceptance(
            status=DeliveryStatus.SENT, target=target, provider_message_id=message_id
        )

    @staticmethod
    def _address(delivery: OutgoingMessage) -> str:
        if not delivery.user.email:
            raise PermanentChannelError(f"user {delivery.user.id} has no email address")
        return str(delivery.user.email)
