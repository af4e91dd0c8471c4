"""Rich renderings of the domain's objects, shared by the commands and the demo."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from starter.dev.maildir import ReceivedMail
from tidings.models import (
    Channel,
    Device,
    InboxItem,
    NotificationResult,
    Preferences,
    ServiceStats,
    Template,
    User,
)

_STYLES = {
    "sent": "green",
    "delivered": "green",
    "failed": "red",
    "suppressed": "yellow",
    "scheduled": "cyan",
    "sending": "cyan",
    "expired": "magenta",
    "cancelled": "magenta",
}


def status_text(status: str) -> Text:
    return Text(status, style=_STYLES.get(status, ""))


def when(value: datetime | None) -> str:
    return value.isoformat(timespec="seconds") if value else "-"


def _add(table: Table, *cells: str | Text) -> None:
    # User data (subjects, bodies, names) is shown as typed, never parsed as rich markup.
    table.add_row(*(Text(c) if isinstance(c, str) else c for c in cells))


def _fields(rows: Sequence[tuple[str, str | Text]]) -> Table:
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column(overflow="fold")
    for name, value in rows:
        _add(grid, name, value)
    return grid


def notification(result: NotificationResult, link: str) -> RenderableType:
    head = _fields(
        [
            ("notification", result.notification_id),
            ("user", result.user_id),
            ("template", f"{result.template_id} v{result.template_version}"),
            ("priority", result.priority.value),
            ("status", status_text(result.status.value)),
            ("send at", when(result.send_at)),
            *([("reason", result.reason)] if result.reason else []),
            *([("send time", result.send_time_reason)] if result.send_time_reason else []),
            *([("channel order", result.channel_reason)] if result.channel_reason else []),
            ("Web UI", link),
        ]
    )
    channels = Table(title="channels", title_justify="left")
    for column in ("channel", "status", "reason", "target", "attempts", "at"):
        channels.add_column(column, overflow="fold")
    for c in result.channels:
        _add(
            channels,
            c.channel.value,
            status_text(c.status.value),
            c.reason or "",
            c.target or "",
            str(c.attempts),
            when(c.at),
        )
    parts: list[RenderableType] = [head, channels if result.channels else Text("no channel tried")]
    if result.engagement:
        events = Table(title="engagement", title_justify="left")
        for column in ("type", "channel", "at"):
            events.add_column(column)
        for e in result.engagement:
            _add(events, e.type.value, e.channel.value if e.channel else "", when(e.at))
        parts.append(events)
    return Group(*parts)


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def stats(service: ServiceStats) -> RenderableType:
    channels = Table(title="delivery by channel", title_justify="left")
    for column in ("channel", "sent", "delivered", "failed", "suppressed", "success rate"):
        channels.add_column(column, justify="left" if column == "channel" else "right")
    for channel, c in sorted(service.channels.items()):
        _add(
            channels,
            channel.value,
            str(c.sent),
            str(c.delivered),
            str(c.failed),
            str(c.suppressed),
            _rate(c.success_rate),
        )
    total = sum(service.notifications.values())
    by_status = ", ".join(f"{s.value} {n}" for s, n in sorted(service.notifications.items()))
    engaged = ", ".join(f"{t.value} {n}" for t, n in sorted(service.engagement.items()))
    summary = _fields(
        [
            ("notifications", f"{total}" + (f" ({by_status})" if by_status else "")),
            ("success rate", _rate(service.success_rate)),
            ("engagement", engaged or "none yet"),
        ]
    )
    return Group(summary, channels)


def inbox(user_id: str, items: Sequence[InboxItem]) -> RenderableType:
    table = Table(title=f"inbox of {user_id} ({len(items)} shown)", title_justify="left")
    for column in ("item", "", "title", "body", "received", "notification"):
        table.add_column(column, overflow="fold")
    for item in items:
        _add(
            table,
            str(item.id),
            "" if item.read_at else Text("new", style="bold cyan"),
            item.title,
            item.body,
            when(item.created_at),
            item.notification_id,
        )
    return table


def user(u: User, devices: Sequence[Device], prefs: Preferences) -> RenderableType:
    rows: list[tuple[str, str | Text]] = [
        ("user", u.id),
        ("email", u.email or "-"),
        ("phone", u.phone or "-"),
        ("timezone", u.timezone),
        ("locale", u.locale),
        ("webhook", ", ".join(str(w) for w in u.webhook_endpoints) or "-"),
        ("attributes", ", ".join(f"{k}={v}" for k, v in u.attributes.items()) or "-"),
        ("devices", ", ".join(f"{d.platform.value} {d.label or d.token[:8] + '...'}"
                              for d in devices) or "-"),
    ]  # fmt: skip
    return Group(_fields(rows), preferences(prefs))


def users(items: Sequence[User]) -> RenderableType:
    table = Table(title=f"{len(items)} users", title_justify="left")
    for column in ("user", "email", "phone", "timezone", "locale"):
        table.add_column(column, overflow="fold")
    for u in items:
        _add(table, u.id, u.email or "-", u.phone or "-", u.timezone, u.locale)
    return table


def preferences(prefs: Preferences) -> RenderableType:
    table = Table(title=f"preferences of {prefs.user_id}", title_justify="left")
    for column in ("scope", "switches"):
        table.add_column(column, overflow="fold")

    def switches(values: dict[Channel, bool]) -> str:
        return ", ".join(f"{c.value} {'on' if on else 'off'}"
                         for c, on in values.items())  # fmt: skip

    _add(table, "all notifications", switches(prefs.channels) or "every channel on")
    for name, values in prefs.categories.items():
        _add(table, f"category {name}", switches(values))
    for name, values in prefs.templates.items():
        _add(table, f"template {name}", switches(values))
    quiet = prefs.quiet_hours
    _add(
        table,
        "quiet hours",
        f"{quiet.start:%H:%M}-{quiet.end:%H:%M} (user's timezone)" if quiet else "none",
    )
    return table


def templates(items: Sequence[Template]) -> RenderableType:
    table = Table(title=f"{len(items)} templates", title_justify="left")
    for column in ("template", "version", "name", "category", "channels", "priority"):
        table.add_column(column, overflow="fold")
    for t in items:
        _add(
            table,
            t.id,
            str(t.version),
            t.name,
            t.category,
            ", ".join(c.value for c in t.channels),
            t.default_priority.value,
        )
    return table


def template(t: Template) -> RenderableType:
    rows: list[tuple[str, str | Text]] = [
        ("template", f"{t.id} v{t.version}"),
        ("name", t.name or "-"),
        ("category", t.category),
        ("channels", ", ".join(c.value for c in t.channels)),
        ("priority", t.default_priority.value),
        ("created", when(t.created_at)),
        ("locales", ", ".join(t.locales) or "-"),
    ]
    for field, source in t.content.model_dump(exclude_none=True).items():
        rows.append((field, Text(source)))
    return _fields(rows)


def mail_list(items: Sequence[ReceivedMail]) -> RenderableType:
    table = Table(title=f"{len(items)} messages in the SMTP sink", title_justify="left")
    for column in ("id", "received", "to", "subject"):
        table.add_column(column, overflow="fold")
    for m in items:
        _add(table, m.id, when(m.received_at), ", ".join(m.rcpt_tos), m.subject)
    return table


def mail(m: ReceivedMail) -> RenderableType:
    message = m.parsed()
    head = _fields(
        [
            ("id", m.id),
            ("received", when(m.received_at)),
            ("from", str(message.get("From", m.mail_from))),
            ("to", ", ".join(m.rcpt_tos)),
            ("subject", Text(m.subject)),
            ("message id", m.message_id or "-"),
            ("html part", "yes" if m.body("html") is not None else "no"),
        ]
    )
    return Group(head, Text(""), Text(m.body("plain") or "(no text/plain part)"))
