"""The /inbox page in headless Chromium (Debian's /usr/bin/chromium, driven by playwright):
opened first, it shows an in-app notification delivered afterwards through the real pipeline,
and marking it read brings the unread count down, live."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlencode

import pytest
import pytest_asyncio
from playwright.async_api import Browser, async_playwright, expect
from temporalio.testing import WorkflowEnvironment

from starter.http import create_app
from tests.http.helpers import WELCOME
from tests.http.serving import serve
from tests.support import running_stack

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest_asyncio.fixture(loop_scope="session")
async def browser() -> AsyncIterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install -y chromium (.ci/run does)")
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            yield launched
        finally:
            await launched.close()


async def test_the_page_shows_a_delivery_and_a_read_live(
    dev_env: WorkflowEnvironment, tmp_path: Path, browser: Browser
) -> None:
    async with running_stack(dev_env.client, tmp_path) as stack:
        await stack.seed()
        await stack.add_user("in-browser")
        token = (await stack.tidings.inbox_token("in-browser")).token
        async with serve(create_app(tidings=stack.tidings)) as url:
            page = await browser.new_page()
            # Script errors and CSP refusals of the page's own script fail the test.
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            try:
                await page.goto(f"{url}/inbox?{urlencode({'user': 'in-browser', 'token': token})}")
                await expect(page.locator("#status")).to_have_text("live")
                assert await page.text_content("#unread") == "0"
                assert await page.locator("#items li").count() == 0

                ref = await stack.tidings.notify(
                    user_id="in-browser", template_id="welcome", data=WELCOME, channels=["in_app"]
                )
                item = page.locator("#items li.unread")
                await expect(item).to_have_count(1, timeout=30_000)
                assert "Welcome to MyApp, John!" in (
                    await item.locator(".title").text_content() or ""
                )
                await expect(page.locator("#unread")).to_have_text("1")
                assert (await stack.tidings.status(ref.notification_id)).status.value == "sent"

                await item.locator("button.mark-read").click()
                await expect(page.locator("#unread")).to_have_text("0")
                await page.locator("#items li.read").wait_for()
                assert await page.locator("button.mark-read").count() == 0
                assert (await stack.store.inbox_counts("in-browser")).unread == 0
                assert await page.is_hidden("#error")
                assert errors == []
            finally:
                await page.close()
