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

from starter.client import Tidings
from starter.http.auth import InboxStreamAccess
from starter.http.deps import Api
from tidings.api_keys import Scope
from tidings.errors import InvalidRequest

router = APIRouter()

RETRY_MS = 1000  # how soon a browser reconnects after the stream drops
MAX_EVENT_ID = 2**63 - 1


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
    tidings: Tidings, user_id: str, after: int | None, heartbeat: float
) -> AsyncIterator[bytes]:
    store = tidings.store
    waker = await store.inbox_waker()
    with waker.waiter(user_id) as woken:
        yield f"retry: {RETRY_MS}\n\n".encode()
        if after is None:
            after = await store.last_inbox_event_id(user_id)
            counts = await store.inbox_counts(user_id)
            yield _frame(after, "counts", {"counts": counts.model_dump()})
        while True:
            woken.clear()  # before reading: a wake during the read is not lost
            events = await store.inbox_events(user_id, after=after)
            for event in events:
                yield _frame(event.id, event.kind.value, event.payload)
                after = event.id
            if events:
                continue  # maybe more than one batch
            try:
                await asyncio.wait_for(woken.wait(), heartbeat)
            except TimeoutError:
                yield b": ping\n\n"


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
    await tidings.get_user(user_id)
    heartbeat = tidings.settings.inbox_heartbeat_seconds
    return StreamingResponse(
        _events(tidings, user_id, after, heartbeat),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
