"""/v1/experiments over HTTP in front of the real worker (time-skipping server)."""

from __future__ import annotations

import contextlib
from typing import Any

import httpx
from temporalio.service import RPCError

from tests.http.helpers import error_of
from tests.support import Stack
from workflows.queues import experiment_workflow_id, workflow_id

TEST: dict[str, Any] = {
    "id": "http_subject",
    "template_id": "welcome",
    "data": {"app_name": "MyApp", "user_name": "friend"},
    "variants": [
        {"name": "plain", "control": True, "channels": ["in_app"]},
        {"name": "warm", "channels": ["in_app"]},
    ],
    "holdout_percent": 10,
    "metric": "clicked",
    "attribution_window": "12h",
    "check_every": "1h",
    "max_duration": "3d",
}


async def test_experiment_lifecycle(client: httpx.AsyncClient, stack: Stack) -> None:
    r = await client.post("/v1/experiments", json=TEST)
    assert r.status_code == 201, r.text
    assert r.json()["workflow_id"] == "experiment/http_subject"
    assert (await client.post("/v1/experiments", json=TEST)).status_code == 200
    try:
        r = await client.post(
            "/v1/experiments/http_subject/enrollments", json={"user_id": "user_001"}
        )
        assert r.status_code == 201, r.text
        first = r.json()
        r = await client.post(
            "/v1/experiments/http_subject/enrollments", json={"user_id": "user_001"}
        )
        assert r.status_code == 200 and r.json()["variant"] == first["variant"]
        assert r.json()["duplicate"] is True
        results = (await client.get("/v1/experiments/http_subject")).json()
        assert results["status"] == "running" and sum(results["enrolled"].values()) == 1
        r = await client.post("/v1/experiments/http_subject/stop", json={"reason": "enough"})
        assert r.status_code == 200 and r.json()["ending"] == "stopped"
        r = await client.post(
            "/v1/experiments/http_subject/enrollments", json={"user_id": "user_002"}
        )
        assert "finished" in error_of(r, 409, "conflict")["message"]
        listed = (await client.get("/v1/experiments")).json()
        assert "http_subject" in [e["id"] for e in listed]
    finally:
        temporal = stack.tidings.temporal
        for wf in (
            workflow_id("exp-http_subject-user_001"),
            experiment_workflow_id("http_subject"),
        ):
            with contextlib.suppress(RPCError):
                await temporal.get_workflow_handle(wf).terminate("test finished")


async def test_bad_experiments_are_422_naming_the_field(client: httpx.AsyncClient) -> None:
    r = await client.post("/v1/experiments", json={**TEST, "id": "bad1", "metric": "bought"})
    assert error_of(r, 422, "invalid_request")["field"] == "metric"
    r = await client.post("/v1/experiments", json={**TEST, "id": "bad2", "colour": "red"})
    assert error_of(r, 422, "invalid_request")["field"] == "colour"
    r = await client.post(
        "/v1/experiments", json={**TEST, "id": "bad3", "attribution_window": "100h"}
    )
    error = error_of(r, 422, "invalid_request")
    assert (error["field"], error["reason"]) == (
        "attribution_window",
        "100 h is longer than the engagement window (72 h), after which nothing is recorded",
    )
    assert (await client.get("/v1/experiments/bad1")).status_code == 404
    r = await client.post("/v1/experiments/bad1/enrollments", json={"user_id": "user_001"})
    assert r.status_code == 404
