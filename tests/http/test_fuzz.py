"""A property-based fuzz of the whole HTTP API from its own OpenAPI schema (schemathesis): for
every operation, generated requests (with an admin key) get no 5xx, only documented status
codes and content types, and bodies that match the documented schemas, errors included.

The app runs in a real server on loopback in the session's event loop; the generated requests
are sent from a thread, so the loop keeps serving them. Examples are bounded (MAX_EXAMPLES per
operation) so the run stays well under a minute."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest_asyncio
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import checks
from schemathesis.core.result import Ok
from temporalio.testing import WorkflowEnvironment

from starter.dev.api_server import DevApi
from starter.dev.devserver import pick_port
from starter.http import create_app
from tests.cli.helpers import terminate_queue
from tests.support import Stack, running_stack
from tidings.api_keys import Scope

MAX_EXAMPLES = 30
CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_schema_conformance,
]
# /healthz takes no input and answers 503 by design when a dependency is slower than its
# timeout, which a loaded machine can make the dev server; its answers are still checked
# against the schema (503 is documented), just not refused for being 5xx.
UNHEALTHY_BY_DESIGN = {"GET /healthz": [c for c in CHECKS if c is not checks.not_a_server_error]}


@pytest_asyncio.fixture(loop_scope="session")
async def stack(dev_env: WorkflowEnvironment, tmp_path: Path) -> AsyncIterator[Stack]:
    """On the dev server: /v1/schedules needs Temporal Schedules, which the time-skipping test
    server does not implement."""
    async with running_stack(dev_env.client, tmp_path) as s:
        await s.seed()
        yield s
        for made in await s.tidings.list_schedules():  # the examples the fuzz created
            await s.tidings.delete_schedule(made.schedule_id)
        await terminate_queue(dev_env.client, s.settings.task_queue)


def _fuzz(base_url: str, key: str, seen: dict[str, set[int]]) -> list[str]:
    schema = schemathesis.openapi.from_dict(create_app().openapi())
    headers = {"Authorization": f"Bearer {key}"}
    problems: list[str] = []
    with httpx.Client(base_url=base_url, timeout=30, follow_redirects=False) as http:
        for result in schema.get_all_operations():
            assert isinstance(result, Ok), result
            operation = result.ok()

            @given(case=operation.as_strategy())
            @settings(
                max_examples=MAX_EXAMPLES,
                deadline=None,
                database=None,
                derandomize=True,
                phases=[Phase.explicit, Phase.generate],
                suppress_health_check=list(HealthCheck),
            )
            def check(case: Any) -> None:
                kwargs = case.as_transport_kwargs(base_url=base_url, headers=headers)
                kwargs.pop("url", None)
                response = http.request(
                    kwargs.pop("method"), case.formatted_path, **_httpx_kwargs(kwargs)
                )
                seen.setdefault(case.operation.label, set()).add(response.status_code)
                case.validate_response(
                    response, checks=UNHEALTHY_BY_DESIGN.get(case.operation.label, CHECKS)
                )

            try:
                check()
            except (Exception, BaseExceptionGroup) as e:  # every failing operation is reported
                problems.append(f"{operation.label}: {str(e).strip()[:1500]}")
    return problems


def _httpx_kwargs(kwargs: dict[str, Any]) -> dict[str, Any]:
    allowed = {"headers", "params", "json", "content", "data", "files"}
    chosen = {k: v for k, v in kwargs.items() if k in allowed}
    if isinstance(chosen.get("data"), bytes | str):  # raw bodies: httpx calls them content
        chosen["content"] = chosen.pop("data")
    return chosen


async def test_the_api_holds_up_against_its_own_schema(stack: Stack) -> None:
    key = (await stack.tidings.create_api_key("fuzz", list(Scope))).key
    seen: dict[str, set[int]] = {}
    api = DevApi(stack.tidings, "127.0.0.1", pick_port("127.0.0.1"), owns_client=False)
    await api.start()
    try:
        async with asyncio.timeout(120):
            problems = await asyncio.to_thread(_fuzz, api.url, key, seen)
    finally:
        await api.stop()
    assert not problems, "\n\n".join(problems)
    # Every operation was exercised, and not only refused: some requests got through.
    operations = {
        f"{m.upper()} {p}" for p, ops in create_app().openapi()["paths"].items() for m in ops
    }
    assert set(seen) == operations
    assert sum(any(s < 400 for s in codes) for codes in seen.values()) >= len(operations) // 3, seen
