"""Waking inbox streams when a user's inbox changes.

A stream (starter.http.routes.inbox_stream) holds a `Waiter` for its user and re-reads the user's
`inbox_events` after each wake. Wakes come from:

- this process: the store calls `poke(user_id)` after committing an inbox change;
- PostgreSQL: every inbox write NOTIFYs `tidings_inbox_<schema>` with the user id in its own
  transaction (delivered at commit); one LISTEN connection per store wakes that user's streams,
  whichever process wrote (a worker, another API process);
- SQLite (no NOTIFY): a poll every `poll_interval` seconds of the ids above the last one seen,
  for writers in other processes. SQLite commits one writer at a time, so ids appear in order.

The table is the truth, the wakes only say when to read it: a lost LISTEN connection is opened
again and then every stream re-reads, so nothing committed meanwhile is missed. Streams do not
re-read on their heartbeats: 1,000 streams that connected together would all read at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import weakref
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncConnection

    from tidings.store.inbox_events import InboxEventsMixin

log = logging.getLogger(__name__)

DEFAULT_POLL_SECONDS = 0.25

_wakers: weakref.WeakSet[InboxWaker] = weakref.WeakSet()


def poke(user_id: str) -> None:
    """Wake this process's streams of `user_id` (called after an inbox change commits)."""
    for waker in list(_wakers):
        waker.wake(user_id)


class InboxWaker:
    def __init__(
        self, store: InboxEventsMixin, *, poll_interval: float = DEFAULT_POLL_SECONDS
    ) -> None:
        self._store = store
        self._poll_interval = poll_interval
        self._waiters: dict[str, weakref.WeakSet[asyncio.Event]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._listening: AsyncConnection | None = None
        self._started = asyncio.Lock()

    async def start(self) -> None:
        async with self._started:
            if self._loop is not None:
                return
            self._loop = asyncio.get_running_loop()
            if self._store.engine.dialect.name == "postgresql":
                lost = await self._listen()  # the first time fails loudly
                self._task = asyncio.create_task(self._relisten(lost), name="inbox-wake-listen")
            else:
                last = await self._store.inbox_events_since_start()
                self._task = asyncio.create_task(self._poll(last), name="inbox-wake-poll")
            _wakers.add(self)

    async def close(self) -> None:
        _wakers.discard(self)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._listening is not None:
            # Not returned to the pool: it still LISTENs.
            with contextlib.suppress(Exception):
                await self._listening.invalidate()
                await self._listening.close()
            self._listening = None
        self._loop = None

    @contextlib.contextmanager
    def waiter(self, user_id: str) -> Iterator[asyncio.Event]:
        """An event set whenever `user_id`'s inbox may have changed; clear it before reading."""
        event = self.register(user_id)
        try:
            yield event
        finally:
            self.unregister(user_id, event)

    def register(self, user_id: str) -> asyncio.Event:
        """As `waiter`, for a holder that ends elsewhere (a response body that may never be
        iterated): it must `unregister`, and if it never does, the event goes with its last
        reference (the waker holds events weakly)."""
        event = asyncio.Event()
        self._waiters.setdefault(user_id, weakref.WeakSet()).add(event)
        return event

    def unregister(self, user_id: str, event: asyncio.Event) -> None:
        waiting = self._waiters.get(user_id)
        if waiting is not None:
            waiting.discard(event)
            if not waiting:
                del self._waiters[user_id]

    @property
    def streams(self) -> int:
        return sum(len(w) for w in self._waiters.values())

    def wake(self, user_id: str) -> None:
        loop = self._loop
        if loop is None:
            return
        try:
            same_loop = asyncio.get_running_loop() is loop
        except RuntimeError:
            same_loop = False
        if same_loop:
            self._set(user_id)
        elif not loop.is_closed():
            loop.call_soon_threadsafe(self._set, user_id)

    def _set(self, user_id: str) -> None:
        waiting = self._waiters.get(user_id)
        if waiting is None:
            return
        if not waiting:  # every holder was collected without unregistering
            del self._waiters[user_id]
        for event in list(waiting):
            event.set()

    async def _listen(self) -> asyncio.Event:
        """LISTEN on a connection of its own; the event is set if that connection is lost."""
        lost = asyncio.Event()
        conn = await self._store.engine.connect()
        try:
            raw = await conn.get_raw_connection()
            driver: Any = raw.driver_connection
            channel = await driver.fetchval("SELECT 'tidings_inbox_' || current_schema()")
            await driver.add_listener(channel, self._notified)
            driver.add_termination_listener(lambda _conn: lost.set())
        except BaseException:
            await conn.close()
            raise
        self._listening = conn
        return lost

    async def _relisten(self, lost: asyncio.Event) -> None:
        """Listen again after a lost connection, then wake every stream: what was notified
        while nobody listened is in the table, and each stream re-reads it."""
        while True:
            await lost.wait()
            log.warning("inbox LISTEN connection lost; listening again")
            if self._listening is not None:
                with contextlib.suppress(Exception):
                    await self._listening.invalidate()
                self._listening = None
            while True:
                try:
                    lost = await self._listen()
                    break
                except Exception:
                    log.warning("inbox LISTEN failed; retrying in 1 s", exc_info=True)
                    await asyncio.sleep(1)
            for user_id in list(self._waiters):
                self._set(user_id)

    def _notified(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        self._set(payload)

    async def _poll(self, last: int) -> None:
        while True:
            await asyncio.sleep(self._poll_interval)
            if not self._waiters:
                continue  # nobody to wake; ids skipped now only cause a harmless re-read later
            try:
                rows = await self._store.inbox_events_since(last)
            except Exception:  # a locked or briefly unavailable database: try again next time
                log.warning("inbox wake poll failed", exc_info=True)
                continue
            for event_id, user_id in rows:
                last = max(last, event_id)
                self._set(user_id)
