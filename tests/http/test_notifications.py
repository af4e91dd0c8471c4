"""Notifications over HTTP: start, idempotency, status, cancel, engagement, inbox and stats."""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from temporalio.testing import WorkflowEnvironment

from tests.http.helpers import WELCOME, error_of, eventually
from tests.support import Stack
from tidings.models import NotificationStatus


def key() -> str:
    return f"http-{uuid.uuid4().hex[:12]}"


async def test_start_returns_202_and_a_status_url(client: httpx.AsyncClient, stack: Stack) -> None:
    request = {"user_id": "user_001", "template_id": "welcome", "data": WELCOME}
    k = key()
    r = await client.post("/v1/notifications", json=request, headers={"Idempotency-Key": k})
    assert r.status_code == 202, r.text
    accepted = r.json()
    assert accepted["notification_id"] == k
    assert accepted["workflow_id"] == f"notification/{k}"
    assert accepted["status_url"] == f"http://test/v1/notifications/{k}"
    assert accepted["created"] is True

    again = await client.post("/v1/notifications", json=request, headers={"Idempotency-Key": k})
    assert again.status_code == 202 and again.json() == {**accepted, "created": False}

    await stack.tidings.wait_sent(k)
    status = (await client.get(accepted["status_url"])).json()
    assert status["status"] == "sent" and status["user_id"] == "user_001"
    assert {c["channel"]: c["status"] for c in status["channels"]}["email"] == "sent"
    assert len(stack.sink.messages) == 1  # the repeat sent nothing
    error_of(await client.get("/v1/notifications/never-started"), 404, "not_found")


async def test_body_key_wins_and_a_conflicting_header_is_refused(
    client: httpx.AsyncClient,
) -> None:
    k = key()
    request = {"user_id": "user_001", "template_id": "welcome", "data": WELCOME}
    r = await client.post("/v1/notifications", json={**request, "idempotency_key": k})
    assert r.json()["notification_id"] == k
    r = await client.post(
        "/v1/notifications",
        json={**request, "idempotency_key": k},
        headers={"Idempotency-Key": "something-else"},
    )
    assert error_of(r, 422, "invalid_request")["field"] == "idempotency_key"
    r = await client.post("/v1/notifications", json=request, headers={"Idempotency-Key": "a b"})
    assert error_of(r, 422, "invalid_request")["field"] == "idempotency_key"


@pytest.mark.parametrize(
    ("fields", "field", "reason"),
    [
        ({"user_id": "nobody"}, "user_id", "no user 'nobody'"),
        ({"template_id": "nope"}, "template_id", "no template 'nope'"),
        ({"data": {"app_name": "X"}}, "data", "user_name"),
        ({"expires_at": "2001-01-01T00:00:00+00:00"}, "expires_at", "in the past"),
        ({"scheduled_at": "2030-01-01T00:00:00"}, "scheduled_at", "timezone"),
        ({"channels": ["fax"]}, "channels.0", "Input should be"),
        ({"channels": ["sms"]}, "channels", "does not support sms"),
    ],
)
async def test_bad_requests_are_422_with_the_field(
    client: httpx.AsyncClient,
    stack: Stack,
    fields: dict[str, Any],
    field: str,
    reason: str,
) -> None:
    request = {"user_id": "user_001", "template_id": "welcome", "data": WELCOME, **fields}
    r = await client.post("/v1/notifications", json=request)
    error = error_of(r, 422, "invalid_request")
    assert error["field"] == field
    assert reason in error["reason"]
    assert stack.tidings.started == []


async def test_bulk_starts_one_per_user_and_names_the_bad_one(
    client: httpx.AsyncClient, stack: Stack
) -> None:
    k = key()
    body = {
        "user_ids": ["user_001", "user_002"],
        "template_id": "welcome",
        "data": WELCOME,
        "channels": ["in_app"],
    }
    r = await client.post("/v1/notifications/bulk", json=body, headers={"Idempotency-Key": k})
    assert r.status_code == 202, r.text
    ids = [n["notification_id"] for n in r.json()["results"]]
    assert ids == [f"{k}.user_001", f"{k}.user_002"]
    assert r.json()["results"][0]["status_url"].endswith(f"/v1/notifications/{k}.user_001")
    # Atomic: the unknown user refuses the whole batch, naming it.
    k2 = key()
    bad = {**body, "user_ids": ["user_001", "ghost"], "idempotency_key": k2, "atomic": True}
    error = error_of(await client.post("/v1/notifications/bulk", json=bad), 422, "invalid_request")
    assert error["field"] == "user_ids[1]"
    assert "no user 'ghost'" in error["reason"]
    assert len(stack.tidings.started) == 2  # nothing of the atomic batch started
    # Not atomic (the default): the good one goes, the unknown one has its own outcome.
    r = await client.post("/v1/notifications/bulk", json={**bad, "atomic": False})
    assert r.status_code == 202, r.text
    answer = r.json()
    assert (answer["started"], answer["rejected"]) == (1, 1)
    good, ghost = answer["results"]
    assert good["outcome"] == "started" and good["notification_id"] == f"{k2}.user_001"
    assert ghost == {
        "index": 1,
        "user_id": "ghost",
        "outcome": "rejected",
        "notification_id": None,
        "workflow_id": None,
        "field": "user_ids[1]",
        "reason": "no user 'ghost'",
        "status_url": None,
    }
    assert len(stack.tidings.started) == 3


async def test_cancel_then_cancel_again_is_409(
    client: httpx.AsyncClient, stack: Stack, time_env: WorkflowEnvironment
) -> None:
    at = await time_env.get_current_time() + timedelta(days=1)
    request = {
        "user_id": "user_001",
        "template_id": "welcome",
        "data": WELCOME,
        "scheduled_at": at.isoformat(),
    }
    nid = (await client.post("/v1/notifications", json=request)).json()["notification_id"]
    status = (await client.get(f"/v1/notifications/{nid}")).json()
    assert status["status"] == "scheduled"
    assert datetime.fromisoformat(status["send_at"]) == at

    # Engagement is refused before delivery.
    r = await client.post(f"/v1/notifications/{nid}/engagement", json={"type": "opened"})
    assert "after delivery" in error_of(r, 409, "conflict")["reason"]

    later = at + timedelta(hours=1)
    r = await client.post(f"/v1/notifications/{nid}/reschedule", json={"at": later.isoformat()})
    assert r.status_code == 200, r.text
    assert datetime.fromisoformat(r.json()["send_at"]) == later
    r = await client.post(f"/v1/notifications/{nid}/reschedule", json={"at": "2030-01-01T09:00:00"})
    assert error_of(r, 422, "invalid_request")["field"] == "at"

    r = await client.post(f"/v1/notifications/{nid}/cancel", json={"reason": "changed my mind"})
    assert r.status_code == 200, r.text
    second = await client.post(f"/v1/notifications/{nid}/cancel")
    error_of(second, 409, "conflict")

    async def recorded() -> bool:
        # The run records its end in the database just after the update returns.
        stored = await stack.store.get_notification(nid)
        return stored is not None and stored.status is NotificationStatus.CANCELLED

    await eventually(recorded)
    stored = await stack.store.get_notification(nid)
    assert stored is not None and stored.reason == "changed my mind"
    assert stack.sink.messages == []
    r = await client.post("/v1/notifications/never-started/cancel")
    error_of(r, 404, "not_found")


async def test_engagement_after_delivery_is_accepted(
    client: httpx.AsyncClient, stack: Stack
) -> None:
    request = {"user_id": "user_002", "template_id": "welcome", "data": WELCOME}
    nid = (await client.post("/v1/notifications", json={**request, "channels": ["in_app"]})).json()[
        "notification_id"
    ]
    await stack.tidings.wait_sent(nid)
    body = {"type": "opened", "channel": "in_app", "metadata": {"screen": "home"}}
    r = await client.post(f"/v1/notifications/{nid}/engagement", json=body)
    assert r.status_code == 202 and r.json() == {"notification_id": nid, "type": "opened"}

    async def recorded() -> bool:
        status = (await client.get(f"/v1/notifications/{nid}")).json()
        return [e["type"] for e in status["engagement"]] == ["opened"]

    await eventually(recorded)
    r = await client.post(f"/v1/notifications/{nid}/engagement", json={"type": "liked"})
    assert error_of(r, 422, "invalid_request")["field"] == "type"


async def test_events_are_recorded_once_and_answered_alike(
    client: httpx.AsyncClient, stack: Stack
) -> None:
    request = {"user_id": "user_002", "template_id": "welcome", "data": WELCOME}
    nid = (await client.post("/v1/notifications", json={**request, "channels": ["in_app"]})).json()[
        "notification_id"
    ]
    await stack.tidings.wait_sent(nid)

    async def stored_sent() -> bool:
        stored = await stack.store.get_notification(nid)
        return stored is not None and stored.status is NotificationStatus.SENT

    await eventually(stored_sent)
    body = {"type": "converted", "value": 9.99, "currency": "USD", "channel": "in_app"}
    r = await client.post(f"/v1/notifications/{nid}/events", json=body)
    assert r.status_code == 200, r.text
    assert r.json() == {"notification_id": nid, "type": "converted", "duplicate": False}
    again = await client.post(f"/v1/notifications/{nid}/events", json=body)
    assert again.status_code == 200 and again.json()["duplicate"] is True
    stored = await stack.store.get_notification(nid)
    assert stored is not None and len(stored.engagement) == 1

    r = await client.post(f"/v1/notifications/{nid}/events", json={"type": "opened", "value": 1})
    error_of(r, 422, "invalid_request")
    r = await client.post(
        f"/v1/notifications/{nid}/events", json={"type": "opened", "at": "1970-01-01T00:00:00Z"}
    )
    assert error_of(r, 422, "invalid_request")["field"] == "at"
    r = await client.post("/v1/notifications/never-started/events", json={"type": "opened"})
    error_of(r, 404, "not_found")


async def test_inbox_read_and_read_all(client: httpx.AsyncClient, stack: Stack) -> None:
    request = {"user_id": "user_002", "template_id": "welcome", "channels": ["in_app"]}
    for name in ("Ann", "Bob"):
        data = {"app_name": "MyApp", "user_name": name}
        r = await client.post("/v1/notifications", json={**request, "data": data})
        await stack.tidings.wait_sent(r.json()["notification_id"])
    items = (await client.get("/v1/users/user_002/inbox")).json()
    assert sorted(i["title"] for i in items) == ["Welcome to MyApp, Ann!", "Welcome to MyApp, Bob!"]
    assert all(i["read_at"] is None for i in items)

    first = items[0]["id"]
    assert (await client.post(f"/v1/users/user_002/inbox/{first}/read")).status_code == 204
    unread = (await client.get("/v1/users/user_002/inbox", params={"unread": "true"})).json()
    assert [i["id"] for i in unread] == [items[1]["id"]]
    error_of(await client.post(f"/v1/users/user_001/inbox/{first}/read"), 404, "not_found")

    r = await client.post("/v1/users/user_002/inbox/read-all")
    assert r.status_code == 200 and r.json() == {"marked": 1}
    assert (await client.get("/v1/users/user_002/inbox", params={"unread": True})).json() == []
    limited = await client.get("/v1/users/user_002/inbox", params={"limit": 1})
    assert len(limited.json()) == 1
    error_of(await client.get("/v1/users/nobody/inbox"), 404, "not_found")


async def test_stats_include_success_rates(client: httpx.AsyncClient, stack: Stack) -> None:
    empty = (await client.get("/v1/stats")).json()
    assert empty == {"notifications": {}, "channels": {}, "engagement": {}, "success_rate": None}
    stack.sink.reject_permanently.add("john.doe@example.com")
    request = {"user_id": "user_001", "template_id": "welcome", "data": WELCOME}
    r = await client.post("/v1/notifications", json={**request, "channels": ["email", "in_app"]})
    await stack.tidings.wait_sent(r.json()["notification_id"])

    async def recorded() -> bool:
        # The workflow reports SENT just before its record activity writes the database.
        counts: dict[str, int] = (await client.get("/v1/stats")).json()["notifications"]
        return counts == {"sent": 1}

    await eventually(recorded)
    stats = (await client.get("/v1/stats")).json()
    assert stats["channels"]["email"]["failed"] == 1
    assert stats["channels"]["email"]["success_rate"] == 0.0
    assert stats["channels"]["in_app"]["success_rate"] == 1.0
    assert stats["success_rate"] == 0.5


async def test_bulk_takes_every_field_of_a_single_request(
    client: httpx.AsyncClient, stack: Stack
) -> None:
    """The bulk body is the single request with user_ids: it had lost fallback and
    escalate_after_minutes when it was a copy (issue 7)."""
    schemas = (await client.get("/openapi.json")).json()["components"]["schemas"]
    single, bulk = (
        set(schemas["NotificationRequest"]["properties"]),
        set(schemas["BulkRequest"]["properties"]),
    )
    assert bulk == single - {"user_id"} | {"user_ids", "recipients", "atomic"}

    k = key()
    body = {
        "user_ids": ["user_001"],
        "template_id": "welcome",
        "data": WELCOME,
        "channels": ["in_app"],
        "fallback": ["email"],
        "escalate_after_minutes": 30,
        "idempotency_key": k,
    }
    r = await client.post("/v1/notifications/bulk", json=body)
    assert r.status_code == 202, r.text
    handle = stack.tidings.temporal.get_workflow_handle(f"notification/{k}.user_001")
    history = await handle.fetch_history()
    started = history.events[0].workflow_execution_started_event_attributes
    request = json.loads(started.input.payloads[0].data)["request"]
    assert request["fallback"] == ["email"] and request["escalate_after_minutes"] == 30

    refused = {**body, "user_id": "user_002", "idempotency_key": key()}
    r = await client.post("/v1/notifications/bulk", json=refused)
    assert "user_ids" in error_of(r, 422, "invalid_request")["reason"]
