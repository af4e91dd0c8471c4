"""Bulk acceptance through the client and HTTP: one outcome per recipient, the valid ones go
when others are refused, `atomic` keeps all-or-nothing, duplicates and the bounds."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from starter.client import MAX_BULK, Recipient
from starter.client_bulk import BulkRejected
from starter.http.app import MAX_BULK_BODY_BYTES
from tests.http.helpers import WELCOME, error_of
from tests.support import Stack
from tidings.errors import InvalidRequest


def key() -> str:
    return f"bulk-{uuid.uuid4().hex[:12]}"


async def test_each_recipient_has_its_own_outcome_and_the_valid_ones_go(stack: Stack) -> None:
    k = key()
    result = await stack.tidings.notify_many(
        [
            "user_001",
            Recipient(user_id="ghost"),
            {"user_id": "user_002", "data": {"user_name": "Ann"}},
            {"user_id": "user_002", "data": {"other": 1}, "idempotency_key": "own"},
            {"user_id": "not an id!"},
            {"user_id": "user_001", "data": {"user_name": "Bo"}, "idempotency_key": f"{k}-own"},
            {"data": {"user_name": "Cy"}},
        ],
        "welcome",
        data={"app_name": "MyApp"},  # user_name comes from each recipient's own data
        channels=["in_app"],
        idempotency_key=k,
    )
    o = result.outcomes
    assert [x.outcome for x in o] == [
        "rejected",
        "rejected",
        "started",
        "rejected",
        "rejected",
        "started",
        "rejected",
    ]
    assert (result.started, result.existed, result.rejected, result.failed) == (2, 0, 5, 0)
    # The shared data lacks user_name: the recipient without data of its own cannot render.
    assert o[0].field == "user_ids[0].data" and "user_name" in (o[0].reason or "")
    assert "(template welcome, " in (o[0].reason or "")  # as the single send words it
    assert (o[1].field, o[1].reason) == ("recipients[1].user_id", "no user 'ghost'")
    assert o[2].notification_id == f"{k}.user_002" and o[2].workflow_id is not None
    assert o[3].field == "recipients[3].data" and o[3].user_id == "user_002"
    assert o[4].field == "recipients[4].user_id" and o[4].notification_id is None
    assert o[4].user_id == "not an id!"
    assert o[5].notification_id == f"{k}-own"
    # A recipient with no user_id is named by its position, with an empty id (not "None").
    assert (o[6].field, o[6].user_id) == ("recipients[6].user_id", "")
    assert sorted(stack.tidings.started) == sorted(
        [f"notification/{k}.user_002", f"notification/{k}-own"]
    )
    item = await stack.tidings.wait_sent(f"{k}.user_002")
    assert item.status.value == "sent"
    inbox = await stack.store.list_inbox("user_002")
    assert any("Ann" in i.title for i in inbox)


async def test_the_same_bulk_again_starts_nothing_new(stack: Stack) -> None:
    k = key()
    fields: dict[str, Any] = {"data": WELCOME, "channels": ["in_app"], "idempotency_key": k}
    first = await stack.tidings.notify_many(["user_001", "user_002"], "welcome", **fields)
    again = await stack.tidings.notify_many(["user_001", "user_002"], "welcome", **fields)
    assert [x.outcome for x in first.outcomes] == ["started", "started"]
    assert [x.outcome for x in again.outcomes] == ["existed", "existed"]
    assert [r.notification_id for r in again.refs] == [f"{k}.user_001", f"{k}.user_002"]
    assert [r.created for r in again.refs] == [False, False]


async def test_duplicates_in_one_bulk(stack: Stack) -> None:
    k = key()
    same = {"user_id": "user_001", "idempotency_key": f"{k}-a"}
    result = await stack.tidings.notify_many(
        [
            same,
            same,  # the same key and request twice: one notification
            {**same, "data": {"user_name": "Other"}},  # the same key, another request
            "user_002",
            "user_002",  # the same user twice without a key of its own
        ],
        "welcome",
        data=WELCOME,
        channels=["in_app"],
    )
    o = result.outcomes
    assert [x.outcome for x in o] == ["started", "existed", "rejected", "started", "rejected"]
    assert o[1].notification_id == o[0].notification_id == f"{k}-a"
    assert o[2].field == "recipients[2].idempotency_key" and "recipients[0]" in (o[2].reason or "")
    assert (o[4].field, o[4].reason) == ("user_ids[4]", "repeats user_ids[3]")
    assert (result.started, result.existed, result.rejected) == (2, 1, 2)
    assert len(set(stack.tidings.started)) == 2


async def test_atomic_starts_nothing_when_one_is_rejected(stack: Stack) -> None:
    k = key()
    with pytest.raises(BulkRejected) as caught:
        await stack.tidings.notify_many(
            ["user_001", "ghost", "nobody"],
            "welcome",
            data=WELCOME,
            idempotency_key=k,
            atomic=True,
        )
    e = caught.value
    assert e.field == "user_ids[1]"
    assert "no user 'ghost'" in e.reason and "1 more rejected" in e.reason
    assert [x.outcome for x in e.outcomes] == ["rejected"] * 3
    assert "atomic" in (e.outcomes[0].reason or "")
    assert stack.tidings.started == []
    assert await stack.store.idempotency_fingerprints([f"{k}.user_001"]) == {}

    ok = await stack.tidings.notify_many(
        ["user_001", "user_002"], "welcome", data=WELCOME, channels=["in_app"], atomic=True
    )
    assert ok.started == 2


async def test_what_every_recipient_shares_refuses_the_whole_call(stack: Stack) -> None:
    t = stack.tidings
    cases: list[tuple[dict[str, object], str]] = [
        ({"recipients": [], "template_id": "welcome"}, "user_ids"),
        ({"recipients": ["u"] * (MAX_BULK + 1), "template_id": "welcome"}, "user_ids"),
        ({"recipients": ["user_001"], "template_id": "nope"}, "template_id"),
        ({"recipients": ["user_001"], "template_id": "welcome", "channels": ["sms"]}, "channels"),
        ({"recipients": ["user_001"], "template_id": "welcome", "priority": "x"}, "priority"),
        ({"recipients": ["user_001"], "template_id": "welcome", "user_id": "u"}, "user_id"),
    ]
    for given, field in cases:
        recipients = given.pop("recipients")
        template_id = given.pop("template_id")
        with pytest.raises(InvalidRequest) as caught:
            await t.notify_many(recipients, template_id, **given)  # type: ignore[arg-type]
        assert caught.value.field == field, caught.value
    assert t.started == []


async def test_http_answers_202_with_every_outcome(client: httpx.AsyncClient, stack: Stack) -> None:
    k = key()
    body = {
        "recipients": [
            {"user_id": "user_001"},
            {"user_id": "ghost"},
            {"user_id": "user_002", "data": {"user_name": "Ann"}},
        ],
        "template_id": "welcome",
        "data": WELCOME,
        "channels": ["in_app"],
    }
    r = await client.post("/v1/notifications/bulk", json=body, headers={"Idempotency-Key": k})
    assert r.status_code == 202, r.text
    answer = r.json()
    assert (answer["started"], answer["existed"], answer["rejected"], answer["failed"]) == (
        2,
        0,
        1,
        0,
    )
    first, ghost, third = answer["results"]
    assert first["outcome"] == "started" and first["status_url"].endswith(f"{k}.user_001")
    assert (ghost["field"], ghost["reason"]) == ("recipients[1].user_id", "no user 'ghost'")
    assert third["notification_id"] == f"{k}.user_002"
    status = await client.get(first["status_url"])
    assert status.status_code == 200, status.text

    both = {**body, "user_ids": ["user_001"]}
    error = error_of(await client.post("/v1/notifications/bulk", json=both), 422, "invalid_request")
    assert "exactly one" in error["reason"]


async def test_http_bounds(client: httpx.AsyncClient, stack: Stack) -> None:
    too_many = {"user_ids": [f"u{i}" for i in range(MAX_BULK + 1)], "template_id": "welcome"}
    error = error_of(
        await client.post("/v1/notifications/bulk", json=too_many), 422, "invalid_request"
    )
    assert error["field"] == "user_ids"
    # A full bulk with data of its own per recipient is over the bound of other routes, and
    # taken here: every recipient unknown, so each is rejected on its own and nothing starts.
    full = {
        "recipients": [{"user_id": f"ghost_{i}", "data": {"n": "x" * 40}} for i in range(MAX_BULK)],
        "template_id": "welcome",
        "data": WELCOME,
    }
    r = await client.post("/v1/notifications/bulk", json=full)
    assert r.status_code == 202, r.text
    assert len(r.content) > 0 and r.json()["rejected"] == MAX_BULK
    assert r.json()["results"][9_999]["field"] == "recipients[9999].user_id"
    assert stack.tidings.started == []
    huge = {**full, "data": {"blob": "x" * MAX_BULK_BODY_BYTES}}
    assert error_of(await client.post("/v1/notifications/bulk", json=huge), 413, "invalid_request")


async def test_each_recipient_is_rendered_with_their_own_attributes(stack: Stack) -> None:
    """A template reading `user.attributes.plan` goes to users who have one; a user without it
    is rejected by name, and does not take the others down with them."""
    await stack.tidings.register_template(
        {
            "id": "plan_note",
            "channels": ["in_app"],
            "content": {"subject": "Plan", "text": "You are on {{ user.attributes.plan }}"},
            "sample_data": {"user": {"attributes": {"plan": "pro"}}},
        }
    )
    await stack.add_user("bulk_pro", attributes={"plan": "pro"})
    await stack.add_user("bulk_free", attributes={"plan": "free"})
    await stack.add_user("bulk_none")
    result = await stack.tidings.notify_many(
        ["bulk_pro", "bulk_free", "bulk_none"], "plan_note", idempotency_key=key()
    )
    assert [o.outcome for o in result.outcomes] == ["started", "started", "rejected"]
    refused = result.outcomes[2]
    assert refused.field == "user_ids[2].data" and "plan" in (refused.reason or "")
