"""A corpus of bad inputs through the Python client and the HTTP API, against the real dev
server and worker. Each keeps the three promises: a clear error naming the field, nothing
written (no notification, no claimed key, no workflow), and no workflow left failing tasks."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from temporalio.service import RPCError, RPCStatusCode
from temporalio.testing import WorkflowEnvironment

from tests.http.helpers import WELCOME, api, error_of
from tests.support import (
    Stack,
    assert_no_failing_workflow_tasks,
    running_stack,
    task_queue_query,
)
from tidings.errors import Conflict, InvalidRequest, NotFound
from tidings.models import MAX_DEPTH
from workflows.queues import workflow_id

LOOPY = "{% for a in xs %}{% for b in xs %}{% for c in xs %}{% endfor %}{% endfor %}{% endfor %}."
RUNAWAY = "{% for i in range(10000) %}{% for j in range(10000) %}{% endfor %}{% endfor %}"


def nested(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {}
    for _ in range(depth - 1):
        value = {"a": value}
    return value


def listed(depth: int) -> list[Any]:
    value: list[Any] = []
    for _ in range(depth - 1):
        value = [value]
    return value


def ahead(days: float) -> str:
    return (datetime.now(UTC) + timedelta(days=days)).isoformat()


Case = tuple[str, Callable[[], dict[str, Any]], str]  # id, changes to a good request, field

CASES: list[Case] = [
    (
        "data nested one past the bound",
        lambda: {"data": {**WELCOME, "x": nested(MAX_DEPTH)}},
        "data",
    ),
    ("data nested 200 deep", lambda: {"data": {**WELCOME, "x": nested(200)}}, "data"),
    ("data as nested lists", lambda: {"data": {**WELCOME, "x": listed(300)}}, "data"),
    ("data oversize", lambda: {"data": {**WELCOME, "x": "y" * 20_000}}, "data"),
    ("data not an object", lambda: {"data": ["app_name", "MyApp"]}, "data"),
    ("data a string", lambda: {"data": "app_name=MyApp"}, "data"),
    (
        "data-driven runaway loop",
        lambda: {"data": {**WELCOME, "xs": list(range(300))}, "template_id": "loopy"},
        "data",
    ),
    (
        "scheduled_at overflows after UTC",
        lambda: {"scheduled_at": "9999-12-31T23:00:00-12:00"},
        "scheduled_at",
    ),
    (
        "scheduled_at overflows before UTC",
        lambda: {"scheduled_at": "0001-01-01T00:00:00+14:00"},
        "scheduled_at",
    ),
    ("scheduled_at year 9999", lambda: {"scheduled_at": "9999-12-31T23:59:59Z"}, "scheduled_at"),
    ("scheduled_at before 2000", lambda: {"scheduled_at": "1999-12-31T23:59:59Z"}, "scheduled_at"),
    ("scheduled_at as epoch seconds", lambda: {"scheduled_at": 12345}, "scheduled_at"),
    ("scheduled_at over a year ahead", lambda: {"scheduled_at": ahead(400)}, "scheduled_at"),
    ("scheduled_at naive", lambda: {"scheduled_at": "2026-12-01T09:00:00"}, "scheduled_at"),
    ("scheduled_at not a time", lambda: {"scheduled_at": "tomorrow"}, "scheduled_at"),
    ("expires_at overflows", lambda: {"expires_at": "9999-12-31T23:00:00-12:00"}, "expires_at"),
    ("expires_at over a year ahead", lambda: {"expires_at": ahead(366)}, "expires_at"),
    ("expires_at in the past", lambda: {"expires_at": ahead(-1)}, "expires_at"),
    ("expires_at naive", lambda: {"expires_at": "2026-12-01T09:00:00"}, "expires_at"),
    ("user_id a number", lambda: {"user_id": 123}, "user_id"),
    ("user_id unknown", lambda: {"user_id": "ghost"}, "user_id"),
    ("channels a string", lambda: {"channels": "email"}, "channels"),
    ("channels unknown", lambda: {"channels": ["fax"]}, "channels"),
    ("priority unknown", lambda: {"priority": "urgent"}, "priority"),
    ("window not a number", lambda: {"engagement_window_hours": "abc"}, "engagement_window_hours"),
    ("window negative", lambda: {"engagement_window_hours": -1}, "engagement_window_hours"),
    ("unknown field", lambda: {"experiment_id": "exp-7"}, "experiment_id"),
]


@pytest_asyncio.fixture(loop_scope="session")
async def stack(dev_env: WorkflowEnvironment, tmp_path: Path) -> AsyncIterator[Stack]:
    async with running_stack(dev_env.client, tmp_path) as s:
        await s.seed()
        await s.tidings.register_template(
            {
                "id": "loopy",
                "channels": ["email"],
                "content": {"subject": "Hi {{ app_name }}", "text": LOOPY},
                "sample_data": {"app_name": "MyApp", "xs": [1, 2]},
            }
        )
        yield s
        await assert_no_failing_workflow_tasks(dev_env.client, task_queue_query(s.settings))


@pytest_asyncio.fixture(loop_scope="session")
async def client(stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    async with api(stack.tidings) as c:
        yield c


def request_for(changes: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    key = f"bad-{uuid.uuid4().hex[:12]}"
    base = {"user_id": "user_001", "template_id": "welcome", "data": WELCOME}
    return key, {**base, **changes, "idempotency_key": key}


async def assert_nothing_written(stack: Stack, env: WorkflowEnvironment, key: str) -> None:
    assert await stack.store.get_notification(key) is None
    assert await stack.store.idempotency_fingerprints([key]) == {}
    assert workflow_id(key) not in stack.tidings.started
    with pytest.raises(RPCError) as e:
        await env.client.get_workflow_handle(workflow_id(key)).describe()
    assert e.value.status is RPCStatusCode.NOT_FOUND


@pytest.mark.parametrize(("name", "changes", "field"), CASES, ids=[c[0] for c in CASES])
async def test_the_client_refuses_it_naming_the_field(
    stack: Stack,
    dev_env: WorkflowEnvironment,
    name: str,
    changes: Callable[[], dict[str, Any]],
    field: str,
) -> None:
    key, request = request_for(changes())
    with pytest.raises(InvalidRequest) as e:
        await stack.tidings.notify(request)
    assert e.value.field.startswith(field), (name, str(e.value))
    assert "Traceback" not in str(e.value)
    await assert_nothing_written(stack, dev_env, key)


@pytest.mark.parametrize(("name", "changes", "field"), CASES, ids=[c[0] for c in CASES])
async def test_the_http_api_refuses_it_naming_the_field(
    client: httpx.AsyncClient,
    stack: Stack,
    dev_env: WorkflowEnvironment,
    name: str,
    changes: Callable[[], dict[str, Any]],
    field: str,
) -> None:
    key, request = request_for(changes())
    r = await client.post(
        "/v1/notifications",
        content=json.dumps(request),
        headers={"Content-Type": "application/json"},
    )
    error = error_of(r, 422, "invalid_request")
    assert error["field"].startswith(field), (name, error)
    await assert_nothing_written(stack, dev_env, key)


async def test_python_callers_can_nest_beyond_any_recursion_limit(
    stack: Stack, dev_env: WorkflowEnvironment
) -> None:
    key, request = request_for({"data": {**WELCOME, "x": nested(100_000)}})
    with pytest.raises(InvalidRequest) as e:
        await stack.tidings.notify(request)
    assert e.value.field == "data" and f"deeper than {MAX_DEPTH}" in e.value.reason
    await assert_nothing_written(stack, dev_env, key)


async def test_json_nested_too_deep_to_parse_is_a_clear_error(
    client: httpx.AsyncClient, stack: Stack, dev_env: WorkflowEnvironment
) -> None:
    key, request = request_for({"data": {"x": "HOLE"}})
    deep = '{"a":' * 5000 + "1" + "}" * 5000
    body = json.dumps(request).replace('"HOLE"', deep)
    r = await client.post(
        "/v1/notifications", content=body, headers={"Content-Type": "application/json"}
    )
    assert r.status_code in (400, 422), r.text
    assert "Traceback" not in r.text
    await assert_nothing_written(stack, dev_env, key)


@pytest.mark.parametrize(
    "at",
    ["9999-12-31T23:00:00-12:00", "0001-01-01T00:00:00+14:00", "1999-01-01T00:00:00Z", "x"],
)
async def test_a_bad_reschedule_names_at_and_leaves_the_run_healthy(
    client: httpx.AsyncClient, stack: Stack, dev_env: WorkflowEnvironment, at: str
) -> None:
    _, request = request_for({"scheduled_at": ahead(30)})
    ref = await stack.tidings.notify(request)
    r = await client.post(f"/v1/notifications/{ref.notification_id}/reschedule", json={"at": at})
    assert error_of(r, 422, "invalid_request")["field"] == "at"
    if at != "x":
        with pytest.raises(InvalidRequest) as e:
            await stack.tidings.reschedule(ref.notification_id, datetime.fromisoformat(at))
        assert e.value.field == "at"
    await assert_no_failing_workflow_tasks(dev_env.client, f'WorkflowId = "{ref.workflow_id}"')
    await stack.tidings.cancel(ref.notification_id)


async def test_a_runaway_template_is_refused_at_registration_naming_the_channel(
    client: httpx.AsyncClient, stack: Stack
) -> None:
    template = {
        "id": "runaway",
        "channels": ["sms"],
        "content": {"subject": "s", "text": "t", "sms": RUNAWAY},
    }
    with pytest.raises(InvalidRequest) as e:
        await stack.tidings.register_template(template)
    assert e.value.field == "content.sms" and "channel sms" in e.value.reason
    r = await client.post("/v1/templates", json=template)
    error = error_of(r, 422, "invalid_request")
    assert error["field"] == "content.sms" and "render budget" in error["reason"]
    with pytest.raises(NotFound):
        await stack.tidings.get_template("runaway")


@pytest.mark.parametrize(
    "sample_data",
    [nested(MAX_DEPTH + 1), {"x": "y" * 20_000}, {"x": listed(500)}],
    ids=["deep", "oversize", "deep lists"],
)
async def test_template_sample_data_is_bounded(stack: Stack, sample_data: dict[str, Any]) -> None:
    template_id = f"t-{uuid.uuid4().hex[:8]}"
    template = {
        "id": template_id,
        "channels": ["email"],
        "content": {"subject": "s", "text": "t"},
        "sample_data": sample_data,
    }
    with pytest.raises(InvalidRequest) as e:
        await stack.tidings.register_template(template)
    assert e.value.field == "sample_data"
    with pytest.raises(NotFound):
        await stack.tidings.get_template(template_id)


async def test_a_reused_key_with_another_request_starts_nothing_more(
    client: httpx.AsyncClient, stack: Stack, dev_env: WorkflowEnvironment
) -> None:
    key, request = request_for({})
    first = await stack.tidings.notify(request)
    variants: list[dict[str, Any]] = [
        {"data": {**WELCOME, "user_name": "Jane"}},
        {"priority": "high"},
        {"channels": ["email"]},
    ]
    for change in variants:
        with pytest.raises(Conflict) as e:
            await stack.tidings.notify({**request, **change})
        assert e.value.field == "idempotency_key" and key in str(e.value)
        r = await client.post("/v1/notifications", json={**request, **change})
        assert key in error_of(r, 409, "conflict")["reason"]
    again = await stack.tidings.notify(request)
    assert (again.notification_id, again.created) == (first.notification_id, False)
    assert stack.tidings.started.count(first.workflow_id) == 2  # the same workflow both times
    await stack.tidings.wait_sent(key)
    assert len(stack.sink.messages) == 1


async def test_after_the_whole_corpus_no_workflow_has_a_failing_task(
    client: httpx.AsyncClient, stack: Stack, dev_env: WorkflowEnvironment
) -> None:
    for _, changes, _ in CASES:
        _, request = request_for(changes())
        with pytest.raises(InvalidRequest):
            await stack.tidings.notify(request)
        r = await client.post(
            "/v1/notifications",
            content=json.dumps(request),
            headers={"Content-Type": "application/json"},
        )
        assert r.status_code == 422
    good = await stack.tidings.notify(request_for({})[1])
    await stack.tidings.wait_sent(good.notification_id)
    await assert_no_failing_workflow_tasks(dev_env.client, task_queue_query(stack.settings))


async def test_the_helper_sees_a_workflow_task_that_keeps_failing(
    stack: Stack, dev_env: WorkflowEnvironment
) -> None:
    # A workflow type the worker does not know: its every workflow task fails.
    handle = await dev_env.client.start_workflow(
        "NoSuchWorkflow", id=f"stuck-{uuid.uuid4().hex[:8]}", task_queue=stack.settings.task_queue
    )
    try:
        with pytest.raises(AssertionError, match="failing workflow tasks"):
            # The default settle time is what sees it even while visibility lags the start.
            await assert_no_failing_workflow_tasks(
                dev_env.client, f'WorkflowId = "{handle.id}"', within=20
            )
    finally:
        await handle.terminate("test finished")
        # The stack's own check lists running runs on this queue at teardown: wait until
        # visibility has caught up with the termination, or it would find this one.
        running = f'WorkflowId = "{handle.id}" AND ExecutionStatus = "Running"'
        for _ in range(100):
            if not [w async for w in dev_env.client.list_workflows(running)]:
                break
            await asyncio.sleep(0.1)


UNKNOWN_FIELD_BODIES = [
    ("PUT", "/v1/users/user_001", {"email": "a@example.com", "experiment_id": "x"}),
    ("PUT", "/v1/users/user_001/preferences", {"channels": {}, "experiment_id": "x"}),
    (
        "POST",
        "/v1/templates",
        {
            "id": "t-unknown",
            "channels": ["email"],
            "content": {"subject": "s", "text": "t", "experiment_id": "x"},
        },
    ),
    (
        "POST",
        "/v1/notifications/bulk",
        {"user_ids": ["user_001"], "template_id": "welcome", "experiment_id": "x"},
    ),
    (
        "POST",
        "/v1/notifications/n-unknown/reschedule",
        {"at": "2030-01-01T00:00:00Z", "experiment_id": "x"},
    ),
    ("POST", "/v1/notifications/n-unknown/cancel", {"experiment_id": "x"}),
    ("POST", "/v1/notifications/n-unknown/engagement", {"type": "opened", "experiment_id": "x"}),
]


@pytest.mark.parametrize(
    ("method", "path", "body"), UNKNOWN_FIELD_BODIES, ids=[b[1] for b in UNKNOWN_FIELD_BODIES]
)
async def test_every_http_body_refuses_unknown_fields_naming_them(
    client: httpx.AsyncClient, stack: Stack, method: str, path: str, body: dict[str, Any]
) -> None:
    before = await stack.tidings.get_user("user_001")
    r = await client.request(method, path, json=body)
    error = error_of(r, 422, "invalid_request")
    assert error["field"].endswith("experiment_id"), error
    assert await stack.tidings.get_user("user_001") == before
    with pytest.raises(NotFound):
        await stack.tidings.get_template("t-unknown")
