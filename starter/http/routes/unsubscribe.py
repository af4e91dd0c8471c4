"""/u/{token}: one-click unsubscribe (RFC 8058) from the links emails carry.

POST with the form body `List-Unsubscribe=One-Click` (what mail providers send, and what the
confirmation page's button sends) switches the token's category off for its user; it is
idempotent and needs no API key, the signed token being the credential. GET only shows a page
with that button: mail scanners fetch links in messages, and a GET that unsubscribed would
unsubscribe every user whose mail is scanned. A token that is not ours is a 400, an unknown
user or a category no template has a 404; nothing changes then.
"""

from __future__ import annotations

import html
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse
from starlette.exceptions import HTTPException

from starter.http.deps import Api
from starter.http.errors import error_response
from starter.http.schemas import ErrorBody
from tidings.errors import InvalidRequest

router = APIRouter()

ONE_CLICK = "One-Click"

_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "A small HTML page", "content": {"text/html": {}}},
    400: {"model": ErrorBody, "description": "Not an unsubscribe token, or a wrong body"},
    404: {"model": ErrorBody, "description": "Unknown user, or a category no template has"},
    422: {"model": ErrorBody, "description": "Invalid request"},
}

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer"><title>{title}</title></head>
<body style="font-family: sans-serif; max-width: 32rem; margin: 3rem auto">
<h1>{title}</h1><p>{text}</p>{form}</body></html>
"""


def _page(title: str, text: str, form: str = "") -> HTMLResponse:
    body = _PAGE.format(title=html.escape(title), text=text, form=form)
    return HTMLResponse(body, headers={"Cache-Control": "no-store"})


@router.get(
    "/u/{token}",
    summary="The unsubscribe confirmation page (changes nothing)",
    response_class=Response,
    responses=_RESPONSES,
)
async def confirm(token: str, tidings: Api) -> Response:
    try:
        who = tidings.read_unsubscribe_token(token)
    except InvalidRequest as e:
        return error_response(400, "invalid_request", e.reason, "token")
    await tidings.check_unsubscription(who)  # NotFound: 404 before offering the button
    form = (
        '<form method="post"><input type="hidden" name="List-Unsubscribe"'
        f' value="{ONE_CLICK}"><button type="submit">Unsubscribe</button></form>'
    )
    category = html.escape(who.category)
    text = f"Stop receiving <strong>{category}</strong> notifications?"
    return _page("Unsubscribe", text, form)


@router.post(
    "/u/{token}",
    summary="One-click unsubscribe (RFC 8058): switch the token's category off",
    response_class=Response,
    responses=_RESPONSES,
)
async def one_click(token: str, request: Request, tidings: Api) -> Response:
    try:
        who = tidings.read_unsubscribe_token(token)
    except InvalidRequest as e:
        return error_response(400, "invalid_request", e.reason, "token")
    # RFC 8058: multipart/form-data (SHOULD) or application/x-www-form-urlencoded (MAY).
    reason = f"the form body must be List-Unsubscribe={ONE_CLICK} (RFC 8058)"
    try:
        async with request.form(max_files=0, max_fields=8) as form:
            value = form.get("List-Unsubscribe")
    except (HTTPException, ValueError):  # malformed multipart, or too many parts
        return error_response(400, "invalid_request", reason, "List-Unsubscribe")
    if value != ONE_CLICK:
        return error_response(400, "invalid_request", reason, "List-Unsubscribe")
    await tidings.unsubscribe(who.user_id, who.category)  # NotFound: 404, nothing changed
    category = html.escape(who.category)
    return _page(
        "Unsubscribed", f"You will no longer receive <strong>{category}</strong> notifications."
    )
