"""Recurring sends: what a schedule does and when, checked before a Temporal Schedule is made.

A schedule fires on cron expressions or calendars in one IANA time zone (Temporal computes the
times, daylight-saving changes included) and each firing sends one ordinary notification,
flushes one user's digest, or starts one broadcast. The checks here are pure: a cron field or
calendar value that does not parse, a zone that does not exist, or no action at all is an error
naming the field.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from pydantic import Field, field_validator, model_validator

from tidings.broadcast_models import BROADCAST_ID_PATTERN
from tidings.models import Identifier, Model, NotificationRequest, TimeZoneName

MAX_SPECS = 10
CRON_ALIASES = {"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"}
# Field name -> (lowest, highest, names accepted for numbers).
_MONTHS = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
_DAYS = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]
FIELDS: dict[str, tuple[int, int, list[str]]] = {
    "second": (0, 59, []),
    "minute": (0, 59, []),
    "hour": (0, 23, []),
    "day_of_month": (1, 31, []),
    "month": (1, 12, _MONTHS),
    "day_of_week": (0, 6, _DAYS),  # Sunday = 0, as in cron
}
CRON_FIELDS = ("minute", "hour", "day_of_month", "month", "day_of_week")
_PART = re.compile(r"^(\*|[a-z0-9]+)(?:-([a-z0-9]+))?(?:/(\d+))?$")

Range = tuple[int, int, int]  # start, end (inclusive), step


def parse_field(name: str, value: str | int) -> list[Range]:
    """`*`, `5`, `1-5`, `0-59/15`, `mon-fri`, `1,15` -> ranges; ValueError names what is wrong."""
    low, high, names = FIELDS[name]
    ranges: list[Range] = []
    for part in str(value).strip().lower().split(","):
        m = _PART.match(part.strip())
        if m is None:
            raise ValueError(f"cannot read {part!r}")
        first, last, step = m.groups()
        if first == "*":
            if last is not None:
                raise ValueError(f"cannot read {part!r}")
            start, end = low, high
        else:
            start = _number(first, low, high, names)
            end = _number(last, low, high, names) if last is not None else start
            if step is not None and last is None:
                end = high
        if end < start:
            raise ValueError(f"{part!r} runs backwards")
        step_n = int(step) if step is not None else 1
        if step_n < 1:
            raise ValueError(f"{part!r}: the step must be at least 1")
        ranges.append((start, end, step_n))
    return ranges


def _number(text: str, low: int, high: int, names: list[str]) -> int:
    if text.isdigit():
        n = int(text)
        if n == 7 and names is _DAYS:
            n = 0  # cron accepts 7 for Sunday too
    elif text[:3] in names:
        n = names.index(text[:3]) + (1 if names is _MONTHS else 0)
    else:
        raise ValueError(f"{text!r} is not a number or a name")
    if not low <= n <= high:
        raise ValueError(f"{n} is outside {low}-{high}")
    return n


def check_cron(expression: str) -> str:
    text = expression.strip()
    if text.lower() in CRON_ALIASES:
        return text
    fields = text.split()
    if len(fields) != 5:
        raise ValueError(
            f"{expression!r} has {len(fields)} fields; give 5 (minute hour day-of-month month"
            " day-of-week) or one of " + ", ".join(sorted(CRON_ALIASES))
        )
    for name, value in zip(CRON_FIELDS, fields, strict=True):
        try:
            parse_field(name, value)
        except ValueError as e:
            raise ValueError(f"{expression!r}: {name.replace('_', '-')}: {e}") from e
    return text


class CalendarSpec(Model):
    """One calendar: every field matches when left out, except second/minute/hour (0)."""

    second: str | int = 0
    minute: str | int = 0
    hour: str | int = 0
    day_of_month: str | int = "*"
    month: str | int = "*"
    day_of_week: str | int = "*"

    @model_validator(mode="after")
    def _parses(self) -> CalendarSpec:
        for name in FIELDS:
            try:
                parse_field(name, getattr(self, name))
            except ValueError as e:
                raise ValueError(f"{name}: {e}") from e
        return self

    def ranges(self) -> dict[str, list[Range]]:
        return {name: parse_field(name, getattr(self, name)) for name in FIELDS}


class DigestFlushAction(Model):
    user_id: Identifier
    key: Identifier


class BroadcastAction(Model):
    """A broadcast at each firing: the arguments of `Tidings.broadcast` but the id (each
    firing's is made of the schedule and its scheduled time, see `run_broadcast_id`)."""

    template_id: Identifier
    # A list of user ids, "all", "segment:<name>" or the audience's dict form.
    audience: list[str] | str | dict[str, Any]
    data: dict[str, Any] = Field(default_factory=dict)
    channels: list[str] | None = None
    priority: str | None = None
    page_size: int = 500
    pages_per_run: int = 50
    concurrency: int = 20


class RecurringSpec(Model):
    """What `Tidings.create_schedule` takes."""

    schedule_id: Identifier
    cron: list[str] = Field(default_factory=list, max_length=MAX_SPECS)
    calendars: list[CalendarSpec] = Field(default_factory=list, max_length=MAX_SPECS)
    time_zone: TimeZoneName = "UTC"
    # Exactly one action: an ordinary notification, a flush of one user's digest, or a
    # broadcast.
    notification: NotificationRequest | None = None
    digest: DigestFlushAction | None = None
    broadcast: BroadcastAction | None = None
    note: str = Field(default="", max_length=500)
    paused: bool = False

    @field_validator("cron")
    @classmethod
    def _crons(cls, v: list[str]) -> list[str]:
        return [check_cron(c) for c in v]

    def problem(self) -> tuple[str, str] | None:
        """What is missing or contradictory across fields, as (field, reason)."""
        if not self.cron and not self.calendars:
            return "cron", "give cron expressions or calendars (when it runs)"
        actions = [a for a in (self.notification, self.digest, self.broadcast) if a is not None]
        if len(actions) != 1:
            return (
                "notification",
                "give exactly one action: a notification, a digest or a broadcast",
            )
        if self.broadcast is not None and not re.match(
            BROADCAST_ID_PATTERN, run_broadcast_id(self.schedule_id, datetime.now(UTC))
        ):
            return (
                "schedule_id",
                "a broadcast schedule's id is at most 41 letters, digits, '.', '_' or '-'"
                " (each firing's broadcast id is made of it)",
            )
        if self.notification is not None:
            for name in ("scheduled_at", "expires_at", "idempotency_key"):
                if getattr(self.notification, name) is not None:
                    return f"notification.{name}", "a schedule sets the time and key of each run"
        return None


def run_notification_id(schedule_id: str, scheduled_at: datetime) -> str:
    """The notification one firing sends: one per schedule and scheduled time, so a repeated
    firing for the same time (a retried start, a reset) finds it instead of sending again."""
    return f"schedule:{schedule_id}:{scheduled_at.astimezone(UTC).strftime('%Y%m%dT%H%M%SZ')}"


def run_broadcast_id(schedule_id: str, scheduled_at: datetime) -> str:
    """The broadcast one firing starts, one per schedule and scheduled time (as
    `run_notification_id`); letters, digits, '-' and '_' only, as broadcast ids must be."""
    return f"sched-{schedule_id}-{scheduled_at.astimezone(UTC).strftime('%Y%m%dT%H%M%SZ')}"


def describe_action(spec: dict[str, Any]) -> str:
    if spec.get("broadcast"):
        b = spec["broadcast"]
        audience = b.get("audience")
        shown = f"{len(audience)} users" if isinstance(audience, list) else audience
        return f"broadcast {b.get('template_id')} to {shown}"
    if spec.get("digest"):
        return f"flush digest {spec['digest']['key']} for {spec['digest']['user_id']}"
    n = spec.get("notification") or {}
    return f"notify {n.get('user_id')} with {n.get('template_id')}"
