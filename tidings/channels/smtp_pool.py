"""Connected, authenticated SMTP clients kept for the next message: one pool per relay.

Every provider's relay (SES, SendGrid, Postmark, Mailgun, Gmail) expects clients to reuse
connections: setting one up (TCP, greeting, EHLO, STARTTLS and EHLO again, AUTH) costs both sides
more than the message it carries. The pool keeps at most `max_idle` idle connections, reuses one
only while it has been idle less than `idle_seconds` and has carried fewer than `max_messages`
messages, and lends each to one message at a time. Any of the three at 0 gives a connection per
message (connect, send, QUIT), as before the pool.

A reused connection may have been closed by the server while it sat idle (servers drop idle
clients, restart, or answer 421 when shutting down). `send_message` retries such a message once on
a new connection, but only when the failure came before the message's data went out: see
`_lost_before_data` for where that line is drawn and why.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any

import aiosmtplib

logger = logging.getLogger(__name__)

# RFC 5321 4.2.3: "Service not available, closing transmission channel", the reply a server gives
# to any command when it is going away (shutdown, too long idle, too many messages).
_CLOSING = 421


class PooledSMTP(aiosmtplib.SMTP):
    """An aiosmtplib client that remembers what judging a failed message needs: whether the DATA
    command was reached (from then on the server may have the message) and whether the RSET that
    aiosmtplib sends after a refusal left the envelope empty."""

    data_started = False
    envelope_clean = True

    async def data(self, *args: Any, **kwargs: Any) -> aiosmtplib.SMTPResponse:
        self.data_started = True
        return await super().data(*args, **kwargs)

    async def rset(self, *args: Any, **kwargs: Any) -> aiosmtplib.SMTPResponse:
        self.envelope_clean = False
        response = await super().rset(*args, **kwargs)
        self.envelope_clean = True
        return response


@dataclass(eq=False)
class _Connection:
    client: PooledSMTP
    reused: bool = False
    messages: int = 0
    idle_since: float = 0.0


class SmtpPool:
    def __init__(
        self,
        connect: Callable[[], Awaitable[PooledSMTP]],
        *,
        max_idle: int,
        idle_seconds: float,
        max_messages: int,
        quit_timeout: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._connect = connect
        self._max_idle = max_idle if idle_seconds > 0 and max_messages > 0 else 0
        self._idle_seconds = idle_seconds
        self._max_messages = max_messages
        self._quit_timeout = quit_timeout
        self._clock = clock
        # Most recently used last: taken from the end, so the connections beyond what the load
        # needs sit at the front, age past idle_seconds and are closed.
        self._idle: list[_Connection] = []
        self._closed = False

    @property
    def idle_connections(self) -> int:
        return len(self._idle)

    async def send_message(self, msg: EmailMessage) -> None:
        """Send on an idle connection or a new one; raises what aiosmtplib raises."""
        conn = self._take_idle()
        if conn is None:
            conn = _Connection(await self._connect())
        try:
            await self._send_on(conn, msg)
        except Exception as e:
            if not (conn.reused and _lost_before_data(e, conn.client)):
                raise
            logger.info(
                "reused SMTP connection was closed by the server before the message (%s);"
                " sending it on a new connection",
                e,
            )
            await self._send_on(_Connection(await self._connect()), msg)

    async def aclose(self) -> None:
        """QUIT every idle connection; a connection lent out now is closed when it comes back."""
        self._closed = True
        idle, self._idle = self._idle, []
        await asyncio.gather(*(self._quit(c.client) for c in idle))

    def _take_idle(self) -> _Connection | None:
        now = self._clock()
        while self._idle:
            conn = self._idle.pop()
            if not conn.client.is_connected:
                continue  # the server closed it while idle and aiosmtplib has noticed
            if now - conn.idle_since < self._idle_seconds:
                conn.reused = True
                return conn
            # Closed without QUIT: after this long idle a connection may be half-open, and a QUIT
            # would hold this message up for the whole timeout. The rest are older still.
            for old in [conn, *self._idle]:
                old.client.close()
            self._idle.clear()
        return None

    async def _send_on(self, conn: _Connection, msg: EmailMessage) -> None:
        client = conn.client
        client.data_started = False
        client.envelope_clean = True
        conn.messages += 1
        try:
            await client.send_message(msg)
        except (aiosmtplib.SMTPResponseException, aiosmtplib.SMTPRecipientsRefused):
            # A refusal on a live connection: aiosmtplib has sent RSET; `_give_back` keeps the
            # connection only if that RSET was answered 250, so the next message starts clean.
            await self._give_back(conn)
            raise
        except Exception:
            await self._quit(client)
            raise
        except BaseException:
            # Cancelled mid-conversation: the connection's state is unknown and there is no time
            # to QUIT.
            client.close()
            raise
        await self._give_back(conn)

    async def _give_back(self, conn: _Connection) -> None:
        client = conn.client
        if (
            self._closed
            or not client.is_connected
            or not client.envelope_clean
            or conn.messages >= self._max_messages
            or len(self._idle) >= self._max_idle
        ):
            await self._quit(client)
            return
        conn.idle_since = self._clock()
        self._idle.append(conn)

    async def _quit(self, client: PooledSMTP) -> None:
        # As aiosmtplib's own `async with` does: QUIT if the connection is up, close regardless.
        try:
            if client.is_connected:
                await client.quit(timeout=self._quit_timeout)
        except (aiosmtplib.SMTPException, OSError):
            pass
        finally:
            client.close()


def _lost_before_data(error: Exception, client: PooledSMTP) -> bool:
    """Whether a reused connection failed in a way that says the server had closed (or was
    closing) it, before the server could have taken the message: then a new connection may send
    it again without any risk of a second copy.

    The line is the DATA command. Before it (MAIL, RCPT) a disconnect, a timeout or a 421 costs
    nothing: no message exists on the server yet. From DATA on, a lost reply is ambiguous: the
    server may have stored the message and lost only its 250 on the way back, so it is not sent
    again here. That failure goes up as a transient error, as it did before the pool: the activity
    retries, and the Message-ID, the same on every attempt, lets receivers drop the copy. A lost
    connection at the DATA command itself, before the server's 354, is counted on the safe side
    with the rest: aiosmtplib sends DATA and the message in one call.
    """
    if client.data_started:
        return False
    if isinstance(error, (ConnectionError, TimeoutError)):
        return True  # aiosmtplib's disconnect and timeout errors are both
    if isinstance(error, aiosmtplib.SMTPResponseException):
        return error.code == _CLOSING
    if isinstance(error, aiosmtplib.SMTPRecipientsRefused):
        return any(r.code == _CLOSING for r in error.recipients)
    return False
