"""/v1/broadcasts over HTTP in front of the real worker (time-skipping server)."""

from __future__ import annotations

import httpx

from tests.http.helpers import error_of
from tests.support import Stack
from workflows.broadcast import BroadcastWorkflow
from workflows.queues import broadcast_workflow_id

WELCOME = {"app_name": "MyApp", "user_name": "friend"}


async def test_broadcast_lifecycle(client: httpx.AsyncClient, stack: Stack) -> None:
    body = {
        "broadcast_id": "http_news",
        "template_id": "welcome",
        "audience": {"kind": "users", "user_ids": ["user_001", "user_002"]},
        "data": WELCOME,
        "channels": ["in_app"],
    }
    r = await client.post("/v1/broadcasts", json=body)
    assert r.status_code == 201, r.text
    assert r.json() == {"broadcast_id": "http_news", "workflow_id": "broadcast/http_news"}
    handle = stack.tidings.temporal.get_workflow_handle_for(
        BroadcastWorkflow.run, broadcast_workflow_id("http_news")
    )
    await handle.result()
    progress = (await client.get("/v1/broadcasts/http_news")).json()
    assert progress["status"] == "completed"
    assert progress["counters"]["recipients"] == 2
    assert progress["counters"]["channels"]["in_app"]["sent"] == 2
    listed = (await client.get("/v1/broadcasts")).json()
    assert [b["id"] for b in listed] == ["http_news"]
    r = await client.post("/v1/broadcasts/http_news/pause")
    assert "completed" in error_of(r, 409, "conflict")["message"]
    r = await client.post("/v1/broadcasts", json=body)
    assert error_of(r, 409, "conflict")["field"] == "broadcast_id"
    r = await client.get("/v1/broadcasts/no-such")
    assert r.status_code == 404


async def test_bad_broadcasts_are_422_naming_the_field(client: httpx.AsyncClient) -> None:
    cases = [
        ({"template_id": "welcome", "audience": {"kind": "users", "user_ids": []}}, "audience"),
        (
            {"template_id": "welcome", "audience": {"kind": "segment", "segment": "vips"}},
            "audience.segment",
        ),
        ({"template_id": "nope", "audience": {"kind": "all"}}, "template_id"),
        ({"template_id": "welcome", "audience": {"kind": "all"}, "channels": ["sms"]}, "channels"),
        (
            {
                "template_id": "welcome",
                "audience": {"kind": "all"},
                "experiment": {"share": 1.5, "variants": [{"name": "a", "control": True}]},
            },
            "experiment.share",
        ),
        (
            {
                "template_id": "welcome",
                "audience": {"kind": "all"},
                "experiment": {"share": 0.1, "variants": [{"name": "a", "control": True}]},
            },
            "experiment.variants",
        ),
        (
            {
                "template_id": "welcome",
                "audience": {"kind": "all"},
                "experiment": {
                    "share": 0.1,
                    "variants": [{"name": "a", "control": True}, {"name": "b"}],
                    "attribution_window": "100h",  # the engagement window is 72 h
                },
            },
            "experiment.attribution_window",
        ),
    ]
    for body, field in cases:
        r = await client.post("/v1/broadcasts", json={**body, "data": WELCOME})
        error = error_of(r, 422, "invalid_request")
        assert error["field"].startswith(field), (body, error)
    assert (await client.get("/v1/broadcasts")).json() == []
    assert (await client.get("/v1/experiments")).json() == []
