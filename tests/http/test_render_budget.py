"""A runaway template over HTTP: refused naming the channel, while the API keeps answering."""

from __future__ import annotations

import asyncio
import time

import httpx

from tests.http.helpers import error_of

# 2**40 macro calls and no loop: refused by the budget after a few hundred milliseconds of work.
SLOW = "{% macro f(n) %}{% if n %}{{ f(n - 1) }}{{ f(n - 1) }}{% endif %}{% endmacro %}{{ f(40) }}"


async def test_registering_a_runaway_template_does_not_stall_other_requests(
    client: httpx.AsyncClient,
) -> None:
    template = {"id": "slow", "channels": ["push"], "content": {"push_body": SLOW}}

    async def timed_health() -> float:
        await asyncio.sleep(0.05)  # let the registration start first
        start = time.monotonic()
        r = await client.get("/healthz")
        assert r.status_code == 200
        return time.monotonic() - start

    start = time.monotonic()
    # Bounded: without a budget this registration would run for days.
    registration, health = await asyncio.wait_for(
        asyncio.gather(client.post("/v1/templates", json=template), timed_health()), timeout=10
    )
    elapsed = time.monotonic() - start
    error = error_of(registration, 422, "invalid_request")
    assert error["field"] == "content.push_body"
    assert "render budget of channel push" in error["reason"]
    assert elapsed > 0.15  # the render really ran a while ...
    assert health < elapsed / 2  # ... and the health check did not wait for it
    assert (await client.get("/v1/templates/slow")).status_code == 404
