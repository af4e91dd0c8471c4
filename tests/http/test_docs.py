"""/docs and /redoc work on a machine without internet (issue 7, defect 10): every URL their
pages load is the app's own, and each answers."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import httpx
import pytest
import pytest_asyncio

from starter.http import create_app

# Attributes and Swagger UI's config keys that make the browser fetch something.
_REFERENCE = re.compile(r"""(?:src|href|url|oauth2RedirectUrl)\s*[=:]\s*['"]([^'"]+)['"]""")
_TYPES = {".js": "javascript", ".css": "text/css", ".png": "image/png", ".json": "json"}


@pytest_asyncio.fixture(loop_scope="session")
async def docs_client() -> AsyncIterator[httpx.AsyncClient]:
    # The pages need no backend: no lifespan, no Tidings.
    transport = httpx.ASGITransport(app=create_app())
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        yield client


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
async def test_docs_pages_load_only_same_origin_assets(
    docs_client: httpx.AsyncClient, page: str
) -> None:
    r = await docs_client.get(page)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    urls = _REFERENCE.findall(r.text)
    assert any(u.endswith(".js") for u in urls), r.text
    for url in urls:
        assert url.startswith("/") and not url.startswith("//"), f"{page} loads {url}"
        asset = await docs_client.get(url)
        assert asset.status_code == 200, url
        expected = next((t for ext, t in _TYPES.items() if url.endswith(ext)), "text/html")
        assert expected in asset.headers["content-type"], (url, asset.headers["content-type"])
        assert len(asset.content) > 0
    assert "cdn" not in r.text.lower() and "googleapis" not in r.text
