"""/v1/schedules over HTTP on the dev server (the time-skipping server has no Schedules)."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest_asyncio
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment

from tests.cli.helpers import terminate_queue
from tests.http.helpers import api, error_of
from tests.support import Stack, running_stack


@pytest_asyncio.fixture(loop_scope="session")
async def dev_stack(dev_env: WorkflowEnvironment, tmp_path: Path) -> AsyncIterator[Stack]:
    async with running_stack(dev_env.client, tmp_path) as s:
        await s.seed()
        yield s
        await terminate_queue(dev_env.client, s.settings.task_queue)


@pytest_asyncio.fixture(loop_scope="session")
async def dev_client(dev_stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    async with api(dev_stack.tidings) as c:
        yield c


async def test_schedule_lifecycle(dev_client: httpx.AsyncClient, dev_stack: Stack) -> None:
    schedule_id = f"h-{uuid.uuid4().hex[:8]}"
    body = {
        "schedule_id": schedule_id,
        "cron": ["30 8 * * 1-5"],
        "time_zone": "Europe/Berlin",
        "notification": {
            "user_id": "user_001",
            "template_id": "welcome",
            "data": {"app_name": "MyApp", "user_name": "John"},
            "channels": ["in_app"],
        },
    }
    bad = await dev_client.post("/v1/schedules", json={**body, "cron": ["30 8 * *"]})
    assert error_of(bad, 422, "invalid_request")["field"] == "cron"
    bad = await dev_client.post("/v1/schedules", json={**body, "time_zone": "Nowhere/Land"})
    assert error_of(bad, 422, "invalid_request")["field"] == "time_zone"
    assert (await dev_client.get(f"/v1/schedules/{schedule_id}")).status_code == 404
    try:
        r = await dev_client.post("/v1/schedules", json=body)
        assert r.status_code == 201, r.text
        assert r.json()["time_zone"] == "Europe/Berlin" and len(r.json()["next_runs"]) > 0
        again = await dev_client.post("/v1/schedules", json=body)
        assert error_of(again, 409, "conflict")["field"] == "schedule_id"
        listed = (await dev_client.get("/v1/schedules")).json()
        assert schedule_id in [s["schedule_id"] for s in listed]
        r = await dev_client.post(f"/v1/schedules/{schedule_id}/pause", json={"note": "x"})
        assert r.status_code == 200 and r.json()["paused"] is True
        r = await dev_client.post(f"/v1/schedules/{schedule_id}/resume")
        assert r.status_code == 200 and r.json()["paused"] is False
        assert (await dev_client.post(f"/v1/schedules/{schedule_id}/trigger")).status_code == 202
        assert (await dev_client.delete(f"/v1/schedules/{schedule_id}")).status_code == 204
        assert (await dev_client.get(f"/v1/schedules/{schedule_id}")).status_code == 404
    finally:
        with contextlib.suppress(RPCError):
            await dev_stack.tidings.temporal.get_schedule_handle(schedule_id).delete()


async def test_a_server_without_schedules_is_unavailable(client: httpx.AsyncClient) -> None:
    # The time-skipping test server does not implement Schedules: a 503 naming why, not a 500.
    r = await client.get("/v1/schedules")
    assert "does not implement Schedules" in error_of(r, 503, "unavailable")["message"]


async def test_broadcast_schedule(dev_client: httpx.AsyncClient, dev_stack: Stack) -> None:
    schedule_id = f"hb-{uuid.uuid4().hex[:8]}"
    body = {
        "schedule_id": schedule_id,
        "cron": ["0 9 * * mon"],
        "time_zone": "Europe/Berlin",
        "broadcast": {
            "template_id": "welcome",
            "audience": "all",
            "data": {"app_name": "MyApp", "user_name": "John"},
            "channels": ["in_app"],
        },
    }
    bad = await dev_client.post(
        "/v1/schedules",
        json={**body, "broadcast": {**body["broadcast"], "audience": "segment:nope"}},  # type: ignore[dict-item]
    )
    assert error_of(bad, 422, "invalid_request")["field"] == "broadcast.audience.segment"
    bad = await dev_client.post(
        "/v1/schedules",
        json={**body, "broadcast": {**body["broadcast"], "template_id": "nope"}},  # type: ignore[dict-item]
    )
    assert error_of(bad, 422, "invalid_request")["field"] == "broadcast.template_id"
    assert (await dev_client.get(f"/v1/schedules/{schedule_id}")).status_code == 404
    try:
        r = await dev_client.post("/v1/schedules", json=body)
        assert r.status_code == 201, r.text
        assert r.json()["action"] == "broadcast welcome to all"
    finally:
        with contextlib.suppress(RPCError):
            await dev_stack.tidings.temporal.get_schedule_handle(schedule_id).delete()
