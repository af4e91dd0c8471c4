"""The inbox over HTTP: pages with filters and cursors, counts, marks (by API key or the user's
inbox token), bad input, and read sync with engagement events."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
import pytest

from tests.http.helpers import WELCOME, error_of, eventually
from tests.support import Stack
from tidings.models import (
    Channel,
    ChannelResult,
    DeliveryStatus,
    EngagementEvent,
    EngagementType,
    NotificationStatus,
    Priority,
    engagement_key,
)


async def deliver(client: httpx.AsyncClient, user_id: str, channels: list[str]) -> str:
    body = {"user_id": user_id, "template_id": "welcome", "data": WELCOME, "channels": channels}
    r = await client.post("/v1/notifications", json=body)
    assert r.status_code == 202, r.text
    nid: str = r.json()["notification_id"]

    async def sent() -> bool:
        status = (await client.get(f"/v1/notifications/{nid}")).json()["status"]
        return bool(status == "sent")

    await eventually(sent)
    return nid


async def token_for(client: httpx.AsyncClient, user_id: str) -> dict[str, str]:
    r = await client.post(f"/v1/users/{user_id}/inbox-token", json={"ttl_seconds": 600})
    assert r.status_code in (200, 201), r.text
    return {"Authorization": f"Bearer {r.json()['token']}"}


async def page(client: httpx.AsyncClient, user_id: str, **params: Any) -> dict[str, Any]:
    r = await client.get(f"/v1/users/{user_id}/inbox/items", params=params)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


async def test_a_delivered_item_is_listed_counted_and_marked(
    client: httpx.AsyncClient, stack: Stack
) -> None:
    await stack.add_user("reader")
    nid = await deliver(client, "reader", ["in_app"])
    first = await page(client, "reader")
    [item] = first["items"]
    assert (item["notification_id"], item["category"]) == (nid, "onboarding")
    assert first["counts"] == {"unseen": 1, "unread": 1} and first["next_cursor"] is None
    counts = await client.get("/v1/users/reader/inbox/counts")
    assert counts.json() == {"unseen": 1, "unread": 1}

    # The user's own inbox token may mark; what changed comes back with the new counts.
    mine = await token_for(client, "reader")
    anonymous = httpx.AsyncClient(transport=client._transport, base_url="http://test")
    async with anonymous:
        mark = {"state": "seen", "item_ids": [item["id"]]}
        r = await anonymous.post("/v1/users/reader/inbox/mark", json=mark, headers=mine)
        assert r.status_code == 200, r.text
        assert r.json()["ids"] == [item["id"]]
        assert r.json()["counts"] == {"unseen": 0, "unread": 1}
        r = await anonymous.post(
            "/v1/users/reader/inbox/mark", json={"state": "archived"}, headers=mine
        )
        assert r.json()["counts"] == {"unseen": 0, "unread": 0}
        assert (await page(client, "reader"))["items"] == []
        archived = await page(client, "reader", archived="true")
        assert [i["id"] for i in archived["items"]] == [item["id"]]
        assert len((await page(client, "reader", all="true"))["items"]) == 1
        r = await anonymous.post(
            "/v1/users/reader/inbox/mark", json={"state": "unarchived"}, headers=mine
        )
        assert r.json()["counts"] == {"unseen": 0, "unread": 1}
        # Another user's inbox is not this token's.
        await stack.add_user("someone-else")
        r = await anonymous.post(
            "/v1/users/someone-else/inbox/mark", json={"state": "read"}, headers=mine
        )
        error_of(r, 403, "forbidden")


async def test_reading_in_the_inbox_records_opened_once(
    client: httpx.AsyncClient, stack: Stack
) -> None:
    await stack.add_user("sync-in")
    nid = await deliver(client, "sync-in", ["in_app"])
    [item] = (await page(client, "sync-in"))["items"]
    assert (await client.post(f"/v1/users/sync-in/inbox/{item['id']}/read")).status_code == 204
    key = engagement_key(EngagementType.OPENED, Channel.IN_APP, None)
    assert await stack.store.has_engagement(nid, key)
    # Reading again (or reporting the open from the app as well) counts once.
    r = await client.post(
        f"/v1/notifications/{nid}/events", json={"type": "opened", "channel": "in_app"}
    )
    assert r.status_code in (200, 201, 202) and r.json()["duplicate"] is True


async def test_an_email_open_marks_the_inbox_item_read(
    client: httpx.AsyncClient, stack: Stack
) -> None:
    await stack.add_user("sync-out")
    nid = await deliver(client, "sync-out", ["in_app", "email"])
    assert (await page(client, "sync-out"))["counts"]["unread"] == 1
    r = await client.post(
        f"/v1/notifications/{nid}/events", json={"type": "opened", "channel": "email"}
    )
    assert r.status_code in (200, 201, 202), r.text
    after = await page(client, "sync-out")
    assert after["counts"]["unread"] == 0 and after["items"][0]["read_at"] is not None


async def test_read_sync_can_be_turned_off(client: httpx.AsyncClient, stack: Stack) -> None:
    await stack.add_user("no-sync")
    nid = await deliver(client, "no-sync", ["in_app", "email"])
    stack.tidings.settings.read_sync = False
    try:
        r = await client.post(
            f"/v1/notifications/{nid}/events", json={"type": "opened", "channel": "email"}
        )
        assert r.status_code in (200, 201, 202), r.text
        assert (await page(client, "no-sync"))["counts"]["unread"] == 1
        r = await client.post("/v1/users/no-sync/inbox/read-all")
        assert r.json() == {"marked": 1}
        key = engagement_key(EngagementType.OPENED, Channel.IN_APP, None)
        assert not await stack.store.has_engagement(nid, key)
    finally:
        stack.tidings.settings.read_sync = True


async def test_pages_follow_the_cursor(client: httpx.AsyncClient, stack: Stack) -> None:
    await stack.add_user("pager")
    for i in range(5):
        await stack.store.add_inbox_item(
            user_id="pager", notification_id=f"pager-{i}", title=str(i), body=""
        )
    seen, cursor = [], None
    while True:
        params: dict[str, Any] = {"limit": 2} | ({"cursor": cursor} if cursor else {})
        body = await page(client, "pager", **params)
        seen += [i["title"] for i in body["items"]]
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert seen == ["4", "3", "2", "1", "0"]
    await stack.store.add_inbox_item(
        user_id="pager", notification_id="pager-bill", title="bill", body="", category="billing"
    )
    billing = await page(client, "pager", category="billing")
    assert [i["title"] for i in billing["items"]] == ["bill"]
    assert billing["counts"] == {"unseen": 6, "unread": 6}  # counts are the whole inbox's


async def test_bad_input_names_the_field(client: httpx.AsyncClient, stack: Stack) -> None:
    await stack.add_user("bad-input")
    r = await client.get("/v1/users/bad-input/inbox/items", params={"cursor": "nope"})
    assert error_of(r, 422, "invalid_request")["field"] == "cursor"
    r = await client.get("/v1/users/bad-input/inbox/items", params={"limit": 0})
    assert "limit" in error_of(r, 422, "invalid_request")["field"]
    r = await client.post("/v1/users/bad-input/inbox/mark", json={"state": "burnt"})
    assert "state" in error_of(r, 422, "invalid_request")["field"]
    r = await client.post("/v1/users/bad-input/inbox/mark", json={"state": "read", "item_ids": []})
    assert "item_ids" in error_of(r, 422, "invalid_request")["field"]
    r = await client.post(
        "/v1/users/bad-input/inbox/mark", json={"state": "read", "item_ids": [10**12]}
    )
    error_of(r, 404, "not_found")
    error_of(await client.get("/v1/users/nobody-here/inbox/items"), 404, "not_found")
    error_of(await client.get("/v1/users/nobody-here/inbox/counts"), 404, "not_found")


async def test_read_all_records_the_opens_in_one_write_and_signals_only_open_windows(
    client: httpx.AsyncClient, stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    await stack.add_user("bulk-read")
    live = [await deliver(client, "bulk-read", ["in_app"]) for _ in range(2)]
    # A notification delivered before its engagement window, and one never sent.
    window = timedelta(hours=stack.tidings.settings.engagement_window_hours)
    long_ago = await stack.tidings.now() - 2 * window
    old = ChannelResult(channel=Channel.IN_APP, status=DeliveryStatus.SENT, at=long_ago)
    for nid, status, channels in (
        ("bulk-old", NotificationStatus.SENT, [old]),
        ("bulk-cancelled", NotificationStatus.CANCELLED, []),
    ):
        await stack.store.upsert_notification(
            notification_id=nid,
            user_id="bulk-read",
            template_id="welcome",
            template_version=1,
            priority=Priority.MEDIUM,
            status=status,
            channels=channels,
        )
        await stack.store.add_inbox_item(
            user_id="bulk-read", notification_id=nid, title=nid, body=""
        )
    signalled: list[str] = []
    real_signal = stack.tidings._signal_recorded

    async def spy(notification_id: str, event: EngagementEvent) -> None:
        signalled.append(notification_id)
        await real_signal(notification_id, event)

    async def one_by_one(event: EngagementEvent) -> None:
        raise AssertionError("read sync records its events in bulk")

    monkeypatch.setattr(stack.tidings, "_signal_recorded", spy)
    monkeypatch.setattr(stack.store, "record_event", one_by_one)
    r = await client.post("/v1/users/bulk-read/inbox/read-all")
    assert r.json() == {"marked": 4}
    key = engagement_key(EngagementType.OPENED, Channel.IN_APP, None)
    for nid in [*live, "bulk-old"]:
        assert await stack.store.has_engagement(nid, key)  # late opens are recorded too
    assert not await stack.store.has_engagement("bulk-cancelled", key)
    assert sorted(signalled) == sorted(live)  # no RPC for a closed window
