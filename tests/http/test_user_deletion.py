"""DELETE /v1/users/{id}: pending notifications are cancelled, personal data is gone."""

from __future__ import annotations

from datetime import timedelta

import httpx
from temporalio.testing import WorkflowEnvironment

from tests.http.helpers import WELCOME, error_of, eventually
from tests.support import Stack


async def test_deleting_a_user_cancels_and_erases(
    client: httpx.AsyncClient, stack: Stack, time_env: WorkflowEnvironment
) -> None:
    user = {
        "email": "erase.me@example.com",
        "phone": "+14155550123",
        "webhook_url": "https://hooks.example.com/erase-me",
        "attributes": {"plan": "pro"},
    }
    assert (await client.put("/v1/users/erase-me", json=user)).status_code == 200
    device = {"platform": "fcm", "token": "erase-me-device-token"}
    assert (await client.post("/v1/users/erase-me/devices", json=device)).status_code == 201
    base = {"user_id": "erase-me", "template_id": "welcome", "data": WELCOME}
    sent = (await client.post("/v1/notifications", json={**base, "channels": ["in_app"]})).json()
    at = await time_env.get_current_time() + timedelta(days=1)
    later = {**base, "channels": ["email"], "scheduled_at": at.isoformat()}
    pending = (await client.post("/v1/notifications", json=later)).json()

    async def delivered() -> bool:
        r = await client.get(f"/v1/notifications/{sent['notification_id']}")
        return bool(r.json()["status"] == "sent")

    await eventually(delivered)
    assert await stack.store.list_inbox("erase-me")
    assert await stack.store.inbox_events("erase-me")

    r = await client.delete("/v1/users/erase-me")
    assert r.status_code == 200, r.text
    assert r.json() == {"user_id": "erase-me", "cancelled": [pending["notification_id"]]}

    error_of(await client.get("/v1/users/erase-me"), 404, "not_found")
    assert await stack.store.list_devices("erase-me") == []
    assert await stack.store.list_inbox("erase-me") == []
    assert await stack.store.inbox_events("erase-me") == []
    status = (await client.get(f"/v1/notifications/{pending['notification_id']}")).json()
    assert status["status"] == "cancelled"
    record = await stack.store.get_notification(sent["notification_id"])
    assert record is not None
    assert [c.target for c in record.channels] == ["(erased)"]
    error_of(await client.delete("/v1/users/erase-me"), 404, "not_found")
