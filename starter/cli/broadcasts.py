"""`tidings broadcast send|status|pause|resume|cancel|list`: broadcasts from the command line,
with a progress bar that follows the broadcast's counters (`--follow`)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from starter.cli._runtime import connect, out, parse_data, progress, run
from starter.cli.directory import load_definition
from starter.client import Tidings
from tidings.errors import InvalidRequest
from tidings.settings import Settings
from tidings.store.broadcasts import BroadcastRecord
from workflows.broadcast_io import BroadcastProgress

broadcast_app = typer.Typer(
    help="Send a template to a list of users, every user or a segment; watch, pause, resume"
    " and cancel it.",
    no_args_is_help=True,
)
_FINAL = ("completed", "cancelled")


def progress_view(p: BroadcastProgress) -> RenderableType:
    head = Text()
    head.append(f"broadcast {p.broadcast_id}: {p.status}", style="bold")
    head.append(f"  ({p.counters.recipients} recipients, {p.pages} pages, runs {p.runs})")
    if p.detail:
        head.append(f"\n{p.detail}")
    if p.enrolled:
        arms = ", ".join(f"{name} {n}" for name, n in sorted(p.enrolled.items()))
        head.append(f"\ntest share enrolled: {arms}")
    if p.reason:
        head.append(f"\n{p.reason}")
    table = Table(title="per channel", title_justify="left")
    for column in ("channel", "targeted", "sent", "suppressed", "deferred", "failed"):
        table.add_column(column, justify="left" if column == "channel" else "right")
    for channel, c in sorted(p.counters.channels.items()):
        table.add_row(
            *(
                Text(cell)
                for cell in (
                    channel.value,
                    str(c.targeted),
                    str(c.sent),
                    str(c.suppressed),
                    str(c.deferred),
                    str(c.failed),
                )
            )
        )
    return Group(head, table)


def list_view(items: list[BroadcastRecord]) -> RenderableType:
    table = Table(title=f"{len(items)} broadcasts", title_justify="left")
    for column in ("id", "status", "template", "recipients", "sent", "failed", "created"):
        table.add_column(column)
    for b in items:
        total = b.counters.total()
        cells = (
            b.id,
            b.status,
            f"{b.template_id} v{b.template_version}",
            str(b.counters.recipients),
            str(total.sent),
            str(total.failed),
            b.created_at.strftime("%Y-%m-%d %H:%M"),
        )
        table.add_row(*(Text(cell) for cell in cells))
    return table


async def follow(tidings: Tidings, broadcast_id: str, *, every: float = 0.5) -> BroadcastProgress:
    """Draw a bar of recipients settled (sent, suppressed, deferred or failed) until the
    broadcast ends; the total grows as pages are read."""
    with progress() as bar:
        task = bar.add_task(f"broadcast {broadcast_id}", total=None)
        while True:
            p = await tidings.broadcast_progress(broadcast_id)
            total = p.counters.total()
            settled = total.sent + total.suppressed + total.deferred + total.failed
            bar.update(
                task,
                completed=settled,
                total=None if p.status not in _FINAL and not total.targeted else total.targeted,
                description=f"broadcast {broadcast_id} ({p.status})",
            )
            if p.status in _FINAL:
                return p
            await asyncio.sleep(every)


@broadcast_app.command("send")
def send(
    template_id: Annotated[str, typer.Argument(help="The template.")],
    users: Annotated[
        list[str] | None, typer.Argument(help="User ids (or use --all / --segment).")
    ] = None,
    all_users: Annotated[bool, typer.Option("--all", help="Send to every user.")] = False,
    segment: Annotated[str | None, typer.Option(help="Send to a saved segment.")] = None,
    data: Annotated[
        list[str] | None, typer.Option(help="Template data as key=value (repeatable).")
    ] = None,
    channel: Annotated[
        list[str] | None, typer.Option(help="Only these channels (repeatable).")
    ] = None,
    broadcast_id: Annotated[str | None, typer.Option("--id", help="The broadcast's id.")] = None,
    page_size: Annotated[int, typer.Option(help="Recipients per page.")] = 500,
    experiment: Annotated[
        Path | None,
        typer.Option(
            help="A YAML, TOML or JSON file with an A/B test to run on a share of the audience"
            " first (share, variants, metric, ...; README, Broadcasts).",
        ),
    ] = None,
    experiment_share: Annotated[
        float | None,
        typer.Option(help="The share of the audience tested (sets the file's share)."),
    ] = None,
    follow_: Annotated[
        bool, typer.Option("--follow", help="Show a progress bar until it ends.")
    ] = False,
) -> None:
    """Start a broadcast (checked first: audience, template, channels, data, experiment)."""

    async def main(settings: Settings) -> None:
        chosen = sum((bool(users), all_users, segment is not None))
        if chosen != 1:
            raise InvalidRequest("audience", "give user ids, --all or --segment (exactly one)")
        audience = "all" if all_users else f"segment:{segment}" if segment else list(users or [])
        test: dict[str, Any] | None = None
        if experiment is not None:
            test = dict(load_definition(experiment))
            if experiment_share is not None:
                test["share"] = experiment_share
        elif experiment_share is not None:
            raise InvalidRequest("experiment", "--experiment-share needs --experiment FILE")
        async with connect(settings) as tidings:
            ref = await tidings.broadcast(
                template_id,
                audience,
                parse_data(data or []),
                channel,  # the client checks the names
                broadcast_id=broadcast_id,
                page_size=page_size,
                experiment=test,
            )
            out().print(f"broadcast {ref.broadcast_id} running ({ref.workflow_id})", markup=False)
            if follow_:
                out().print(progress_view(await follow(tidings, ref.broadcast_id)))

    run(main)


@broadcast_app.command("status")
def status(
    broadcast_id: Annotated[str, typer.Argument(help="The broadcast.")],
    follow_: Annotated[
        bool, typer.Option("--follow", help="Show a progress bar until it ends.")
    ] = False,
) -> None:
    """Targeted, sent, suppressed, deferred and failed per channel."""

    async def main(settings: Settings) -> None:
        async with connect(settings) as tidings:
            p = (
                await follow(tidings, broadcast_id)
                if follow_
                else await tidings.broadcast_progress(broadcast_id)
            )
        out().print(progress_view(p))

    run(main)


@broadcast_app.command("pause")
def pause(broadcast_id: Annotated[str, typer.Argument(help="The broadcast.")]) -> None:
    """Pause after the page in progress."""

    async def main(settings: Settings) -> None:
        async with connect(settings) as tidings:
            out().print(progress_view(await tidings.pause_broadcast(broadcast_id)))

    run(main)


@broadcast_app.command("resume")
def resume(broadcast_id: Annotated[str, typer.Argument(help="The broadcast.")]) -> None:
    """Resume a paused broadcast."""

    async def main(settings: Settings) -> None:
        async with connect(settings) as tidings:
            out().print(progress_view(await tidings.resume_broadcast(broadcast_id)))

    run(main)


@broadcast_app.command("cancel")
def cancel(
    broadcast_id: Annotated[str, typer.Argument(help="The broadcast.")],
    reason: Annotated[str, typer.Option(help="Why, recorded with it.")] = "cancelled by request",
) -> None:
    """Cancel after the page in progress; recipients not reached yet are not sent to."""

    async def main(settings: Settings) -> None:
        async with connect(settings) as tidings:
            out().print(progress_view(await tidings.cancel_broadcast(broadcast_id, reason)))

    run(main)


@broadcast_app.command("list")
def list_(limit: Annotated[int, typer.Option(help="At most this many.")] = 50) -> None:
    """List broadcasts, newest first, with their recorded counters."""

    async def main(settings: Settings) -> None:
        async with connect(settings) as tidings:
            found = await tidings.list_broadcasts(limit=limit)
        out().print(list_view(found))

    run(main)
