"""Bad input through `tidings send`: one line naming the field, nothing written, and no run left
failing workflow tasks (the same corpus idea as tests/integration/test_bad_input.py)."""

from __future__ import annotations

import json
import uuid

import pytest
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment

from tests.cli.helpers import Cli, ok, one_line_error
from tests.support import Stack, assert_no_failing_workflow_tasks, task_queue_query
from tidings.models import MAX_DEPTH
from workflows.queues import workflow_id

WELCOME = ("-d", "app_name=MyApp", "-d", "user_name=John")


def deep(depth: int) -> str:
    return '{"x": ' * depth + "1" + "}" * depth


CASES = [
    ("deep data", ("-d", deep(MAX_DEPTH + 1)), "data"),
    ("deep typed value", ("-d", f"x:={deep(MAX_DEPTH)}"), "data"),
    ("oversize data", ("-d", json.dumps({"x": "y" * 20_000})), "data"),
    ("overflowing --at", ("--at", "9999-12-31T23:00:00-12:00"), "scheduled_at"),
    ("overflowing --at before UTC", ("--at", "0001-01-01T00:00:00+14:00"), "scheduled_at"),
    ("--at over a year", ("--at", "+400d"), "scheduled_at"),
    ("--at past year 9999", ("--at", "+99999999d"), "--at"),
    ("--expires overflowing", ("--expires", "9999-12-31T23:00:00-12:00"), "expires_at"),
    ("naive --at", ("--at", "2026-12-01T09:00:00"), "--at"),
]


@pytest.mark.parametrize(("name", "args", "field"), CASES, ids=[c[0] for c in CASES])
async def test_send_refuses_it_naming_the_field_and_writes_nothing(
    cli: Cli,
    stack: Stack,
    dev_env: WorkflowEnvironment,
    name: str,
    args: tuple[str, ...],
    field: str,
) -> None:
    key = f"cli-bad-{uuid.uuid4().hex[:10]}"
    result = await cli("send", "user_001", "welcome", *WELCOME, *args, "--idempotency-key", key)
    one_line_error(result, f"{field}")
    assert await stack.store.get_notification(key) is None
    assert await stack.store.idempotency_fingerprints([key]) == {}
    with pytest.raises(RPCError):
        await dev_env.client.get_workflow_handle(workflow_id(key)).describe()


async def test_a_reused_key_says_so_and_no_run_is_left_failing(
    cli: Cli, stack: Stack, dev_env: WorkflowEnvironment
) -> None:
    key = f"cli-key-{uuid.uuid4().hex[:10]}"
    ok(await cli("send", "user_001", "welcome", *WELCOME, "--idempotency-key", key))
    again = ok(await cli("send", "user_001", "welcome", *WELCOME, "--idempotency-key", key))
    assert "already existed" in again
    other = await cli(
        "send", "user_001", "welcome", *WELCOME, "-d", "extra=1", "--idempotency-key", key
    )
    one_line_error(other, "idempotency_key", key, "different request")
    await stack.tidings.wait_sent(key)
    await assert_no_failing_workflow_tasks(dev_env.client, task_queue_query(stack.settings))
