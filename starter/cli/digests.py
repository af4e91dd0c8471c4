"""`tidings digest register|list|event|flush|status`: digests from the command line."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from starter.cli._runtime import connect, out, parse_data, run
from tidings.digests import DAY_NAMES
from tidings.errors import InvalidRequest
from tidings.settings import Settings
from workflows.digest_io import DigestStatus

digest_app = typer.Typer(
    help="Digests: many events for one user and key, sent as one notification per batch.",
    no_args_is_help=True,
)


def _days(value: str) -> list[int]:
    """`mon-fri`, `mon,wed,fri` or `0,2,4` (Monday is 0)."""
    days: list[int] = []
    for part in value.lower().split(","):
        ends = [p.strip() for p in part.split("-")]
        if not all(ends) or len(ends) > 2:
            raise InvalidRequest("schedule.days", f"cannot read {value!r}; e.g. mon-fri")
        try:
            numbers = [int(e) if e.isdigit() else DAY_NAMES.index(e[:3]) for e in ends]
        except ValueError as e:
            raise InvalidRequest("schedule.days", f"unknown day in {value!r}") from e
        days.extend(range(numbers[0], numbers[-1] + 1))
    return days


def status_view(s: DigestStatus) -> Table:
    table = Table(title=f"digest {s.key} for {s.user_id}", title_justify="left", show_header=False)
    rows = [
        ("running", "yes" if s.running else "no"),
        ("waiting events", str(s.pending)),
        ("open batch closes", s.closes_at.isoformat() if s.closes_at else "-"),
        ("batches sent", str(s.batches_sent)),
        ("events sent", str(s.events_sent)),
        ("repeated events", str(s.repeats)),
        ("last notification", s.last_notification_id or "-"),
        ("runs", str(s.runs)),
    ]
    for name, value in rows:
        table.add_row(Text(name), Text(value))
    return table


@digest_app.command("register")
def register(
    key: Annotated[str, typer.Argument(help="The digest key, e.g. comments.")],
    template_id: Annotated[str, typer.Option("--template", help="The template it sends.")],
    window: Annotated[int, typer.Option(help="Seconds a batch collects events.")] = 3600,
    max_events: Annotated[int, typer.Option(help="This many events close a batch early.")] = 100,
    first: Annotated[int, typer.Option(help="Events shown from the start.")] = 5,
    last: Annotated[int, typer.Option(help="Events shown from the end.")] = 0,
    days: Annotated[
        str | None, typer.Option(help="Scheduled digest: days, e.g. mon-fri (needs --at).")
    ] = None,
    at: Annotated[
        str | None, typer.Option(help="Scheduled digest: local time, e.g. 09:00.")
    ] = None,
    timezone: Annotated[
        str | None, typer.Option(help="Scheduled digest: IANA zone (default: the user's).")
    ] = None,
) -> None:
    """Register (or replace) a digest key: a window, or a calendar in the user's timezone."""

    async def main(settings: Settings) -> None:
        fields: dict[str, Any] = {
            "key": key,
            "template_id": template_id,
            "window_seconds": window,
            "max_events": max_events,
            "first_n": first,
            "last_n": last,
        }
        if days is not None or at is not None or timezone is not None:
            schedule: dict[str, Any] = {"at": at or "09:00", "timezone": timezone}
            if days is not None:
                schedule["days"] = _days(days)
            fields["schedule"] = schedule
        async with connect(settings, temporal_needed=False) as tidings:
            d = await tidings.register_digest(fields)
        when = (
            f"at {d.schedule.at} on {','.join(DAY_NAMES[i] for i in d.schedule.days)}"
            f" ({d.schedule.timezone or 'the user timezone'})"
            if d.schedule
            else f"every {d.window_seconds} s"
        )
        out().print(
            f"digest {d.key}: {d.template_id}, {when}, at most {d.max_events} events",
            markup=False,
        )

    run(main)


@digest_app.command("list")
def list_() -> None:
    """List the registered digest keys."""

    async def main(settings: Settings) -> None:
        async with connect(settings, temporal_needed=False) as tidings:
            items = await tidings.list_digests()
        table = Table(title=f"{len(items)} digests", title_justify="left")
        for column in ("key", "template", "window s", "max events", "schedule"):
            table.add_column(column)
        for d in items:
            schedule = (
                f"{d.schedule.at} {','.join(DAY_NAMES[i] for i in d.schedule.days)}"
                if d.schedule
                else ""
            )
            cells = (d.key, d.template_id, str(d.window_seconds), str(d.max_events), schedule)
            table.add_row(*(Text(c) for c in cells))
        out().print(table)

    run(main)


@digest_app.command("event")
def event(
    key: Annotated[str, typer.Argument(help="The digest key.")],
    user_id: Annotated[str, typer.Argument(help="The user.")],
    event_id: Annotated[str, typer.Argument(help="The event's id (a repeat counts once).")],
    data: Annotated[
        list[str] | None, typer.Option(help="Event data as key=value (repeatable).")
    ] = None,
) -> None:
    """Add an event to a user's digest."""

    async def main(settings: Settings) -> None:
        async with connect(settings) as tidings:
            ref = await tidings.digest_event(user_id, key, event_id, parse_data(data or []))
        note = " (a repeat: counted once)" if ref.duplicate else ""
        out().print(f"event {ref.event_id} -> {ref.workflow_id}{note}", markup=False)

    run(main)


@digest_app.command("flush")
def flush(
    key: Annotated[str, typer.Argument(help="The digest key.")],
    user_id: Annotated[str, typer.Argument(help="The user.")],
) -> None:
    """Close the user's current batch now and send it."""

    async def main(settings: Settings) -> None:
        async with connect(settings) as tidings:
            found = await tidings.flush_digest(user_id, key)
        out().print(status_view(found))

    run(main)


@digest_app.command("status")
def status(
    key: Annotated[str, typer.Argument(help="The digest key.")],
    user_id: Annotated[str, typer.Argument(help="The user.")],
) -> None:
    """A user's digest: waiting events, batches sent, when the open batch closes."""

    async def main(settings: Settings) -> None:
        async with connect(settings) as tidings:
            found = await tidings.digest_status(user_id, key)
        out().print(status_view(found))

    run(main)
