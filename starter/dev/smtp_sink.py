"""A local SMTP server that keeps what it receives, for development and tests.

It runs on the caller's event loop (no extra thread), keeps every message in memory and, given a
maildir, also writes `<id>.eml` plus `index.json` so another process (`tidings mail`) can list and
read them. Fault injection covers the replies a real relay gives: 550 for unknown users, 450 at
RCPT (greylisting), 451 for a whole message; and the ways a relay ends a connection: dropping idle
clients, 421 or silence at MAIL, a message kept whose reply never comes. It counts the connections
it accepts, so tests and benches can see a client's connection reuse.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from datetime import UTC, datetime
from email import policy
from email.parser import BytesParser
from pathlib import Path
from typing import Any

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword

from starter.dev.maildir import (
    ReceivedMail,
    append_to_maildir,
    list_mail,
    new_mail_id,
    read_mail,
)

logger = logging.getLogger(__name__)

__all__ = ["ReceivedMail", "SmtpSink", "list_mail", "read_mail"]


async def _hang_up(server: Any) -> str:
    server.transport.close()
    # aiosmtpd cancels the session's handler when the connection is lost: nothing further goes
    # out, as when a real server goes away mid-conversation.
    await asyncio.get_running_loop().create_future()
    raise AssertionError("unreachable: the lost connection cancels this handler")


class _Handler:
    """aiosmtpd handler hooks; the sink owns the state they consult."""

    def __init__(self, sink: SmtpSink) -> None:
        self._sink = sink

    async def handle_MAIL(
        self, server: Any, session: Any, envelope: Any, address: str, mail_options: list[str]
    ) -> str:
        if self._sink.credentials and not session.authenticated:
            return "530 5.7.0 Authentication required"
        hang_up = self._sink.take_mail_hang_up()
        if hang_up is not None:
            reply, after = hang_up
            await asyncio.sleep(after)
            if reply is not None:
                await server.push(reply)
            return await _hang_up(server)
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]
    ) -> str:
        if address.lower() in self._sink.reject_permanently:
            return "550 5.1.1 no such user"
        if address.lower() in self._sink.defer_recipients:
            return "450 4.2.0 greylisted, try later"
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self._sink.take_transient_failure():
            return "451 4.3.0 try later"
        await self._sink.accept(envelope.mail_from, list(envelope.rcpt_tos), envelope.content)
        if self._sink.take_data_hang_up():
            return await _hang_up(server)
        hold = self._sink.take_reply_hold()
        if hold:
            # Kept, but the sender does not hear so yet: the window in which a crash makes a
            # sender retry a message the server already has.
            await asyncio.sleep(hold)
        return "250 2.0.0 Message accepted for delivery"


class SmtpSink:
    """An SMTP server on `host:port` (port 0 picks a free one; read `.port` after start)."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        maildir: Path | None = None,
        *,
        credentials: dict[str, str] | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.maildir = maildir
        self.credentials = dict(credentials or {})
        self.messages: list[ReceivedMail] = []
        # Lower-cased addresses; mutate freely between sends.
        self.reject_permanently: set[str] = set()
        self.defer_recipients: set[str] = set()
        self._transient_failures = 0
        self._reply_holds: list[float] = []
        self._mail_hang_ups: list[tuple[str | None, float]] = []
        self._data_hang_ups = 0
        # Connections accepted since start (clear() keeps the count: read differences), and the
        # sessions that may still be open (pruned as new ones arrive).
        self.connections_opened = 0
        self._sessions: list[SMTP] = []
        self._server: asyncio.Server | None = None

    def fail_transiently(self, n: int = 1) -> None:
        """Answer `451 try later` to the next `n` messages (at the end of DATA)."""
        if n < 0:
            raise ValueError("n must be >= 0")
        self._transient_failures = n

    def take_transient_failure(self) -> bool:
        if self._transient_failures > 0:
            self._transient_failures -= 1
            return True
        return False

    def hold_replies(self, seconds: float, n: int = 1) -> None:
        """Keep the next `n` messages but answer `250` only after `seconds`."""
        self._reply_holds.extend([seconds] * n)

    def take_reply_hold(self) -> float:
        return self._reply_holds.pop(0) if self._reply_holds else 0.0

    def hang_up_at_mail(
        self, n: int = 1, *, reply: str | None = "421 4.3.2 Service shutting down", after: float = 0
    ) -> None:
        """At the next `n` MAIL commands, wait `after` seconds, answer `reply` (None: nothing)
        and close the connection."""
        self._mail_hang_ups.extend([(reply, after)] * n)

    def take_mail_hang_up(self) -> tuple[str | None, float] | None:
        return self._mail_hang_ups.pop(0) if self._mail_hang_ups else None

    def hang_up_after_data(self, n: int = 1) -> None:
        """Keep the next `n` messages but close the connection instead of answering."""
        self._data_hang_ups += n

    def take_data_hang_up(self) -> bool:
        if self._data_hang_ups > 0:
            self._data_hang_ups -= 1
            return True
        return False

    @property
    def open_connections(self) -> int:
        return sum(1 for session in self._sessions if session.transport is not None)

    def drop_connections(self) -> None:
        """Close every open connection without a word, as a relay drops its idle clients."""
        for session in self._sessions:
            if session.transport is not None:
                session.transport.close()

    def clear(self) -> None:
        """Forget received messages (in memory only) and every injected fault."""
        self.messages.clear()
        self.reject_permanently.clear()
        self.defer_recipients.clear()
        self._transient_failures = 0
        self._reply_holds.clear()
        self._mail_hang_ups.clear()
        self._data_hang_ups = 0

    async def start(self) -> None:
        if self._server is not None:
            raise RuntimeError("SmtpSink already started")
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(self._protocol, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        logger.info("SMTP sink listening on %s:%d", self.host, self.port)

    async def stop(self) -> None:
        if self._server is None:
            return
        self._server.close()
        # Clients that keep connections open (the email channel's pool) would otherwise hold
        # wait_closed() up on Python 3.12+, which waits for every connection.
        self.drop_connections()
        await self._server.wait_closed()
        self._server = None

    async def __aenter__(self) -> SmtpSink:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def accept(self, mail_from: str, rcpt_tos: list[str], raw: bytes) -> ReceivedMail:
        now = datetime.now(UTC)
        headers = BytesParser(policy=policy.default).parsebytes(raw, headersonly=True)
        mail = ReceivedMail(
            id=new_mail_id(now),
            mail_from=mail_from,
            rcpt_tos=rcpt_tos,
            subject=str(headers.get("Subject", "")),
            message_id=str(headers["Message-ID"]) if headers["Message-ID"] else None,
            received_at=now,
            raw=raw,
        )
        if self.maildir is not None:
            await asyncio.to_thread(append_to_maildir, self.maildir, mail)
        self.messages.append(mail)
        logger.info("SMTP sink received %s for %s", mail.id, ", ".join(rcpt_tos))
        return mail

    def _protocol(self) -> SMTP:
        kwargs: dict[str, Any] = {}
        if self.credentials:
            # Plain-text AUTH is fine on loopback; it lets tests exercise credentials.
            kwargs.update(auth_require_tls=False, authenticator=self._authenticate)
        session = SMTP(
            _Handler(self),
            hostname="tidings-sink.localhost",
            loop=asyncio.get_running_loop(),
            **kwargs,
        )
        self.connections_opened += 1
        # Keep those not yet started (asyncio calls connection_made on a later turn) and those
        # still open.
        self._sessions = [s for s in self._sessions if s.session is None or s.transport is not None]
        self._sessions.append(session)
        return session

    def _authenticate(
        self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
    ) -> AuthResult:
        if isinstance(auth_data, LoginPassword):
            login = auth_data.login.decode(errors="replace")
            expected = self.credentials.get(login)
            if expected is not None and secrets.compare_digest(
                expected.encode(), auth_data.password
            ):
                return AuthResult(success=True)
        return AuthResult(success=False, handled=False)
