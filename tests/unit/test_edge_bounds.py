"""What the edge accepts is what the worker can decode and store: bounded nesting, a documented
range for every datetime, and a clear field error (never an OverflowError) outside it."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from tidings.models import (
    MAX_DEPTH,
    EngagementEvent,
    NotificationRequest,
    TemplateDefinition,
)
from workflows.io import EngagementSignal, RescheduleInput

BASE = {"user_id": "u1", "template_id": "welcome"}
TEMPLATE = {"id": "t", "channels": ["email"], "content": {"subject": "s", "text": "t"}}


def nested(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {}
    for _ in range(depth - 1):
        value = {"a": value}
    return value


def field_error(model: type[BaseModel], body: dict[str, Any], *, as_json: bool = True) -> str:
    """The first error's location and message; validated from JSON as an HTTP body is."""
    with pytest.raises(ValidationError) as e:
        if as_json:
            model.model_validate_json(json.dumps(body))
        else:
            model.model_validate(body)
    first = e.value.errors()[0]
    return f"{'.'.join(map(str, first['loc']))}: {first['msg']}"


def test_data_at_the_depth_bound_is_accepted() -> None:
    NotificationRequest.model_validate({**BASE, "data": nested(MAX_DEPTH)})


@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 200, 100_000])
def test_data_nested_deeper_is_refused_naming_data(depth: int) -> None:
    # 100,000 levels: built in Python (as a client caller may), beyond any recursion limit.
    error = field_error(NotificationRequest, {**BASE, "data": nested(depth)}, as_json=False)
    assert error.startswith("data:") and f"deeper than {MAX_DEPTH}" in error


def test_lists_count_as_nesting_too() -> None:
    value: Any = 1
    for _ in range(MAX_DEPTH + 1):
        value = [value]
    error = field_error(NotificationRequest, {**BASE, "data": {"x": value}})
    assert error.startswith("data:")


def test_sample_data_is_bounded_like_data() -> None:
    error = field_error(TemplateDefinition, {**TEMPLATE, "sample_data": nested(MAX_DEPTH + 1)})
    assert error.startswith("sample_data:") and "deeper" in error
    error = field_error(TemplateDefinition, {**TEMPLATE, "sample_data": {"x": "y" * 20_000}})
    assert error.startswith("sample_data:") and "bytes" in error


OUT_OF_RANGE = [
    "9999-12-31T23:00:00-12:00",  # overflows past year 9999 in UTC
    "0001-01-01T00:00:00+14:00",  # overflows before year 1 in UTC
    "9999-12-31T23:59:59+00:00",
    "1999-12-31T23:59:59+00:00",
    "2100-01-01T00:00:00+00:00",
    "1970-01-01T00:00:00Z",
]


@pytest.mark.parametrize("value", OUT_OF_RANGE)
@pytest.mark.parametrize("field", ["scheduled_at", "expires_at"])
def test_request_times_out_of_range_name_the_field(field: str, value: str) -> None:
    error = field_error(NotificationRequest, {**BASE, field: value})
    assert error.startswith(f"{field}:") and "out of range" in error


@pytest.mark.parametrize("value", OUT_OF_RANGE)
def test_reschedule_and_engagement_times_are_bounded_too(value: str) -> None:
    assert "out of range" in field_error(RescheduleInput, {"at": value})
    assert "out of range" in field_error(EngagementSignal, {"type": "opened", "at": value})
    event = {"notification_id": "n", "type": "opened", "at": value}
    assert "out of range" in field_error(EngagementEvent, event)


@pytest.mark.parametrize("field", ["scheduled_at", "expires_at"])
def test_naive_times_are_refused(field: str) -> None:
    error = field_error(NotificationRequest, {**BASE, field: "2026-12-01T09:00:00"})
    assert error.startswith(f"{field}:") and "timezone" in error


def test_a_past_time_within_range_is_valid_and_means_now() -> None:
    past = datetime.now(UTC) - timedelta(days=3)
    assert NotificationRequest.model_validate({**BASE, "scheduled_at": past}).scheduled_at == past
    far_offsets = "2000-01-01T11:00:00+14:00"  # 1999-12-31T21:00Z: before the range
    assert "out of range" in field_error(NotificationRequest, {**BASE, "scheduled_at": far_offsets})
