"""`tidings inbox|inbox-mark|inbox-token`: a user's in-app inbox, its states, and the token a
browser uses for it (e.g. to open the API's /inbox page)."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated
from urllib.parse import urlencode

import typer
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from starter.cli._runtime import connect, out, run
from starter.cli._views import when
from tidings.errors import InvalidRequest
from tidings.inbox import MAX_PAGE, InboxPage, InboxState
from tidings.models import InboxItem
from tidings.settings import Settings


def _state(item: InboxItem) -> Text:
    if item.archived_at:
        return Text("archived", style="dim")
    if item.read_at:
        return Text("")
    if item.seen_at:
        return Text("seen", style="cyan")
    return Text("new", style="bold cyan")


def _page_view(user_id: str, page: InboxPage) -> RenderableType:
    table = Table(title=f"inbox of {user_id} ({len(page.items)} shown)", title_justify="left")
    for column in ("item", "", "title", "body", "category", "received", "notification"):
        table.add_column(column, overflow="fold")
    for item in page.items:
        # User data is shown as typed, never parsed as rich markup.
        cells = (item.title, item.body, item.category or "-", when(item.created_at))
        table.add_row(
            str(item.id), _state(item), *(Text(c) for c in cells), Text(item.notification_id)
        )
    lines: list[RenderableType] = [
        table,
        Text(f"unread {page.counts.unread}, unseen {page.counts.unseen}"),
    ]
    if page.next_cursor:
        lines.append(Text(f"more: --cursor {page.next_cursor}"))
    return Group(*lines)


def inbox(
    user_id: Annotated[str, typer.Argument(help="Whose in-app inbox.")],
    unread: Annotated[bool, typer.Option(help="Only unread items.")] = False,
    archived: Annotated[bool, typer.Option("--archived", help="Only archived items.")] = False,
    all_items: Annotated[
        bool, typer.Option("--all", help="Archived and not archived items alike.")
    ] = False,
    category: Annotated[str | None, typer.Option(help="Only items of this category.")] = None,
    cursor: Annotated[
        str | None, typer.Option(help="Continue after the page that printed it.")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=MAX_PAGE, help="How many, newest first.")] = 50,
    read: Annotated[
        list[int] | None, typer.Option(help="Mark this item read first (repeatable).")
    ] = None,
    read_all: Annotated[bool, typer.Option(help="Mark every item read first.")] = False,
) -> None:
    """Show a user's in-app inbox, newest first, with the unread and unseen counts; archived
    items only with --archived or --all. --read ITEM / --read-all mark items read first."""

    async def main(settings: Settings) -> None:
        if read and read_all:
            raise InvalidRequest("--read", "give --read ITEM or --read-all, not both")
        if archived and all_items:
            raise InvalidRequest("--archived", "give --archived or --all, not both")
        async with connect(settings) as tidings:
            for item_id in read or []:
                await tidings.mark_read(user_id, item_id)
            if read_all:
                marked = await tidings.mark_all_read(user_id)
                out().print(f"{marked} item(s) marked read", markup=False)
            page = await tidings.inbox_page(
                user_id,
                unread=True if unread else None,
                archived=None if all_items else archived,
                category=category,
                cursor=cursor,
                limit=limit,
            )
        out().print(_page_view(user_id, page))

    run(main)


def inbox_mark(
    user_id: Annotated[str, typer.Argument(help="Whose in-app inbox.")],
    state: Annotated[InboxState, typer.Argument(help="The state to set.")],
    items: Annotated[
        list[int] | None, typer.Argument(help="Item ids; none: every item.", show_default=False)
    ] = None,
) -> None:
    """Mark inbox items seen, read, archived or unarchived (all of them without ids)."""

    async def main(settings: Settings) -> None:
        async with connect(settings) as tidings:
            change = await tidings.mark_inbox(user_id, state, items or None)
        counts = change.counts
        out().print(
            f"{len(change.ids)} item(s) marked {state.value};"
            f" unread {counts.unread}, unseen {counts.unseen}",
            markup=False,
        )

    run(main)


def inbox_token(
    user_id: Annotated[str, typer.Argument(help="Whose in-app inbox.")],
    minutes: Annotated[
        int, typer.Option(min=1, max=7 * 24 * 60, help="How long the token lasts.")
    ] = 60,
) -> None:
    """Print an inbox token for the user, and the API's /inbox page URL that uses it."""

    async def main(settings: Settings) -> None:
        async with connect(settings, temporal_needed=False) as tidings:
            token = await tidings.inbox_token(user_id, ttl=timedelta(minutes=minutes))
        base = (settings.public_base_url or "http://127.0.0.1:8000").rstrip("/")
        out().print(token.token, markup=False, soft_wrap=True)
        page = f"{base}/inbox?{urlencode({'user': user_id, 'token': token.token})}"
        out().print(page, markup=False, soft_wrap=True)

    run(main)
