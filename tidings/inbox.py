"""The in-app inbox's vocabulary: item states, counts, pages with keyset cursors, and the events
the inbox stream carries. Pure: the store (tidings.store.inbox) and the edges use these.

States: an item is *seen* once it was shown in a list, *read* once opened (read implies seen),
*archived* once put away (unarchive brings it back). Each mark keeps the time it was first set.
Counts leave archived items out: `unseen` and `unread` are what a badge shows.

Cursors are opaque to callers: `base64url("i" + item id)`; the next page is the items older than
the last one of this page (keyset, newest first), so items arriving meanwhile never shift a page.
"""

from __future__ import annotations

import base64
import binascii
import enum
from typing import Any

from pydantic import AwareDatetime

from tidings.models import InboxItem, Model

# How long inbox_events rows are kept: a stream resumes from Last-Event-ID within this window;
# older clients refetch the list (the page does on every (re)connect anyway).
EVENT_RETENTION_DAYS = 7
MAX_PAGE = 500


class InboxState(enum.StrEnum):
    SEEN = "seen"
    READ = "read"
    ARCHIVED = "archived"
    UNARCHIVED = "unarchived"


class EventKind(enum.StrEnum):
    ITEM = "item"  # a new item: {"item": InboxItem, "counts": InboxCounts}
    STATE = "state"  # a mark: {"state", "ids", "at", "counts"}


class InboxCounts(Model):
    unseen: int = 0
    unread: int = 0


class InboxPage(Model):
    items: list[InboxItem]
    counts: InboxCounts
    next_cursor: str | None = None  # None: this was the last page


class InboxEvent(Model):
    """One row of a user's inbox log, as the stream sends it (`id:` is `id`)."""

    id: int
    kind: EventKind
    payload: dict[str, Any]
    created_at: AwareDatetime


class InboxChange(Model):
    """What one mark changed: the items whose state it set (none if they already had it)."""

    state: InboxState
    ids: list[int]
    notification_ids: list[str]
    counts: InboxCounts


def encode_cursor(item_id: int) -> str:
    return base64.urlsafe_b64encode(f"i{item_id}".encode()).rstrip(b"=").decode("ascii")


def decode_cursor(cursor: str) -> int:
    """The item id a cursor continues after; ValueError naming `cursor` if it is not one."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
    except (binascii.Error, ValueError, UnicodeDecodeError) as e:
        raise ValueError("cursor: not a cursor this API returned") from e
    if len(cursor) > 32 or not raw.startswith("i") or not raw[1:].isdigit():
        raise ValueError("cursor: not a cursor this API returned")
    return int(raw[1:])
