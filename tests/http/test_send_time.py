"""send_at="optimal" over HTTP: accepted with its window, and bad windows refused with the field
before anything starts."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
import pytest

from tests.http.helpers import WELCOME, error_of
from tests.support import Stack, assert_sent_in_the_first_hour


async def test_optimal_is_accepted_with_its_reason(client: httpx.AsyncClient, stack: Stack) -> None:
    now = await stack.tidings.now()
    request = {
        "user_id": "user_001",
        "template_id": "welcome",
        "data": WELCOME,
        "channels": ["email"],
        "send_at": "optimal",
        "optimal_latest": (now + timedelta(hours=12)).isoformat(),
    }
    r = await client.post("/v1/notifications", json=request)
    assert r.status_code == 202, r.text
    status_url = r.json()["status_url"]
    notification_id = r.json()["notification_id"]
    for _ in range(100):
        status = (await client.get(status_url)).json()
        if status["send_time_reason"] is not None:
            break
    # Nobody has engaged with anything yet: the window's first hour, i.e. now, or this user's
    # minute (0-14) of the hour under way when the request came before it.
    assert status["send_time_reason"].startswith("optimal send time")
    assert status["send_time_reason"].endswith(
        "no engagement history yet, so the window's first hour"
    )
    assert_sent_in_the_first_hour(await stack.tidings.wait_sent(notification_id), now)


@pytest.mark.parametrize(
    ("fields", "field", "reason"),
    [
        ({"send_at": "soon"}, "send_at", "'optimal'"),
        ({"send_at": "optimal", "optimal_within": "P8D"}, "optimal_within", "at most 7 days"),
        ({"send_at": "optimal", "optimal_within": 0}, "optimal_within", "more than 0"),
        ({"send_at": "optimal", "optimal_within": -60}, "optimal_within", "more than 0"),
        (
            {"send_at": "optimal", "optimal_latest": "2001-01-01T00:00:00+00:00"},
            "optimal_latest",
            "not after the send time",
        ),
        ({"optimal_within": "PT2H"}, "", 'need send_at="optimal"'),
        (
            {"send_at": "optimal", "optimal_within": "PT2H", "optimal_latest": "LATEST"},
            "",
            "not both",
        ),
    ],
)
async def test_bad_windows_are_422_with_the_field(
    client: httpx.AsyncClient,
    stack: Stack,
    fields: dict[str, Any],
    field: str,
    reason: str,
) -> None:
    now = await stack.tidings.now()
    if fields.get("optimal_latest") == "LATEST":
        fields = {**fields, "optimal_latest": (now + timedelta(hours=3)).isoformat()}
    request = {"user_id": "user_001", "template_id": "welcome", "data": WELCOME, **fields}
    error = error_of(await client.post("/v1/notifications", json=request), 422, "invalid_request")
    if field:
        assert error["field"] == field
    assert reason in error["reason"]
    assert stack.tidings.started == []


async def test_a_window_of_more_than_7_days_by_its_end_is_refused(
    client: httpx.AsyncClient, stack: Stack
) -> None:
    now = await stack.tidings.now()
    latest = now + timedelta(days=7, hours=1)
    request = {
        "user_id": "user_001",
        "template_id": "welcome",
        "data": WELCOME,
        "send_at": "optimal",
        "optimal_latest": latest.isoformat(),
    }
    error = error_of(await client.post("/v1/notifications", json=request), 422, "invalid_request")
    assert error["field"] == "optimal_latest" and "7 days" in error["reason"]
    assert stack.tidings.started == []
