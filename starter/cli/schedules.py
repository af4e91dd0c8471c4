"""`tidings schedule create|list|show|pause|resume|trigger|delete`: recurring sends."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from starter.cli._runtime import connect, out, parse_data, run
from starter.client_schedules import ScheduleView
from tidings.errors import InvalidRequest
from tidings.settings import Settings

schedule_app = typer.Typer(
    help="Recurring sends: a notification (or a digest flush) on a cron or calendar, in a"
    " time zone.",
    no_args_is_help=True,
)


def schedule_view(s: ScheduleView) -> Table:
    table = Table(title=f"schedule {s.schedule_id}", title_justify="left", show_header=False)
    rows = [
        ("action", s.action),
        ("when", "; ".join(s.cron) or f"{len(s.calendars)} calendars"),
        ("time zone", s.time_zone),
        ("paused", "yes" if s.paused else "no"),
        ("note", s.note or "-"),
        ("runs so far", str(s.runs)),
        ("next runs (UTC)", ", ".join(t.isoformat() for t in s.next_runs[:3]) or "-"),
    ]
    for name, value in rows:
        table.add_row(Text(name), Text(value))
    return table


@schedule_app.command("create")
def create(
    schedule_id: Annotated[str, typer.Argument(help="The schedule's id.")],
    cron: Annotated[
        list[str], typer.Option(help="A 5-field cron expression, e.g. '0 9 * * mon-fri'.")
    ],
    user_id: Annotated[
        str | None, typer.Option("--user", help="The user to notify (not with --audience).")
    ] = None,
    template_id: Annotated[
        str | None, typer.Option("--template", help="Send this template (or --digest).")
    ] = None,
    audience: Annotated[
        str | None,
        typer.Option(
            help="Broadcast --template to 'all', 'segment:<name>' or comma-separated user ids"
            " at each run, instead of notifying --user."
        ),
    ] = None,
    digest: Annotated[
        str | None, typer.Option(help="Flush this digest key for the user instead.")
    ] = None,
    time_zone: Annotated[str, typer.Option("--tz", help="IANA time zone of the cron.")] = "UTC",
    data: Annotated[
        list[str] | None, typer.Option(help="Template data as key=value (repeatable).")
    ] = None,
    paused: Annotated[bool, typer.Option(help="Create it paused.")] = False,
) -> None:
    """Create a recurring send; each run is one ordinary notification per scheduled time."""

    async def main(settings: Settings) -> None:
        if (template_id is None) == (digest is None):
            raise InvalidRequest("template", "give --template or --digest (one of them)")
        if (audience is None) == (user_id is None):
            raise InvalidRequest("user", "give --user, or --audience for a broadcast (one of them)")
        if audience is not None and digest is not None:
            raise InvalidRequest("audience", "a broadcast sends --template, not a --digest")
        spec: dict[str, Any] = {
            "schedule_id": schedule_id,
            "cron": cron,
            "time_zone": time_zone,
            "paused": paused,
        }
        if audience is not None:
            spec["broadcast"] = {
                "template_id": template_id,
                "audience": audience
                if audience == "all" or audience.startswith("segment:")
                else [u.strip() for u in audience.split(",") if u.strip()],
                "data": parse_data(data or []),
            }
        elif digest is not None:
            spec["digest"] = {"user_id": user_id, "key": digest}
        else:
            spec["notification"] = {
                "user_id": user_id,
                "template_id": template_id,
                "data": parse_data(data or []),
            }
        async with connect(settings) as tidings:
            made = await tidings.create_schedule(spec)
        out().print(schedule_view(made))

    run(main)


@schedule_app.command("list")
def list_() -> None:
    """List recurring sends."""

    async def main(settings: Settings) -> None:
        async with connect(settings) as tidings:
            items = await tidings.list_schedules()
        table = Table(title=f"{len(items)} schedules", title_justify="left")
        for column in ("id", "action", "when", "time zone", "paused", "next run (UTC)"):
            table.add_column(column)
        for s in items:
            cells = (
                s.schedule_id,
                s.action,
                "; ".join(s.cron) or f"{len(s.calendars)} calendars",
                s.time_zone,
                "yes" if s.paused else "",
                s.next_runs[0].isoformat() if s.next_runs else "-",
            )
            table.add_row(*(Text(c) for c in cells))
        out().print(table)

    run(main)


def _one(name: str, doc: str) -> None:
    def command(
        schedule_id: Annotated[str, typer.Argument(help="The schedule's id.")],
    ) -> None:
        async def main(settings: Settings) -> None:
            async with connect(settings) as tidings:
                if name == "delete":
                    await tidings.delete_schedule(schedule_id)
                    out().print(f"schedule {schedule_id} deleted", markup=False)
                    return
                action = {
                    "show": tidings.describe_schedule,
                    "pause": tidings.pause_schedule,
                    "resume": tidings.resume_schedule,
                    "trigger": tidings.trigger_schedule,
                }[name]
                out().print(schedule_view(await action(schedule_id)))

        run(main)

    command.__doc__ = doc
    schedule_app.command(name)(command)


_one("show", "A schedule: its action, time zone and next run times.")
_one("pause", "Pause a schedule (no runs until resumed).")
_one("resume", "Resume a paused schedule.")
_one("trigger", "Run a schedule once, now.")
_one("delete", "Delete a schedule; notifications already sent stay.")
