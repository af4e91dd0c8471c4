"""`tidings analytics metrics|templates|channels|providers|profile` and
`tidings segment create|list|count|members|delete`: the figures as rich tables.

A period is `--start` and `--end` (ISO 8601 with an offset), or `--days N` back from the next
full hour (default 30).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from starter.cli._runtime import connect, fail, out, parse_when, run
from tidings.analytics import Bucket, Counts, Period, RankBy
from tidings.errors import InvalidRequest
from tidings.models import Channel
from tidings.settings import Settings
from tidings.store.analytics import default_period

analytics_app = typer.Typer(
    help="Delivery and engagement figures for a period, by template, channel or user.",
    no_args_is_help=True,
)
segment_app = typer.Typer(
    help="Saved audiences: rules over users, counted and listed in SQL.", no_args_is_help=True
)

Start = Annotated[str | None, typer.Option(help="Period start, ISO 8601 with an offset.")]
End = Annotated[str | None, typer.Option(help="Period end (exclusive), ISO 8601 with offset.")]
Days = Annotated[int, typer.Option(min=1, max=400, help="Without --start/--end: the last N days.")]
TemplateOpt = Annotated[str | None, typer.Option("--template", help="Only this template.")]
VersionOpt = Annotated[int | None, typer.Option("--version", help="Only this template version.")]
ChannelOpt = Annotated[Channel | None, typer.Option("--channel", help="Only this channel.")]
CategoryOpt = Annotated[str | None, typer.Option("--category", help="Only this category.")]
ExperimentOpt = Annotated[str | None, typer.Option("--experiment", help="Only this A/B test.")]
VariantOpt = Annotated[str | None, typer.Option("--variant", help="Only this arm of the test.")]
UserOpt = Annotated[str | None, typer.Option("--user", help="Only this user's notifications.")]
SegmentOpt = Annotated[str | None, typer.Option("--segment", help="Only this segment's users.")]


def _period(start: str | None, end: str | None, days: int) -> Period:
    if start is None and end is None:
        return default_period(datetime.now(UTC), days)
    if start is None or end is None:
        raise InvalidRequest("--start" if start is None else "--end", "give both --start and --end")
    first, last = parse_when(start, "--start"), parse_when(end, "--end")
    if last <= first:
        raise InvalidRequest("--end", "must be after --start")
    if last - first > timedelta(days=400):
        raise InvalidRequest("--end", "a period covers at most 400 days")
    return Period(start=first, end=last)


def _filter(**given: Any) -> dict[str, Any]:
    return {k: v for k, v in given.items() if v is not None}


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def _counts_row(c: Counts) -> list[str]:
    return [
        str(c.notifications),
        str(c.sent),
        str(c.delivered),
        str(c.failed),
        str(c.suppressed),
        _pct(c.delivery_rate),
        _pct(c.open_rate),
        _pct(c.click_rate),
        _pct(c.conversion_rate),
    ]


_COUNT_COLUMNS = (
    "total",
    "sent",
    "deliv.",
    "failed",
    "suppr.",
    "deliv. rate",
    "open",
    "click",
    "conv.",
)


def _table(title: str, first: list[str], columns: tuple[str, ...] = _COUNT_COLUMNS) -> Table:
    table = Table(title=title, title_justify="left")
    for name in first:
        table.add_column(name)
    for name in columns:
        table.add_column(name, justify="right")
    return table


@analytics_app.command("metrics")
def metrics(
    start: Start = None,
    end: End = None,
    days: Days = 30,
    template: TemplateOpt = None,
    version: VersionOpt = None,
    channel: ChannelOpt = None,
    category: CategoryOpt = None,
    experiment: ExperimentOpt = None,
    variant: VariantOpt = None,
    user: UserOpt = None,
    segment: SegmentOpt = None,
    bucket: Annotated[Bucket, typer.Option(help="Series by day or hour.")] = Bucket.DAY,
) -> None:
    """Sent, delivered, failed, suppressed and the rates (unique per notification; see the
    README), conversion value per currency, and a series by creation time."""

    async def main(settings: Settings) -> None:
        period = _period(start, end, days)
        where = _filter(
            template_id=template,
            template_version=version,
            channel=channel,
            category=category,
            experiment_id=experiment,
            variant=variant,
            user_id=user,
            segment=segment,
        )
        async with connect(settings, temporal_needed=False) as tidings:
            m = await tidings.analytics_metrics(period, where, bucket=bucket)
        console = out()
        console.print(f"{m.period.start.isoformat()} to {m.period.end.isoformat()}")
        table = _table("period", [])
        table.add_row(*_counts_row(m.counts))
        console.print(table)
        if m.conversion_value:
            money = ", ".join(
                f"{v:,.2f} {c or '(no currency)'}" for c, v in m.conversion_value.items()
            )
            console.print(f"conversion value: {money}")
        series = _table(f"by {m.bucket.value}", [m.bucket.value])
        for p in m.series:
            label = p.at.strftime("%Y-%m-%d" if m.bucket is Bucket.DAY else "%Y-%m-%d %H:00")
            series.add_row(label, *_counts_row(p.counts))
        console.print(series)

    run(main)


@analytics_app.command("templates")
def templates(
    start: Start = None,
    end: End = None,
    days: Days = 30,
    by: Annotated[RankBy, typer.Option(help="The rate to rank by.")] = RankBy.OPEN_RATE,
    minimum_sample: Annotated[int, typer.Option(min=1, help="Sent at least this often.")] = 100,
    limit: Annotated[int, typer.Option(min=1, max=100)] = 10,
    channel: ChannelOpt = None,
    category: CategoryOpt = None,
) -> None:
    """The best templates of the period by a rate, among those sent at least --minimum-sample
    times."""

    async def main(settings: Settings) -> None:
        period = _period(start, end, days)
        where = _filter(channel=channel, category=category)
        async with connect(settings, temporal_needed=False) as tidings:
            ranks = await tidings.best_templates(
                period, where, by=by, minimum_sample=minimum_sample, limit=limit
            )
        table = _table(f"templates by {by.value}", ["template"])
        for r in ranks:
            table.add_row(r.template_id, *_counts_row(r.counts))
        out().print(table)
        if not ranks:
            out().print(f"no template was sent {minimum_sample} times in the period")

    run(main)


@analytics_app.command("channels")
def channels(
    start: Start = None, end: End = None, days: Days = 30, template: TemplateOpt = None
) -> None:
    """Per channel: deliveries, delivery rate, open rate and the median time to the first open."""

    async def main(settings: Settings) -> None:
        period = _period(start, end, days)
        async with connect(settings, temporal_needed=False) as tidings:
            rows = await tidings.channel_performance(period, _filter(template_id=template))
        columns = (
            "attempted",
            "sent",
            "deliv.",
            "failed",
            "deliv. rate",
            "opened",
            "open",
            "median to open",
        )
        table = _table("channels", ["channel"], columns)
        for c in rows:
            median = (
                "-" if c.median_seconds_to_open is None else f"{c.median_seconds_to_open:,.0f} s"
            )
            table.add_row(
                c.channel.value,
                str(c.attempted),
                str(c.sent),
                str(c.delivered),
                str(c.failed),
                _pct(c.delivery_rate),
                str(c.opened),
                _pct(c.open_rate),
                median,
            )
        out().print(table)

    run(main)


@analytics_app.command("providers")
def providers(start: Start = None, end: End = None, days: Days = 30) -> None:
    """Per channel: failures, retries, and failovers to and from other channels."""

    async def main(settings: Settings) -> None:
        period = _period(start, end, days)
        async with connect(settings, temporal_needed=False) as tidings:
            rows = await tidings.provider_performance(period)
        columns = (
            "deliveries",
            "failed",
            "failure rate",
            "retries",
            "failover from",
            "failover to",
        )
        table = _table("providers (per channel)", ["channel"], columns)
        for p in rows:
            table.add_row(
                p.channel.value,
                str(p.deliveries),
                str(p.failed),
                _pct(p.failure_rate),
                str(p.retries),
                str(p.failovers_from),
                str(p.failovers_to),
            )
        out().print(table)

    run(main)


@analytics_app.command("profile")
def profile(
    user_id: Annotated[str, typer.Argument(help="The user.")],
    since: Annotated[str | None, typer.Option(help="Only notifications since (ISO 8601).")] = None,
) -> None:
    """A user's engagement: per channel, the preferred channel, their busiest local hours."""

    async def main(settings: Settings) -> None:
        after = None if since is None else parse_when(since, "--since")
        async with connect(settings, temporal_needed=False) as tidings:
            p = await tidings.engagement_profile(user_id, since=after)
        console = out()
        console.print(
            f"user {p.user_id} ({p.timezone}): {p.notifications} notifications,"
            f" {p.engaged} engaged; preferred channel {p.preferred_channel or '-'};"
            f" last engagement {p.last_engagement.isoformat() if p.last_engagement else '-'}"
        )
        table = _table(
            "channels", ["channel"], ("sent", "opened", "clicked", "converted", "open", "click")
        )
        for c in p.channels:
            table.add_row(
                c.channel.value,
                str(c.sent),
                str(c.opened),
                str(c.clicked),
                str(c.converted),
                _pct(c.open_rate),
                _pct(c.click_rate),
            )
        console.print(table)
        names = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]
        best = [
            f"{names[int(k.split('-')[0])]} {int(k.split('-')[1]):02d}:00 ({p.hours_of_week[k]})"
            for k in p.best_hours
        ]
        console.print(f"busiest local hours: {', '.join(best) or '-'}")

    run(main)


# --- segments ----------------------------------------------------------------------------------


@segment_app.command("create")
def segment_create(
    name: Annotated[str, typer.Argument(help="The segment's name.")],
    rules: Annotated[str, typer.Argument(help="The rules as JSON, or @file.json.")],
) -> None:
    """Save a segment, e.g. '{"all": [{"field": "locale", "op": "eq", "value": "de"},
    {"field": "engagement.opened", "op": "gte", "value": 1, "days": 30}]}'."""

    text = rules
    if rules.startswith("@"):
        try:
            text = Path(rules[1:]).read_text()
        except OSError as e:
            fail(f"rules: cannot read {rules[1:]}: {e.strerror}")
    try:
        parsed = json.loads(text)
    except json.JSONDecodeError as e:
        fail(f"rules: not valid JSON: {e.msg}")

    async def main(settings: Settings) -> None:
        async with connect(settings, temporal_needed=False) as tidings:
            segment, created = await tidings.create_segment({"name": name, "rules": parsed})
            count = await tidings.segment_count(segment.name)
        what = "created" if created else "exists already (rules unchanged)"
        out().print(f"segment {segment.name} {what}: {count} users")

    run(main)


@segment_app.command("list")
def segment_list() -> None:
    """The saved segments and their rules."""

    async def main(settings: Settings) -> None:
        async with connect(settings, temporal_needed=False) as tidings:
            segments = await tidings.list_segments()
        table = Table(title="segments", title_justify="left")
        for column in ("name", "created", "rules"):
            table.add_column(column)
        for s in segments:
            table.add_row(s.name, s.created_at.strftime("%Y-%m-%d %H:%M"), json.dumps(s.rules))
        out().print(table)

    run(main)


@segment_app.command("count")
def segment_count(name: Annotated[str, typer.Argument(help="The segment.")]) -> None:
    """How many users the segment holds now."""

    async def main(settings: Settings) -> None:
        async with connect(settings, temporal_needed=False) as tidings:
            count = await tidings.segment_count(name)
        out().print(f"{count}")

    run(main)


@segment_app.command("members")
def segment_members(
    name: Annotated[str, typer.Argument(help="The segment.")],
    after: Annotated[str | None, typer.Option(help="Start after this user id.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 100,
) -> None:
    """One page of the segment's user ids, in id order; the last line says how to go on."""

    async def main(settings: Settings) -> None:
        async with connect(settings, temporal_needed=False) as tidings:
            page = await tidings.segment_members(name, after=after, limit=limit)
        console = out()
        for user_id in page.user_ids:
            console.print(user_id)
        if page.next_after is not None:
            console.print(f"(more: --after {page.next_after})")

    run(main)


@segment_app.command("delete")
def segment_delete(name: Annotated[str, typer.Argument(help="The segment.")]) -> None:
    """Delete a saved segment."""

    async def main(settings: Settings) -> None:
        async with connect(settings, temporal_needed=False) as tidings:
            await tidings.delete_segment(name)
        out().print(f"segment {name} deleted")

    run(main)
