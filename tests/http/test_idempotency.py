"""An idempotency key names one request: the same request again is the same notification, a
different one is a 409 naming the key, and nothing is started or written for it."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone

import httpx
from temporalio.testing import WorkflowEnvironment

from tests.http.helpers import WELCOME, error_of
from tests.support import Stack

REQUEST = {"user_id": "user_001", "template_id": "welcome", "data": WELCOME}


def key() -> str:
    return f"idem-{uuid.uuid4().hex[:12]}"


async def test_the_same_key_with_another_body_is_a_conflict_naming_the_key(
    client: httpx.AsyncClient, stack: Stack
) -> None:
    k = key()
    first = await client.post("/v1/notifications", json={**REQUEST, "idempotency_key": k})
    assert first.status_code == 202 and first.json()["created"] is True

    other = {**REQUEST, "data": {**WELCOME, "user_name": "Jane"}, "idempotency_key": k}
    error = error_of(await client.post("/v1/notifications", json=other), 409, "conflict")
    assert error["field"] == "idempotency_key"
    assert k in error["reason"] and "different request" in error["reason"]

    # Priority, channels or times count as a different request too.
    for change in ({"priority": "high"}, {"channels": ["email"]}):
        r = await client.post("/v1/notifications", json={**REQUEST, **change, "idempotency_key": k})
        error_of(r, 409, "conflict")

    await stack.tidings.wait_sent(k)
    assert [m.subject for m in stack.sink.messages] == ["Welcome to MyApp, John!"]
    assert stack.tidings.started.count(f"notification/{k}") == 1  # no second start attempted


async def test_the_same_key_and_body_is_the_same_notification(
    client: httpx.AsyncClient, stack: Stack, time_env: WorkflowEnvironment
) -> None:
    k = key()
    # The shared time-skipping server's clock runs ahead of the wall clock once other tests
    # skipped time: the expiry must lie ahead of both, or the run expires before it sends.
    now = max(datetime.now(UTC), await time_env.get_current_time())
    expires = now.replace(microsecond=0) + timedelta(days=30)
    paris = expires.astimezone(timezone(timedelta(hours=1))).isoformat()
    body = {**REQUEST, "expires_at": paris}
    first = await client.post("/v1/notifications", json=body, headers={"Idempotency-Key": k})
    assert first.status_code == 202, first.text
    # The same instant spelled in UTC, the key in the body instead of the header.
    again = {**REQUEST, "expires_at": expires.isoformat(), "idempotency_key": k}
    r = await client.post("/v1/notifications", json=again)
    assert r.status_code == 202, r.text
    assert r.json() == {**first.json(), "created": False}
    await stack.tidings.wait_sent(k)
    assert len(stack.sink.messages) == 1


async def test_bulk_checks_every_key_before_starting_any(
    client: httpx.AsyncClient, stack: Stack
) -> None:
    k = key()
    bulk = {"user_ids": ["user_001", "user_002"], "template_id": "welcome", "data": WELCOME}
    # user_002 already has a notification under `<k>.user_002`, for a different request.
    r = await client.post(
        "/v1/notifications",
        json={
            **REQUEST,
            "user_id": "user_002",
            "priority": "high",
            "idempotency_key": f"{k}.user_002",
        },
    )
    assert r.status_code == 202, r.text
    atomic = {**bulk, "idempotency_key": k, "atomic": True}
    r = await client.post("/v1/notifications/bulk", json=atomic)
    error = error_of(r, 422, "invalid_request")
    assert error["field"] == "user_ids[1].idempotency_key"
    assert f"{k}.user_002" in error["reason"] and "nothing was started" in error["reason"]
    assert f"notification/{k}.user_001" not in stack.tidings.started  # nothing else started
    assert await stack.store.idempotency_fingerprints([f"{k}.user_001"]) == {}
    # Without atomic, the conflicting recipient is refused on its own and the other goes.
    r = await client.post("/v1/notifications/bulk", json={**bulk, "idempotency_key": k})
    assert r.status_code == 202, r.text
    first, second = r.json()["results"]
    assert first["outcome"] == "started" and first["notification_id"] == f"{k}.user_001"
    assert second["outcome"] == "rejected"
    assert second["field"] == "user_ids[1].idempotency_key"
    assert f"{k}.user_002" in second["reason"] and second["notification_id"] is None
