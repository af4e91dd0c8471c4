"""`tidings send|send-bulk|status|cancel|reschedule|engage|event`: notifications and their lives."""

from __future__ import annotations

from collections import Counter
from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from starter.cli import _views as views
from starter.cli._runtime import (
    connect,
    out,
    parse_data,
    parse_duration,
    parse_when,
    progress,
    run,
    ui_link,
)
from starter.cli._runtime import wait_all as wait_for_all
from starter.client import BulkResult, NotificationRef, Tidings
from tidings.models import Channel, EngagementType, NotificationResult, Priority
from tidings.settings import Settings

DataOption = Annotated[
    list[str] | None,
    typer.Option(
        "--data",
        "-d",
        help="Template data: a JSON object, key=value (text) or key:=<json> (typed); repeatable.",
    ),
]
ChannelOption = Annotated[
    list[Channel] | None,
    typer.Option(
        "--channel", "-c", help="Send on this channel (repeatable); default: preferences."
    ),
]
PriorityOption = Annotated[Priority | None, typer.Option(help="Priority; default: the template's.")]
AtOption = Annotated[
    str | None,
    typer.Option(help="Send time: ISO 8601 with an offset, or a delay like +10m, +2h, +3d."),
]
SendAtOption = Annotated[
    str | None,
    typer.Option(
        help="'optimal': wait for the user's best hour (their engagement, their timezone)."
    ),
]
WithinOption = Annotated[
    str | None,
    typer.Option(help="With --send-at optimal: how far to look, like 12h or 3d (default 24h)."),
]
ExpiresOption = Annotated[
    str | None, typer.Option(help="Drop it if not sent by then (same forms as --at).")
]
KeyOption = Annotated[
    str | None,
    typer.Option(help="Business key: sending again with it returns the same notification."),
]
WaitOption = Annotated[bool, typer.Option(help="Wait until it is sent and show the result.")]
TimeoutOption = Annotated[float, typer.Option(min=0.1, help="How long --wait waits, in seconds.")]


def _request_fields(
    data: list[str] | None,
    channel: list[Channel] | None,
    priority: Priority | None,
    at: str | None,
    expires: str | None,
    idempotency_key: str | None,
    send_at: str | None = None,
    optimal_within: str | None = None,
) -> dict[str, Any]:
    fields: dict[str, Any] = {"data": parse_data(data or [])}
    if send_at is not None:
        fields["send_at"] = send_at  # anything but "optimal" is refused by the request model
    if optimal_within is not None:
        fields["optimal_within"] = parse_duration(optimal_within, "--optimal-within")
    if channel:
        fields["channels"] = channel
    if priority:
        fields["priority"] = priority
    if at:
        fields["scheduled_at"] = parse_when(at, "--at")
    if expires:
        fields["expires_at"] = parse_when(expires, "--expires")
    if idempotency_key:
        fields["idempotency_key"] = idempotency_key
    return fields


def send(
    user_id: Annotated[str, typer.Argument(help="Who to notify.")],
    template_id: Annotated[str, typer.Argument(help="Which template to send.")],
    data: DataOption = None,
    channel: ChannelOption = None,
    priority: PriorityOption = None,
    at: AtOption = None,
    send_at: SendAtOption = None,
    optimal_within: WithinOption = None,
    expires: ExpiresOption = None,
    idempotency_key: KeyOption = None,
    wait: WaitOption = False,
    timeout: TimeoutOption = 30.0,
) -> None:
    """Notify one user. The request is checked (user, template, data, times) before anything
    starts; then it prints the notification id and its Web UI link."""

    async def main(settings: Settings) -> None:
        fields = _request_fields(
            data, channel, priority, at, expires, idempotency_key, send_at, optimal_within
        )
        async with connect(settings) as tidings:
            ref = await tidings.notify(user_id=user_id, template_id=template_id, **fields)
            if not wait:
                _print_started([ref], settings)
                return
            (result,) = await wait_for_all(tidings, [ref.notification_id], within=timeout)
        out().print(views.notification(result, ui_link(settings, result.notification_id)))

    run(main)


def send_bulk(
    template_id: Annotated[str, typer.Argument(help="Which template to send.")],
    user_ids: Annotated[list[str], typer.Argument(help="The users to notify.")],
    data: DataOption = None,
    channel: ChannelOption = None,
    priority: PriorityOption = None,
    at: AtOption = None,
    send_at: SendAtOption = None,
    optimal_within: WithinOption = None,
    expires: ExpiresOption = None,
    idempotency_key: KeyOption = None,
    atomic: Annotated[
        bool, typer.Option(help="All or nothing: if any user is rejected, start none.")
    ] = False,
    wait: WaitOption = False,
    timeout: TimeoutOption = 60.0,
) -> None:
    """Notify several users with the same template and data, one notification each. Each user
    gets its own outcome: the valid ones start even when others are rejected (exit code 1 then,
    with the rejected listed), unless --atomic. With --idempotency-key K, each user's key is
    K.<user>."""

    async def main(settings: Settings) -> None:
        fields = _request_fields(
            data, channel, priority, at, expires, idempotency_key, send_at, optimal_within
        )
        async with connect(settings) as tidings:
            result = await _start_bulk(tidings, template_id, user_ids, fields, atomic)
            refs = result.refs
            _print_rejected(result)
            if not wait:
                if refs:
                    _print_started(refs, settings, result)
                if result.rejected or result.failed:
                    raise typer.Exit(1)
                return
            ids = [r.notification_id for r in refs]
            results = await wait_for_all(tidings, ids, within=timeout)
        _print_outcomes(results, settings)
        if result.rejected or result.failed:
            raise typer.Exit(1)

    run(main)


async def _start_bulk(
    tidings: Tidings, template_id: str, user_ids: list[str], fields: dict[str, Any], atomic: bool
) -> BulkResult:
    with progress() as bar:
        bar.add_task(f"checking and starting {len(user_ids)} notifications", total=None)
        return await tidings.notify_many(user_ids, template_id, atomic=atomic, **fields)


def _print_rejected(result: BulkResult) -> None:
    bad = [o for o in result.outcomes if o.outcome in ("rejected", "failed")]
    if not bad:
        return
    table = Table(title=f"{len(bad)} not started", title_justify="left")
    table.add_column("user", overflow="fold")
    table.add_column("field", overflow="fold")
    table.add_column("reason", overflow="fold")
    for o in bad:
        table.add_row(Text(o.user_id), Text(o.field or o.outcome), Text(o.reason or ""))
    out().print(table)


def _print_started(
    refs: list[NotificationRef], settings: Settings, bulk: BulkResult | None = None
) -> None:
    # A key used again with the same request starts nothing, and a large bulk is accepted
    # before its runs start: say which rather than "started" for all.
    existed = sum(not ref.created for ref in refs)
    accepted = bulk.accepted if bulk is not None else 0
    started = len(refs) - existed - accepted
    parts = [f"{started} notification(s) started"] if started else []
    if bulk is not None and accepted:
        parts.append(
            f"{accepted} accepted, their runs start shortly (`tidings bulk-status {bulk.bulk_id}`)"
        )
    parts += [f"{existed} already existed (same idempotency key and request)"] if existed else []
    table = Table(title=", ".join(parts), title_justify="left")
    table.add_column("notification", overflow="fold")
    table.add_column("Web UI", overflow="fold")
    for ref in refs:
        table.add_row(Text(ref.notification_id), Text(ui_link(settings, ref.notification_id)))
    out().print(table)


def _print_outcomes(results: list[NotificationResult], settings: Settings) -> None:
    table = Table(title="outcomes", title_justify="left")
    for column in ("notification", "user", "status", "channels"):
        table.add_column(column, overflow="fold")
    for r in results:
        channels = ", ".join(f"{c.channel.value} {c.status.value}" for c in r.channels)
        table.add_row(
            Text(r.notification_id), Text(r.user_id), views.status_text(r.status), Text(channels)
        )
    counts = Counter(r.status.value for r in results)
    out().print(table)
    out().print(", ".join(f"{n} {s}" for s, n in sorted(counts.items())), markup=False)


def status(
    notification_id: Annotated[str, typer.Argument(help="The notification's id.")],
) -> None:
    """Show a notification: overall status, each channel's status and reason, engagement, and
    the link to its run in the Temporal Web UI."""

    async def main(settings: Settings) -> None:
        async with connect(settings) as tidings:
            result = await tidings.status(notification_id)
        out().print(views.notification(result, ui_link(settings, notification_id)))

    run(main)


def bulk_status(
    bulk_id: Annotated[str, typer.Argument(help="The bulk's id, as send-bulk printed it.")],
) -> None:
    """Show a bulk accepted durably: how many recipients it accepted and how many of their runs
    its fan-out has started so far."""

    async def main(settings: Settings) -> None:
        async with connect(settings) as tidings:
            bulk = await tidings.get_bulk(bulk_id)
        table = Table(title=f"bulk {bulk.bulk_id}", title_justify="left", show_header=False)
        for name, value in [
            ("template", bulk.template_id),
            ("status", bulk.status.value),
            ("started", f"{bulk.started} of {bulk.total}"),
            ("reason", bulk.reason or ""),
            ("accepted at", bulk.created_at.isoformat()),
            ("updated at", bulk.updated_at.isoformat()),
        ]:
            table.add_row(name, Text(value))
        out().print(table)

    run(main)


def cancel(
    notification_id: Annotated[str, typer.Argument(help="The notification's id.")],
    reason: Annotated[str, typer.Option(help="Why; kept with the notification.")] = (
        "cancelled by request"
    ),
) -> None:
    """Cancel a notification that is still waiting for its send time."""

    async def main(settings: Settings) -> None:
        async with connect(settings) as tidings:
            await tidings.cancel(notification_id, reason)
            # The update answers before the run has acted on it; the query shows the outcome.
            result = await tidings.status(notification_id)
        out().print(views.notification(result, ui_link(settings, notification_id)))

    run(main)


def reschedule(
    notification_id: Annotated[str, typer.Argument(help="The notification's id.")],
    at: Annotated[str, typer.Argument(help="New send time: ISO 8601 with an offset, or +2h.")],
) -> None:
    """Move the send time of a notification that is still waiting."""

    async def main(settings: Settings) -> None:
        when = parse_when(at, "AT")
        async with connect(settings) as tidings:
            result = await tidings.reschedule(notification_id, when)
        out().print(views.notification(result, ui_link(settings, notification_id)))

    run(main)


def engage(
    notification_id: Annotated[str, typer.Argument(help="The notification's id.")],
    event: Annotated[EngagementType, typer.Argument(help="What the user did.")],
    channel: Annotated[Channel | None, typer.Option(help="Where they did it.")] = None,
) -> None:
    """Record what the user did with a sent notification (within its engagement window)."""

    async def main(settings: Settings) -> None:
        async with connect(settings) as tidings:
            await tidings.engage(notification_id, event, channel=channel)
        out().print(f"{event.value} recorded for {notification_id}", markup=False)

    run(main)


def event(
    notification_id: Annotated[str, typer.Argument(help="The notification's id.")],
    type: Annotated[EngagementType, typer.Argument(help="What the user did.")],
    channel: Annotated[Channel | None, typer.Option(help="Where they did it.")] = None,
    event_id: Annotated[
        str | None,
        typer.Option(help="Your id for this event; without one, once per type and channel."),
    ] = None,
    at: Annotated[
        str | None, typer.Option(help="When they did it (ISO 8601 with an offset); default: now.")
    ] = None,
    value: Annotated[float | None, typer.Option(help="What a conversion was worth.")] = None,
    currency: Annotated[str | None, typer.Option(help="The value's currency (ISO 4217).")] = None,
) -> None:
    """Record an engagement event with one database write (and at most one signal). Events
    after the engagement window are recorded too; the same event twice counts once."""

    async def main(settings: Settings) -> None:
        report: dict[str, Any] = {"type": type, "channel": channel, "event_id": event_id}
        report |= {"at": at, "value": value, "currency": currency}
        async with connect(settings) as tidings:
            recorded = await tidings.record_event(notification_id, report)
        said = "already recorded" if recorded.duplicate else "recorded"
        out().print(f"{type.value} {said} for {notification_id}", markup=False)

    run(main)
