"""The pure parts of digests: definitions refuse bad input by field, the template's data, and
the next time of a digest's calendar across Europe/Berlin's daylight-saving changes."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from tidings.digests import (
    BatchSummary,
    DigestDefinition,
    DigestEvent,
    DigestSchedule,
    StoredEvent,
    next_occurrence,
    template_data,
)

BERLIN = "Europe/Berlin"
DAILY = DigestSchedule(days=list(range(7)), at="09:00")


def utc(year: int, month: int, day: int, hour: int, minute: int) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def field_of(error: ValidationError) -> str:
    return ".".join(str(p) for p in error.errors()[0]["loc"])


def test_daily_9am_keeps_local_time_across_spring_forward() -> None:
    # 2026-03-29 02:00 CET -> 03:00 CEST: 09:00 local is 08:00 UTC before, 07:00 UTC after.
    first = next_occurrence(DAILY, utc(2026, 3, 27, 10, 0), BERLIN)
    second = next_occurrence(DAILY, first, BERLIN)
    third = next_occurrence(DAILY, second, BERLIN)
    assert [first, second, third] == [
        utc(2026, 3, 28, 8, 0),
        utc(2026, 3, 29, 7, 0),
        utc(2026, 3, 30, 7, 0),
    ]


def test_daily_9am_keeps_local_time_across_fall_back() -> None:
    # 2026-10-25 03:00 CEST -> 02:00 CET.
    first = next_occurrence(DAILY, utc(2026, 10, 24, 6, 0), BERLIN)
    second = next_occurrence(DAILY, first, BERLIN)
    assert [first, second] == [utc(2026, 10, 24, 7, 0), utc(2026, 10, 25, 8, 0)]


def test_time_inside_the_spring_gap_moves_forward_by_the_gap() -> None:
    schedule = DigestSchedule(days=list(range(7)), at="02:30", timezone=BERLIN)
    # 02:30 does not exist on 2026-03-29 in Berlin: it is taken as 03:30 CEST (01:30 UTC).
    assert next_occurrence(schedule, utc(2026, 3, 28, 12, 0), "UTC") == utc(2026, 3, 29, 1, 30)


def test_weekdays_skip_the_weekend_and_the_exact_time_is_not_after_itself() -> None:
    weekdays = DigestSchedule(at="09:00")  # Monday to Friday by default
    friday_nine = utc(2026, 3, 27, 8, 0)  # 09:00 CET
    assert next_occurrence(weekdays, friday_nine, BERLIN) == utc(2026, 3, 30, 7, 0)  # Monday CEST
    assert next_occurrence(weekdays, utc(2026, 3, 27, 7, 59), BERLIN) == friday_nine


def test_schedule_timezone_overrides_the_users() -> None:
    tokyo = DigestSchedule(days=[0], at="09:00", timezone="Asia/Tokyo")
    assert next_occurrence(tokyo, utc(2026, 3, 29, 0, 0), BERLIN) == utc(2026, 3, 30, 0, 0)


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"window_seconds": 0}, "window_seconds"),
        ({"max_events": 0}, "max_events"),
        ({"first_n": 11}, "first_n"),
        ({"first_n": 0, "last_n": 0}, ""),
        ({"template_id": "no spaces"}, "template_id"),
        ({"schedule": {"days": [7]}}, "schedule.days"),
        ({"schedule": {"timezone": "Mars/Olympus"}}, "schedule.timezone"),
        ({"schedule": {"at": "25:00"}}, "schedule.at"),
    ],
)
def test_bad_definitions_name_the_field(fields: dict[str, object], field: str) -> None:
    with pytest.raises(ValidationError) as e:
        DigestDefinition.model_validate({"key": "k", "template_id": "t", **fields})
    assert field_of(e.value) == field
    if not field:
        assert "first_n + last_n" in str(e.value)


def test_event_data_is_bounded() -> None:
    with pytest.raises(ValidationError) as e:
        DigestEvent(user_id="u", key="k", event_id="e", data={"x": "y" * 2000})
    assert field_of(e.value) == "data"


def test_template_data_shows_first_and_last_once() -> None:
    events = [StoredEvent(event_id=f"e{i}", at=utc(2030, 1, 1, 12, i)) for i in range(3)]
    summary = BatchSummary(
        batch=4,
        total=3,
        first=events[:2],
        last=events[1:],
        first_at=events[0].at,
        last_at=events[2].at,
    )
    data = template_data("comments", summary)
    assert [e["id"] for e in data["events"]] == ["e0", "e1", "e2"]
    assert data["total"] == 3 and data["omitted"] == 0 and data["batch"] == 4
    assert data["first_at"] == "2030-01-01T12:00:00+00:00"
