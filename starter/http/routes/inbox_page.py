"""GET /inbox: a small page that shows one user's inbox live (plain HTML and JavaScript with
EventSource, no build step). Open it as `/inbox?user=<id>&token=<inbox token>`: the page holds
no data of its own; its script calls the /v1 inbox routes with the token."""

from __future__ import annotations

from functools import cache
from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

router = APIRouter()

PAGE = Path(__file__).parent.parent / "static" / "inbox.html"
# The token is in the page's URL: send it nowhere else (no referrer), and let the page talk to
# this origin only.
HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline';"
        " connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


@cache
def _page() -> str:
    return PAGE.read_text(encoding="utf-8")


@router.get("/inbox", response_class=HTMLResponse, summary="A live view of one user's inbox")
async def inbox_page() -> HTMLResponse:
    return HTMLResponse(_page(), headers=HEADERS)
