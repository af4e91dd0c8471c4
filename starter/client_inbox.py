"""The in-app inbox in the Python API: inbox tokens, lists with filters and cursors, counts,
seen/read/archived marks, the event log the stream replays, and cross-channel read sync.

A mixin of `starter.client.Tidings`. Read sync (TIDINGS_READ_SYNC, on by default): reading inbox
items records an `opened` event (channel in_app) for each of their notifications, all in one
write, then signals those whose engagement window is open (at most SIGNALS_AT_ONCE at a time;
the same event twice counts once), and an `opened` event
from any channel marks the notification's inbox item read (`sync_read`, called by
`record_event`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from pydantic import BaseModel

from tidings import inbox_tokens
from tidings.errors import InvalidRequest, NotFound
from tidings.inbox import (
    MAX_PAGE,
    InboxChange,
    InboxCounts,
    InboxEvent,
    InboxPage,
    InboxState,
    decode_cursor,
)
from tidings.models import Channel, EngagementEvent, EngagementType, InboxItem, User
from tidings.settings import Settings
from tidings.store import Store

if TYPE_CHECKING:
    from tidings.store.notifications import RecordedEvent

# Signals in flight at once when marking many items read: enough to overlap round trips, few
# enough that marking a large inbox read does not flood the Temporal frontend.
SIGNALS_AT_ONCE = 16


class InboxToken(BaseModel):
    token: str
    user_id: str
    expires_at: datetime


class InboxClient:
    """The inbox half of `Tidings` (its only base); it uses the client's settings and store."""

    settings: Settings
    store: Store

    if TYPE_CHECKING:
        # Defined by Tidings, which this is a mixin of.
        async def get_user(self, user_id: str) -> User: ...

        async def now(self) -> datetime: ...

        def _window_open(self, recorded: RecordedEvent, now: datetime) -> bool: ...

        async def _signal_recorded(self, notification_id: str, event: EngagementEvent) -> None: ...

    async def inbox_token(
        self, user_id: str, *, ttl: timedelta = inbox_tokens.DEFAULT_TTL
    ) -> InboxToken:
        """A token a browser can hold to read and mark `user_id`'s inbox (and nobody else's)
        until it expires, at most `inbox_tokens.MAX_TTL` from now."""
        if not timedelta(0) < ttl <= inbox_tokens.MAX_TTL:
            raise InvalidRequest("ttl", f"must be positive and at most {inbox_tokens.MAX_TTL}")
        await self.get_user(user_id)
        expires_at = datetime.now(UTC).replace(microsecond=0) + ttl
        secret = self.settings.inbox_secret.get_secret_value()
        token = inbox_tokens.mint(secret, user_id, expires_at)
        return InboxToken(token=token, user_id=user_id, expires_at=expires_at)

    def inbox_grant(self, token: str) -> inbox_tokens.InboxGrant | None:
        """Whose inbox `token` opens, or None if it is not a valid, unexpired inbox token."""
        try:
            return inbox_tokens.verify(self.settings.inbox_secret.get_secret_value(), token)
        except inbox_tokens.InvalidInboxToken:
            return None

    async def inbox(
        self, user_id: str, *, unread_only: bool = False, limit: int = 50
    ) -> list[InboxItem]:
        """Newest first, archived items included (see `inbox_page` for filters and cursors)."""
        await self.get_user(user_id)
        return await self.store.list_inbox(user_id, unread_only=unread_only, limit=limit)

    async def inbox_page(
        self,
        user_id: str,
        *,
        unread: bool | None = None,
        archived: bool | None = False,
        category: str | None = None,
        cursor: str | None = None,
        limit: int = 50,
    ) -> InboxPage:
        """One page, newest first, with the counts and the cursor of the next page (None on
        the last). `unread`/`archived`: True only those, False none of those, None both;
        archived items are left out by default."""
        if not 1 <= limit <= MAX_PAGE:
            raise InvalidRequest("limit", f"must be 1 to {MAX_PAGE}, got {limit}")
        before = None
        if cursor is not None:
            try:
                before = decode_cursor(cursor)
            except ValueError as e:
                raise InvalidRequest("cursor", str(e).removeprefix("cursor: ")) from e
        await self.get_user(user_id)
        return await self.store.inbox_page(
            user_id,
            unread=unread,
            archived=archived,
            category=category,
            before=before,
            limit=limit,
        )

    async def inbox_counts(self, user_id: str) -> InboxCounts:
        """Unseen and unread items, archived ones left out."""
        await self.get_user(user_id)
        return await self.store.inbox_counts(user_id)

    async def mark_inbox(
        self, user_id: str, state: InboxState | str, item_ids: Sequence[int] | None = None
    ) -> InboxChange:
        """Mark these items (None: every item) seen, read, archived or unarchived. An id that
        is not one of the user's items is NotFound and nothing is marked."""
        try:
            chosen = InboxState(state)
        except ValueError as e:
            choices = ", ".join(s.value for s in InboxState)
            raise InvalidRequest("state", f"must be one of {choices}") from e
        if item_ids is None:
            await self.get_user(user_id)
        change = await self.store.mark_inbox(user_id, chosen, item_ids)
        if change is None:
            listed = ",".join(str(i) for i in item_ids or [])
            raise NotFound("inbox item", f"{user_id}/{listed}")
        if chosen is InboxState.READ and self.settings.read_sync:
            await self._opened_in_app(change.notification_ids)
        return change

    async def mark_read(self, user_id: str, item_id: int) -> None:
        await self.mark_inbox(user_id, InboxState.READ, [item_id])

    async def mark_all_read(self, user_id: str) -> int:
        return len((await self.mark_inbox(user_id, InboxState.READ)).ids)

    async def inbox_events(self, user_id: str, *, after: int = 0) -> list[InboxEvent]:
        """The user's inbox changes after event id `after`, oldest first (what the stream
        sends; kept EVENT_RETENTION_DAYS)."""
        return await self.store.inbox_events(user_id, after=after)

    async def sync_read(self, notification_id: str) -> None:
        """An `opened` event on any channel: the notification's inbox item becomes read."""
        if not self.settings.read_sync:
            return
        item = await self.store.inbox_item_for(notification_id)
        if item is not None and item.read_at is None:
            await self.store.mark_inbox(item.user_id, InboxState.READ, [item.id])

    async def _opened_in_app(self, notification_ids: Sequence[str]) -> None:
        """Read sync for items just marked read: one `opened` event (channel in_app) per
        notification, all stored in one transaction, then a signal for each new one whose
        engagement window is open, SIGNALS_AT_ONCE at a time. A notification no longer taking
        events (cancelled, or gone since) just is not counted; the read mark stands."""
        now = await self.now()
        events = [
            EngagementEvent(
                notification_id=nid, type=EngagementType.OPENED, channel=Channel.IN_APP, at=now
            )
            for nid in dict.fromkeys(notification_ids)  # once each, in order
        ]
        recorded = await self.store.record_events(events)
        due = [
            e
            for e in events
            if (r := recorded.get(e.notification_id)) is not None
            and r.new
            and self._window_open(r, now)
        ]
        gate = asyncio.Semaphore(SIGNALS_AT_ONCE)

        async def signal(event: EngagementEvent) -> None:
            async with gate:
                await self._signal_recorded(event.notification_id, event)

        await asyncio.gather(*(signal(e) for e in due))
