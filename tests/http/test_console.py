"""/console: an admin key opens it (and moves from the URL into a cookie), other keys do not;
in headless Chromium the pages render with the store's figures, the charts are there, and a
notification's timeline links to its run in the Temporal Web UI."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
import pytest_asyncio
import uvicorn
from playwright.async_api import async_playwright

from bench.analytics_data import START, load
from starter.http import create_app
from tests.support import Stack
from tidings.analytics import MetricsFilter, Period
from tidings.api_keys import Scope

CHROMIUM = Path("/usr/bin/chromium")
QUERY = f"start={START.date()}T00:00:00&end={(START + timedelta(days=10)).date()}T00:00:00"
PERIOD = Period(start=START, end=START + timedelta(days=10))


@pytest_asyncio.fixture(loop_scope="session")
async def anonymous(stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(tidings=stack.tidings))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
        yield c


async def test_only_an_admin_key_opens_the_console(
    stack: Stack, anonymous: httpx.AsyncClient
) -> None:
    r = await anonymous.get("/console")
    assert r.status_code == 401 and 'name="key"' in r.text
    reader = await stack.tidings.create_api_key("reader", [Scope.READ])
    r = await anonymous.get("/console", params={"key": reader.key})
    assert r.status_code == 403 and "tidings_console" not in r.headers.get("set-cookie", "")
    r = await anonymous.post("/console/login", content=f"key={reader.key}")
    assert r.status_code == 403
    admin = await stack.tidings.create_api_key("admin", [Scope.ADMIN])
    r = await anonymous.get("/console", params={"key": admin.key, "days": "7"})
    assert r.status_code == 303 and r.headers["location"] == "/console?days=7"
    cookie = r.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/console" in cookie
    r = await anonymous.get("/console?days=7")  # the client kept the cookie
    assert r.status_code == 200 and 'data-figure="sent"' in r.text
    r = await anonymous.get(
        "/console", params={"start": "2026-10-02T00:00", "end": "2026-10-01T00:00"}
    )
    assert r.status_code == 422 and "end must be after start" in r.text
    await stack.tidings.revoke_api_key(admin.api_key.id)
    assert (await anonymous.get("/console")).status_code == 401


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium")
async def test_the_pages_render_in_chromium(stack: Stack, tmp_path: Path) -> None:
    await load(stack.tidings.store.engine, 0.0003)
    expected = await stack.tidings.store.analytics_metrics(PERIOD, MetricsFilter())
    admin = await stack.tidings.create_api_key("console", [Scope.ADMIN])
    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(tidings=stack.tidings), port=port, log_level="warning", lifespan="off"
        )
    )
    serving = asyncio.create_task(server.serve())
    try:
        while not server.started:
            await asyncio.sleep(0.05)
        async with async_playwright() as p:
            browser = await p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
            page = await browser.new_page(viewport={"width": 1200, "height": 900})
            await page.goto(f"http://127.0.0.1:{port}/console?{QUERY}&key={admin.key}")
            assert "key=" not in page.url  # moved into the cookie
            for figure in ("notifications", "sent", "delivered", "opened", "clicked", "converted"):
                shown = await page.inner_text(f'[data-figure="{figure}"]')
                assert shown == str(getattr(expected.counts, figure)), figure
            bars = page.locator("svg.funnel").first.locator("rect")
            assert await bars.count() == 5
            assert await bars.nth(2).get_attribute("data-value") == str(expected.counts.opened)
            sent_line = page.locator('polyline[data-series="sent"]')
            assert await sent_line.get_attribute("data-points") == str(len(expected.series))
            assert await page.locator("#templates tr[data-template]").count() == 20
            assert await page.locator("#channels tr[data-channel]").count() == 3
            shot = tmp_path / "console.png"
            await page.screenshot(path=str(shot), full_page=True)
            assert shot.stat().st_size > 20_000
            await page.locator("#latest a").first.click()
            await page.wait_for_selector("#timeline")
            notification_id = page.url.rsplit("/", 1)[1]
            n = await stack.tidings.store.get_notification(notification_id)
            assert n is not None
            rows = page.locator("#timeline tr[data-kind]")
            assert await rows.count() == len(n.channels) + len(n.engagement) + (
                n.send_at is not None
            )
            link = await page.get_attribute("#webui", "href")
            assert link is not None and link.endswith(
                f"/workflows/notification%2F{notification_id}"
            )
            await page.screenshot(path=str(tmp_path / "timeline.png"), full_page=True)
            await browser.close()
    finally:
        server.should_exit = True
        await serving
