"""GET /v1/users/{user_id}/inbox/stream: the user's inbox as Server-Sent Events.

Plain `StreamingResponse` (no SSE library). Each change to the inbox is one event whose `id:` is
its row in `inbox_events` (monotonic per user), `event:` its kind and `data:` its JSON:

    event: item   data: {"item": {...}, "counts": {"unseen": 3, "unread": 4}}
    event: state  data: {"state": "read", "ids": [7], "at": "...", "counts": {...}}

A client that reconnects sends `Last-Event-ID` (EventSource does by itself) and gets every event
after it, then the live ones; a fresh connection starts with `event: counts` carrying the current
counts and the id to resume from. A `: ping` comment goes out every
TIDINGS_INBOX_HEARTBEAT_SECONDS (15 s). The stream is woken by `tidings.store.inbox_wake` (LISTEN
on PostgreSQL, a poll on SQLite) and re-reads the table, which is the truth.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Header, Query
from fastapi.responses import StreamingResponse

from starter.http.auth import InboxStreamAccess
from starter.http.deps import Api
from tidings.api_keys import Scope
from tidings.errors import InvalidRequest, NotFound
from tidings.store import Store
from tidings.store.inbox_wake import InboxWaker

router = APIRouter()

RETRY_MS = 1000  # how soon a browser reconnects after the stream drops
MAX_EVENT_ID = 2**63 - 1
BATCH = 500  # events read at a time


def _frame(event_id: int, kind: str, data: object) -> bytes:
    body = json.dumps(data, separators=(",", ":"))
    return f"id: {event_id}\nevent: {kind}\ndata: {body}\n\n".encode()


def _resume_from(header: str | None, query: str | None) -> int | None:
    for field, value in (("Last-Event-ID", header), ("last_event_id", query)):
        if value is None or value == "":
            continue
        if not value.isdigit() or int(value) > MAX_EVENT_ID:
            raise InvalidRequest(field, "must be an event id this stream sent (a number)")
        return int(value)
    return None


async def _events(
    store: Store,
    waker: InboxWaker,
    user_id: str,
    woken: asyncio.Event,
    after: int,
    heartbeat: float,
    opening: bytes,
) -> AsyncIterator[bytes]:
    """`woken` was registered before the stream's start was read, so a change committed since
    has set it: until it is set, there is nothing newer than `after` to read."""
    try:
        yield f"retry: {RETRY_MS}\n\n".encode() + opening
        while True:
            if woken.is_set():
                woken.clear()  # before reading: a wake during the read is not lost
                events = await store.inbox_events(user_id, after=after, limit=BATCH)
                for event in events:
                    yield _frame(event.id, event.kind.value, event.payload)
                    after = event.id
                if len(events) == BATCH:
                    woken.set()  # maybe more
                continue
            try:
                await asyncio.wait_for(woken.wait(), heartbeat)
            except TimeoutError:
                yield b": ping\n\n"
    finally:
        waker.unregister(user_id, woken)


@router.get(
    "/users/{user_id}/inbox/stream",
    dependencies=[InboxStreamAccess(Scope.READ)],
    summary="The user's inbox live, as Server-Sent Events",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}, "description": "An event stream"}},
)
async def inbox_stream(
    user_id: str,
    tidings: Api,
    last_event_id: Annotated[
        str | None, Header(alias="Last-Event-ID", max_length=20, include_in_schema=True)
    ] = None,
    resume: Annotated[
        str | None,
        Query(
            alias="last_event_id",
            max_length=20,
            description="As the Last-Event-ID header, for clients that cannot set it",
        ),
    ] = None,
) -> StreamingResponse:
    after = _resume_from(last_event_id, resume)
    store = tidings.store
    waker = await store.inbox_waker()
    woken = waker.register(user_id)
    try:
        # One read with one connection for a fresh stream (a thousand may connect at once).
        start = await store.inbox_stream_start(user_id)
        if start is None:
            raise NotFound("user", user_id)
    except BaseException:
        waker.unregister(user_id, woken)
        raise
    last, counts = start
    opening = b""
    if after is None:
        after = last
        opening = _frame(last, "counts", {"counts": counts.model_dump()})
    else:
        woken.set()  # resuming: read what came after the client's last event first
    return StreamingResponse(
        _events(
            store, waker, user_id, woken, after, tidings.settings.inbox_heartbeat_seconds, opening
        ),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
