"""Recurring sends' pure checks: cron fields and calendars parse or name what is wrong, and each
scheduled time has its own notification id."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from pydantic import ValidationError

from tidings.recurring import (
    CalendarSpec,
    RecurringSpec,
    check_cron,
    parse_field,
    run_notification_id,
)

NOTIFY = {"user_id": "u1", "template_id": "t1"}


def test_fields_parse_numbers_names_ranges_steps_and_lists() -> None:
    assert parse_field("minute", "*/15") == [(0, 59, 15)]
    assert parse_field("day_of_week", "mon-fri") == [(1, 5, 1)]
    assert parse_field("day_of_week", "7") == [(0, 0, 1)]  # Sunday, as cron allows
    assert parse_field("month", "jan,jul") == [(1, 1, 1), (7, 7, 1)]
    assert parse_field("hour", 9) == [(9, 9, 1)]
    assert parse_field("minute", "5/20") == [(5, 59, 20)]


@pytest.mark.parametrize(
    ("expression", "fragment"),
    [
        ("0 9 * *", "has 4 fields"),
        ("61 9 * * *", "minute: 61 is outside 0-59"),
        ("0 9 * * funday", "day-of-week"),
        ("0 9 5-1 * *", "runs backwards"),
        ("0 9 * * 1/0", "step must be at least 1"),
    ],
)
def test_bad_cron_says_which_field(expression: str, fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        check_cron(expression)


def test_cron_aliases_pass() -> None:
    assert check_cron("@daily") == "@daily"


def test_bad_calendar_and_zone_name_the_field() -> None:
    with pytest.raises(ValidationError) as e:
        CalendarSpec(hour=25)
    assert "hour: 25 is outside 0-23" in str(e.value)
    with pytest.raises(ValidationError) as e:
        RecurringSpec.model_validate(
            {"schedule_id": "s", "cron": ["@daily"], "time_zone": "Mars/X", "notification": NOTIFY}
        )
    assert e.value.errors()[0]["loc"] == ("time_zone",)


def test_cross_field_problems() -> None:
    def problem(**fields: object) -> tuple[str, str] | None:
        return RecurringSpec.model_validate({"schedule_id": "s", **fields}).problem()

    assert problem(notification=NOTIFY) == (
        "cron",
        "give cron expressions or calendars (when it runs)",
    )
    assert problem(cron=["@daily"])[0] == "notification"  # type: ignore[index]
    both = {"notification": NOTIFY, "digest": {"user_id": "u1", "key": "k"}}
    assert problem(cron=["@daily"], **both)[0] == "notification"  # type: ignore[index]
    at = datetime(2030, 1, 1, tzinfo=UTC).isoformat()
    timed = {**NOTIFY, "scheduled_at": at}
    assert problem(cron=["@daily"], notification=timed)[0] == "notification.scheduled_at"  # type: ignore[index]
    assert problem(cron=["@daily"], notification=NOTIFY) is None


def test_each_scheduled_time_has_its_own_notification() -> None:
    at = datetime(2031, 3, 30, 9, 0, tzinfo=timezone(timedelta(hours=2)))
    assert run_notification_id("weekly", at) == "schedule:weekly:20310330T070000Z"
    later = run_notification_id("weekly", at + timedelta(days=7))
    assert later == "schedule:weekly:20310406T070000Z"
