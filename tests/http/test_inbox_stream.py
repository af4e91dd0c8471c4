"""GET /v1/users/{id}/inbox/stream: new items and marks arrive as events with the new counts,
Last-Event-ID resumes without loss, heartbeats, and who may listen."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
import pytest_asyncio

from starter.client import Tidings
from starter.http import create_app
from starter.http.routes import inbox_stream
from tests.http.serving import EventReader, serve
from tests.support import Stack
from tidings import inbox_tokens
from tidings.api_keys import Scope
from tidings.inbox import InboxState


@pytest_asyncio.fixture(loop_scope="session")
async def server(stack: Stack) -> AsyncIterator[str]:
    # A long heartbeat: what arrives in these tests was woken, not found on a heartbeat re-read.
    settings = stack.settings.model_copy(update={"inbox_heartbeat_seconds": 60.0})
    tidings = Tidings(settings, stack.store, stack.tidings.temporal)
    async with serve(create_app(tidings=tidings)) as url:
        yield url


async def add(stack: Stack, user_id: str, n: int) -> int:
    item = await stack.store.add_inbox_item(
        user_id=user_id, notification_id=f"{user_id}-{n}", title=f"t{n}", body="b"
    )
    return item.id


def stream_path(user_id: str) -> str:
    return f"/v1/users/{user_id}/inbox/stream"


async def test_items_and_marks_arrive_with_counts_and_resume_without_loss(
    stack: Stack, server: str
) -> None:
    await stack.add_user("streamer")
    token = (await stack.tidings.inbox_token("streamer")).token
    first = await add(stack, "streamer", 0)  # before the stream: not replayed
    async with httpx.AsyncClient(base_url=server, timeout=30) as http:
        params = {"token": token}
        async with http.stream("GET", stream_path("streamer"), params=params) as response:
            assert response.status_code == 200
            assert response.headers["cache-control"] == "no-cache"
            events = EventReader(response)
            assert (await events.next()).retry == 1000
            opened = await events.next_named()
            assert opened.event == "counts"
            assert opened.json() == {"counts": {"unseen": 1, "unread": 1}}
            assert opened.id is not None

            second = await add(stack, "streamer", 1)
            item = await events.next_named()
            assert item.event == "item" and item.json()["item"]["id"] == second
            assert item.json()["counts"] == {"unseen": 2, "unread": 2}
            assert int(item.id or 0) > int(opened.id)

            # A mark through the API (with the same token) arrives as a state event.
            headers = {"Authorization": f"Bearer {token}"}
            mark = {"state": "read", "item_ids": [first, second]}
            r = await http.post("/v1/users/streamer/inbox/mark", json=mark, headers=headers)
            assert r.status_code == 200, r.text
            state = await events.next_named()
            assert state.event == "state"
            assert state.json()["ids"] == [first, second] and state.json()["state"] == "read"
            assert state.json()["counts"] == {"unseen": 0, "unread": 0}

        # Disconnected: what happens meanwhile is replayed from Last-Event-ID, in order.
        third = await add(stack, "streamer", 2)
        await stack.store.mark_inbox("streamer", InboxState.ARCHIVED, [third])
        resume = {"Last-Event-ID": item.id or ""}
        async with http.stream(
            "GET", stream_path("streamer"), params=params, headers=resume
        ) as response:
            events = EventReader(response)
            replayed = [await events.next_named() for _ in range(3)]
            assert [e.event for e in replayed] == ["state", "item", "state"]
            assert replayed[0].id == state.id
            assert replayed[1].json()["item"]["id"] == third
            assert [int(e.id or 0) for e in replayed] == sorted(int(e.id or 0) for e in replayed)


async def test_heartbeats_keep_an_idle_stream_open(stack: Stack) -> None:
    await stack.add_user("quiet")
    settings = stack.settings.model_copy(update={"inbox_heartbeat_seconds": 0.2})
    tidings = Tidings(settings, stack.store, stack.tidings.temporal)
    token = (await stack.tidings.inbox_token("quiet")).token
    async with serve(create_app(tidings=tidings)) as url, httpx.AsyncClient(base_url=url) as http:
        headers = {"Authorization": f"Bearer {token}"}
        async with http.stream("GET", stream_path("quiet"), headers=headers) as response:
            events = EventReader(response)
            assert (await events.next_named()).event == "counts"
            beats = [await events.next(within=5) for _ in range(2)]
            assert [b.comments for b in beats] == [["ping"], ["ping"]]


async def test_who_may_listen(stack: Stack, server: str) -> None:
    await stack.add_user("owner")
    await stack.add_user("stranger")
    token = (await stack.tidings.inbox_token("owner")).token
    secret = stack.settings.inbox_secret.get_secret_value()
    payload, signature = token.removeprefix(inbox_tokens.PREFIX).split(".")
    tampered = inbox_tokens.PREFIX + payload + "." + signature[::-1]
    expired = inbox_tokens.mint(secret, "owner", datetime.now(UTC) - timedelta(seconds=1))
    reader = (await stack.tidings.create_api_key("stream-reader", [Scope.READ])).key
    sender = (await stack.tidings.create_api_key("stream-sender", [Scope.SEND])).key

    async def status(params: dict[str, str], headers: dict[str, str], user: str = "owner") -> int:
        async with (
            httpx.AsyncClient(base_url=server) as http,
            http.stream("GET", stream_path(user), params=params, headers=headers) as response,
        ):
            if response.status_code == 200:
                assert (await EventReader(response).next_named()).event == "counts"
            else:
                await response.aread()
                assert response.json()["error"]["type"] in ("unauthorized", "forbidden")
            return response.status_code

    assert await status({"token": token}, {}) == 200
    assert await status({}, {"Authorization": f"Bearer {token}"}) == 200
    assert await status({"token": token}, {}, user="stranger") == 403
    assert await status({"token": tampered}, {}) == 401
    assert await status({"token": expired}, {}) == 401
    assert await status({}, {}) == 401
    assert await status({}, {"Authorization": f"Bearer {reader}"}) == 200
    assert await status({}, {"Authorization": f"Bearer {reader}"}, user="stranger") == 200
    assert await status({}, {"Authorization": f"Bearer {sender}"}) == 403
    # API keys stay out of URLs.
    assert await status({"token": reader}, {}) == 401


async def test_bad_resume_points_are_refused(stack: Stack, server: str) -> None:
    await stack.add_user("resumer")
    token = (await stack.tidings.inbox_token("resumer")).token
    async with httpx.AsyncClient(base_url=server) as http:
        for header in ("x", "-1", "9" * 30):
            r = await http.get(
                stream_path("resumer"),
                params={"token": token},
                headers={"Last-Event-ID": header},
            )
            assert r.status_code == 422, r.text
            assert r.json()["error"]["field"] == "Last-Event-ID"
        r = await http.get(stream_path("nobody-at-all"), headers={"Authorization": "Bearer x"})
        assert r.status_code == 401
        reader = (await stack.tidings.create_api_key("stream-404", [Scope.READ])).key
        r = await http.get(
            stream_path("nobody-at-all"), headers={"Authorization": f"Bearer {reader}"}
        )
        assert r.status_code == 404 and r.json()["error"]["type"] == "not_found"
        assert (await stack.store.inbox_waker()).streams == 0


async def test_resuming_replays_every_batch_in_order(
    stack: Stack, server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(inbox_stream, "BATCH", 2)  # five events: three reads
    await stack.add_user("backlog")
    token = (await stack.tidings.inbox_token("backlog")).token
    ids = [await add(stack, "backlog", n) for n in range(5)]
    async with (
        httpx.AsyncClient(base_url=server) as http,
        http.stream(
            "GET", stream_path("backlog"), params={"token": token, "last_event_id": "0"}
        ) as response,
    ):
        events = EventReader(response)
        replayed = [await events.next_named() for _ in range(5)]
        assert [e.json()["item"]["id"] for e in replayed] == ids
        assert [e.json()["counts"]["unread"] for e in replayed] == [1, 2, 3, 4, 5]
