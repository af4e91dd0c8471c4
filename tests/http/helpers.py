"""Small assertions shared by the HTTP tests."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import httpx

from starter.client import Tidings
from starter.http import create_app
from tidings.api_keys import Scope

WELCOME = {"app_name": "MyApp", "user_name": "John"}


@asynccontextmanager
async def api(
    tidings: Tidings,
    *,
    scopes: Sequence[Scope] = tuple(Scope),
    issuer: Tidings | None = None,
) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the app in front of `tidings`, holding a new API key with `scopes` (every
    scope by default). `issuer` creates the key when `tidings` cannot reach the store."""
    created = await (issuer or tidings).create_api_key("tests", scopes)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=create_app(tidings=tidings)),
        base_url="http://test",
        headers={"Authorization": f"Bearer {created.key}"},
    ) as client:
        yield client


def error_of(response: httpx.Response, status: int, type_: str) -> dict[str, Any]:
    """The error body, after checking the status and that the shape is the shared one."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) >= {"error"}
    error: dict[str, Any] = body["error"]
    assert set(error) == {"type", "field", "reason", "message"}
    assert error["type"] == type_
    assert "Traceback" not in response.text
    return error


async def eventually(check: Callable[[], Awaitable[bool]], within: float = 20.0) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not await check():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.1)
