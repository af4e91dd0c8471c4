"""/console: an admin key opens it (and moves from the URL into a cookie), other keys do not;
in headless Chromium the pages render with the store's figures, the charts are there, and a
notification's timeline links to its run in the Temporal Web UI."""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
import uvicorn
from fastapi.routing import APIRoute
from playwright.async_api import async_playwright
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment

from bench.analytics_data import START, load
from starter.http import console, create_app
from tests.support import Stack
from tidings.analytics import MetricsFilter, Period
from tidings.api_keys import Scope
from workflows.queues import experiment_workflow_id, workflow_id

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


# Every page of the console, read from its router, so a page added without the gate fails here.
PAGES = sorted(
    re.sub(r"\{\w+\}", "nope", route.path)
    for route in console.router.routes
    if isinstance(route, APIRoute) and "GET" in (route.methods or ())
)


def test_the_console_pages_are_all_listed() -> None:
    assert PAGES == [
        "/console",
        "/console/experiments",
        "/console/experiments/nope",
        "/console/notifications/nope",
    ]


@pytest.mark.parametrize("page", PAGES)
async def test_every_console_page_refuses_all_but_an_admin_key(
    stack: Stack, anonymous: httpx.AsyncClient, page: str
) -> None:
    r = await anonymous.get(page)
    assert r.status_code == 401 and 'name="key"' in r.text
    reader = await stack.tidings.create_api_key("reader", [Scope.READ])
    r = await anonymous.get(page, params={"key": reader.key})
    assert r.status_code == 403 and "tidings_console" not in r.headers.get("set-cookie", "")
    admin = await stack.tidings.create_api_key("admin", [Scope.ADMIN])
    r = await anonymous.get(page, params={"key": admin.key})
    assert r.status_code == 303 and r.headers["location"] == page
    r = await anonymous.get(page)  # with the cookie: the page, or its "not found"
    assert r.status_code in (200, 404) and "does not open" not in r.text, r.text


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


EXPERIMENT: dict[str, Any] = {
    "id": "console_subject",
    "template_id": "welcome",
    "data": {"app_name": "MyApp", "user_name": "friend"},
    "variants": [
        {"name": "plain", "control": True, "channels": ["in_app"]},
        {"name": "warm", "channels": ["in_app"]},
    ],
    "metric": "clicked",
    "attribution_window": "12h",
    "check_every": "1h",
    "max_duration": "3d",
}


@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium")
async def test_the_experiment_pages_show_each_arm_in_chromium(
    stack: Stack, time_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    tidings = stack.tidings
    await tidings.create_experiment(EXPERIMENT)
    try:
        for user in ("user_001", "user_002"):
            await tidings.enroll("console_subject", user)
        await time_env.sleep(timedelta(hours=2))  # past a check: the comparisons exist
        await tidings.stop_experiment("console_subject", "enough for the page")
        results = await tidings.experiment_results("console_subject")
        admin = await tidings.create_api_key("console-exp", [Scope.ADMIN])
        async with _serving(stack) as port, async_playwright() as p:
            browser = await p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
            page = await browser.new_page(viewport={"width": 1200, "height": 900})
            await page.goto(f"http://127.0.0.1:{port}/console/experiments?key={admin.key}")
            row = page.locator('#experiments tr[data-experiment="console_subject"]')
            assert await row.count() == 1
            assert "stopped" in await row.inner_text()
            await row.locator("a").click()
            await page.wait_for_selector("#variants")
            assert await page.inner_text("#status") == results.status
            arms = page.locator("#variants tr[data-arm]")
            names = [await arms.nth(i).get_attribute("data-arm") for i in range(await arms.count())]
            assert names[:2] == ["plain", "warm"]
            assert set(names) == {"plain", "warm"} | set(results.enrolled)
            for name in names:
                assert name is not None
                arm = page.locator(f'#variants tr[data-arm="{name}"]')
                enrolled = await arm.locator('[data-figure="enrolled"]').inner_text()
                assert enrolled == str(results.enrolled.get(name, 0)), name
                counts = results.counts.get(name)
                delivered = await arm.locator('[data-figure="delivered"]').inner_text()
                assert delivered == str(counts.delivered if counts else 0), name
            assert sum(results.enrolled.values()) == 2
            [warm] = [c for c in results.comparisons if c.variant == "warm"]
            shown = await page.inner_text('#variants tr[data-arm="warm"] [data-figure="interval"]')
            assert await page.locator("svg.intervals circle").count() == 1  # one variant
            if warm.difference_low is None or warm.difference_high is None:
                assert shown == "-"
                assert await page.locator("svg.intervals line[data-variant]").count() == 0
            else:
                assert shown == f"[{warm.difference_low:+.1%}, {warm.difference_high:+.1%}]"
                bar = page.locator('svg.intervals line[data-variant="warm"]')
                assert await bar.get_attribute("data-low") == f"{warm.difference_low:.4f}"
            await page.screenshot(path=str(tmp_path / "experiment.png"), full_page=True)
            r = await page.goto(f"http://127.0.0.1:{port}/console/experiments/nope")
            assert r is not None and r.status == 404
            await browser.close()
    finally:
        for wf in [experiment_workflow_id("console_subject")] + [
            workflow_id(f"exp-console_subject-{u}") for u in ("user_001", "user_002")
        ]:
            with contextlib.suppress(RPCError):
                await tidings.temporal.get_workflow_handle(wf).terminate("test finished")


@asynccontextmanager
async def _serving(stack: Stack) -> AsyncIterator[int]:
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
        yield port
    finally:
        server.should_exit = True
        await serving
