"""Digests: many events for one user and one key, sent as one notification per batch.

A digest is registered once per key (`DigestDefinition`: the template, how long a batch collects,
how many events close it early, how many of its events the template sees, and optionally a
calendar such as "weekdays at 09:00 in the user's timezone" instead of a fixed window). Events are
stored first (unique per user, key and event id, so a repeat is counted once) and a batch is
sealed in the database before it is sent, so an event that arrives during a send goes into the
next batch. The pure parts live here: the definitions, the template's data for a batch, and the
next occurrence of a calendar across daylight-saving changes.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import AwareDatetime, BaseModel, Field, field_validator, model_validator

from tidings.models import Identifier, Model, Timestamp, TimeZoneName, check_data_size

MAX_WINDOW = timedelta(days=31)
MAX_EVENTS = 10_000
MAX_SHOWN = 10  # first_n + last_n: the events a template sees, inside the notification data cap
MAX_EVENT_DATA_BYTES = 1024
DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class DigestSchedule(Model):
    """Close the batch at the next of these local times instead of after a window."""

    days: list[int] = Field(default=[0, 1, 2, 3, 4], min_length=1, max_length=7)  # Monday = 0
    at: str = Field(default="09:00", pattern=r"^([01]\d|2[0-3]):[0-5]\d$")  # local HH:MM
    timezone: TimeZoneName | None = None  # None: the user's own timezone

    @field_validator("days")
    @classmethod
    def _weekdays(cls, v: list[int]) -> list[int]:
        bad = [d for d in v if not 0 <= d <= 6]
        if bad:
            raise ValueError(f"weekdays are 0 (Monday) to 6 (Sunday), got {bad}")
        return sorted(set(v))

    @property
    def local_time(self) -> time:
        return time.fromisoformat(self.at)


class DigestDefinition(Model):
    key: Identifier
    template_id: Identifier
    window_seconds: int = Field(default=3600, gt=0, le=int(MAX_WINDOW.total_seconds()))
    max_events: int = Field(default=100, gt=0, le=MAX_EVENTS)
    first_n: int = Field(default=5, ge=0, le=MAX_SHOWN)
    last_n: int = Field(default=0, ge=0, le=MAX_SHOWN)
    schedule: DigestSchedule | None = None  # instead of window_seconds when set

    @model_validator(mode="after")
    def _shown(self) -> DigestDefinition:
        if self.first_n + self.last_n > MAX_SHOWN:
            raise ValueError(f"first_n + last_n: at most {MAX_SHOWN} events are shown")
        if self.first_n + self.last_n == 0:
            raise ValueError("first_n + last_n: show at least one event")
        return self


class DigestEvent(Model):
    """One event, as app code gives it."""

    user_id: Identifier
    key: Identifier
    event_id: Identifier
    data: dict[str, Any] = Field(default_factory=dict)
    at: Timestamp | None = None  # when it happened; defaults to when it was received

    @field_validator("data")
    @classmethod
    def _bounded(cls, v: dict[str, Any]) -> dict[str, Any]:
        check_data_size(v, "data")
        if len(_json(v)) > MAX_EVENT_DATA_BYTES:
            raise ValueError(f"at most {MAX_EVENT_DATA_BYTES} bytes as JSON per event")
        return v


class StoredEvent(BaseModel):
    event_id: str
    at: AwareDatetime
    data: dict[str, Any] = Field(default_factory=dict)


class BatchSummary(BaseModel):
    """A sealed batch as the template sees it."""

    batch: int
    total: int = 0
    first: list[StoredEvent] = Field(default_factory=list)
    last: list[StoredEvent] = Field(default_factory=list)
    first_at: AwareDatetime | None = None
    last_at: AwareDatetime | None = None


def template_data(key: str, summary: BatchSummary) -> dict[str, Any]:
    """What the digest's template gets: `events` (the first N then the last N, never one twice),
    `total`, `omitted` (how many are not in `events`), `first_at` / `last_at` (ISO 8601)."""
    seen = {e.event_id for e in summary.first}
    events = [*summary.first, *(e for e in summary.last if e.event_id not in seen)]
    return {
        "digest_key": key,
        "batch": summary.batch,
        "events": [{"id": e.event_id, "at": e.at.isoformat(), "data": e.data} for e in events],
        "total": summary.total,
        "omitted": summary.total - len(events),
        "first_at": summary.first_at.isoformat() if summary.first_at else None,
        "last_at": summary.last_at.isoformat() if summary.last_at else None,
    }


def next_occurrence(schedule: DigestSchedule, after: datetime, user_timezone: str) -> datetime:
    """The first local `schedule.at` on one of `schedule.days` strictly after `after`, in UTC.

    Wall-clock arithmetic in the zone: 09:00 stays 09:00 across a daylight-saving change. A local
    time that does not exist that day (inside the spring-forward gap) is taken as the same wall
    time with the pre-transition offset, i.e. shifted forward by the gap, as zoneinfo's fold=0."""
    zone = ZoneInfo(schedule.timezone or user_timezone)
    local_day = after.astimezone(zone).date()
    for offset in range(8):
        day = local_day + timedelta(days=offset)
        if day.weekday() not in schedule.days:
            continue
        candidate = _at(day, schedule.local_time, zone)
        if candidate > after:
            return candidate
    raise AssertionError("a weekly calendar always has an occurrence within 8 days")


def _at(day: date, at: time, zone: ZoneInfo) -> datetime:
    return datetime.combine(day, at, tzinfo=zone).astimezone(UTC)


def _json(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), default=str).encode()
