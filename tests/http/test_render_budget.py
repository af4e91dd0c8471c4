"""A runaway template over HTTP: refused naming the channel, while the API keeps answering."""

from __future__ import annotations

import asyncio

import httpx

from tests.http.helpers import error_of

# 2**40 macro calls and no loop: refused by the budget after a few hundred milliseconds of work.
SLOW = "{% macro f(n) %}{% if n %}{{ f(n - 1) }}{{ f(n - 1) }}{% endif %}{% endmacro %}{{ f(40) }}"


async def test_registering_a_runaway_template_does_not_stall_other_requests(
    client: httpx.AsyncClient,
) -> None:
    template = {"id": "slow", "channels": ["push"], "content": {"push_body": SLOW}}
    assert (await client.get("/openapi.json")).status_code == 200  # built once, then cached
    registration = asyncio.create_task(client.post("/v1/templates", json=template))
    answered = 0
    # Bounded: without a budget this registration would run for days.
    async with asyncio.timeout(10):
        while not registration.done():
            # An in-process request may complete without ever yielding to the loop: yield, so
            # the registration gets its turns.
            await asyncio.sleep(0.01)
            assert (await client.get("/openapi.json")).status_code == 200
            answered += 1
        response = await registration
    error = error_of(response, 422, "invalid_request")
    assert error["field"] == "content.push_body"
    assert "render budget of channel push" in error["reason"]
    # The app kept answering while the render ran (its budget stops it after a few hundred
    # milliseconds of work); a render on the event loop would have let at most one request
    # through before the registration's own answer. Counted, not timed.
    assert answered >= 3, answered
    assert (await client.get("/v1/templates/slow")).status_code == 404
