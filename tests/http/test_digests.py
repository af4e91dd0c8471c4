"""/v1/digests over HTTP in front of the real worker (time-skipping server): bad definitions
are refused by field, a repeated event counts once, and a flush sends one in-app digest."""

from __future__ import annotations

import asyncio
import contextlib

import httpx
from temporalio.service import RPCError

from tests.http.helpers import error_of
from tests.support import Stack
from workflows.digest_io import digest_workflow_id
from workflows.queues import workflow_id

TEMPLATE = {
    "id": "comment_digest",
    "channels": ["in_app"],
    "content": {"subject": "{{ total }} new comments", "text": "{{ events[0].data.by }}"},
    "sample_data": {"total": 1, "events": [{"id": "c1", "data": {"by": "ann"}}]},
}


async def test_bad_definitions_are_refused_by_field(client: httpx.AsyncClient) -> None:
    await client.post("/v1/templates", json=TEMPLATE)
    for body, field in [
        ({"template_id": "comment_digest", "window_seconds": 0}, "window_seconds"),
        ({"template_id": "comment_digest", "max_events": 0}, "max_events"),
        ({"template_id": "no_such_template"}, "template_id"),
        ({"template_id": "comment_digest", "schedule": {"timezone": "Mars/Base"}}, "schedule"),
        ({"template_id": "comment_digest", "key": "other"}, "key"),
    ]:
        r = await client.put("/v1/digests/comments", json=body)
        assert error_of(r, 422, "invalid_request")["field"].startswith(field), r.text
    assert (await client.get("/v1/digests")).json() == []
    r = await client.post(
        "/v1/digests/comments/events", json={"user_id": "user_001", "event_id": "c1"}
    )
    assert error_of(r, 422, "invalid_request")["field"] == "key"


async def test_events_and_flush_send_one_digest(client: httpx.AsyncClient, stack: Stack) -> None:
    assert (await client.post("/v1/templates", json=TEMPLATE)).status_code == 201
    r = await client.put(
        "/v1/digests/comments",
        json={"template_id": "comment_digest", "window_seconds": 3600, "first_n": 3},
    )
    assert r.status_code == 200, r.text
    try:
        for event_id, duplicate in [("c1", False), ("c2", False), ("c1", True)]:
            r = await client.post(
                "/v1/digests/comments/events",
                json={"user_id": "user_001", "event_id": event_id, "data": {"by": "ann"}},
            )
            assert r.status_code == 202, r.text
            assert r.json()["duplicate"] is duplicate
        r = await client.post("/v1/digests/comments/users/user_001/flush")
        assert r.status_code == 202, r.text
        status: dict[str, object] = {}
        for _ in range(200):
            status = (await client.get("/v1/digests/comments/users/user_001")).json()
            if status["batches_sent"] == 1 and not status["running"]:
                break
            await asyncio.sleep(0.05)
        assert (status["batches_sent"], status["events_sent"], status["pending"]) == (1, 2, 0)
        sent = await stack.tidings.wait_sent("digest:user_001:comments:1")
        assert sent.status.value == "sent", sent
        inbox = (await client.get("/v1/users/user_001/inbox")).json()
        assert [i["title"] for i in inbox if "comments" in i["title"]] == ["2 new comments"]
    finally:
        temporal = stack.tidings.temporal
        for wf in (
            digest_workflow_id("user_001", "comments"),
            workflow_id("digest:user_001:comments:1"),
        ):
            with contextlib.suppress(RPCError):
                await temporal.get_workflow_handle(wf).terminate("test finished")
