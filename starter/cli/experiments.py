"""`tidings experiment create|enroll|results|stop|list`: A/B tests from the command line."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from starter.cli._runtime import connect, out, parse_data, run
from starter.cli.directory import load_definition
from tidings.settings import Settings
from tidings.store.experiments import ExperimentRecord
from workflows.io import ExperimentResults

experiment_app = typer.Typer(
    help="Run A/B tests: create one from a file, enrol users, read and stop it.",
    no_args_is_help=True,
)


def _pct(value: float | None, signed: bool = False) -> str:
    if value is None:
        return "-"
    return f"{value:+.2%}" if signed else f"{value:.2%}"


def _interval(low: float | None, high: float | None) -> str:
    if low is None or high is None:
        return "-"
    return f"[{low:+.2%}, {high:+.2%}]"


def results_view(r: ExperimentResults) -> RenderableType:
    head = Text()
    head.append(f"experiment {r.experiment_id}: {r.status}", style="bold")
    head.append(f"  ({r.rule.value}, metric {r.metric.value}, alpha {r.alpha:g})")
    if r.ending is not None:
        head.append(f"\nended: {r.ending.value}")
        if r.winner:
            head.append(f", winner {r.winner}", style="green")
    if r.reason:
        head.append(f"\n{r.reason}")
    head.append(f"\nchecks {r.checks}, runs {r.runs}, duplicates {r.duplicates}")
    table = Table(title="variants", title_justify="left")
    for column in ("variant", "enrolled", "delivered", "reached", "rate", "vs control", "interval"):
        table.add_column(column, justify="left" if column == "variant" else "right")
    table.add_column("lift interval", justify="right")
    table.add_column("traffic" if r.rule.value == "bandit" else "split", justify="right")
    by_variant = {c.variant: c for c in r.comparisons}
    for name, weight in r.weights.items():
        counts = r.counts.get(name)
        c = by_variant.get(name)
        cells = (
            name,
            str(r.enrolled.get(name, 0)),
            str(counts.delivered if counts else 0),
            str(counts.reached if counts else 0),
            _pct(counts.rate if counts else None),
            "control" if c is None else _pct(c.difference, signed=True),
            "" if c is None else _interval(c.difference_low, c.difference_high),
            "" if c is None else _interval(c.lift_low, c.lift_high),
            f"{weight:.0%}",
        )
        table.add_row(*(Text(cell) for cell in cells))  # intervals are not rich markup
    if r.enrolled.get("holdout"):
        table.add_row(Text("holdout"), Text(str(r.enrolled["holdout"])), *(Text("-"),) * 3)
    return Group(head, table)


def list_view(items: list[ExperimentRecord]) -> RenderableType:
    table = Table(title=f"{len(items)} experiments", title_justify="left")
    for column in ("id", "status", "ending", "winner", "rule", "metric", "created"):
        table.add_column(column)
    for e in items:
        cells = (
            e.id,
            e.status,
            e.ending or "",
            e.winner or "",
            str(e.config.get("rule", "")),
            str(e.config.get("metric", "")),
            e.created_at.strftime("%Y-%m-%d %H:%M"),
        )
        table.add_row(*(Text(cell) for cell in cells))
    return table


@experiment_app.command("create")
def create(
    path: Annotated[Path, typer.Argument(help="A YAML, TOML or JSON file with the test.")],
) -> None:
    """Check a test (variants, split, metric, templates rendering with its data) and start it."""

    async def main(settings: Settings) -> None:
        config = load_definition(path)
        async with connect(settings) as tidings:
            ref = await tidings.create_experiment(config)
        out().print(f"experiment {ref.experiment_id} running ({ref.workflow_id})", markup=False)

    run(main)


@experiment_app.command("enroll")
def enroll(
    experiment_id: Annotated[str, typer.Argument(help="The test.")],
    user_ids: Annotated[list[str], typer.Argument(help="One or more users.")],
    data: Annotated[
        list[str] | None, typer.Option(help="Template data as key=value (repeatable).")
    ] = None,
) -> None:
    """Enrol users: each gets a variant (or the holdout) and its notification. A user enrolled
    before gets the first enrolment back and nothing is sent again."""

    async def main(settings: Settings) -> None:
        values = parse_data(data or [])
        table = Table(title=f"enrolled in {experiment_id}", title_justify="left")
        for column in ("user", "variant", "notification", ""):
            table.add_column(column)
        async with connect(settings) as tidings:
            for user_id in user_ids:
                e = await tidings.enroll(experiment_id, user_id, data=values)
                table.add_row(
                    Text(e.user_id),
                    Text(e.variant),
                    Text(e.notification_id or "-"),
                    Text("already enrolled" if e.duplicate else ""),
                )
        out().print(table)

    run(main)


@experiment_app.command("results")
def results(experiment_id: Annotated[str, typer.Argument(help="The test.")]) -> None:
    """Each variant's rate and its anytime-valid interval against the control, as the test's
    workflow last read them, and its decision."""

    async def main(settings: Settings) -> None:
        async with connect(settings) as tidings:
            found = await tidings.experiment_results(experiment_id)
        out().print(results_view(found))

    run(main)


@experiment_app.command("stop")
def stop(
    experiment_id: Annotated[str, typer.Argument(help="The test.")],
    reason: Annotated[str, typer.Option(help="Why, recorded with the ending.")] = "stopped by hand",
) -> None:
    """Stop a test by hand; its ending is recorded with the figures at that moment."""

    async def main(settings: Settings) -> None:
        async with connect(settings) as tidings:
            found = await tidings.stop_experiment(experiment_id, reason)
        out().print(results_view(found))

    run(main)


@experiment_app.command("list")
def list_() -> None:
    """List tests, newest first."""

    async def main(settings: Settings) -> None:
        async with connect(settings) as tidings:
            found = await tidings.list_experiments()
        out().print(list_view(found))

    run(main)
