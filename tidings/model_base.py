"""The base every domain model shares, the field checks and the fixed limits.

Strict at the edge, lenient on the wire: a model refuses unknown fields when it is built from a
caller's input (client arguments, HTTP bodies), and drops them when it is decoded from a Temporal
payload (validated with `PAYLOAD_CONTEXT` set, as `workflows.converter` does), so a field added
by a newer version during a rolling deploy does not wedge an older worker.

What the edge accepts is exactly what the worker can decode and store:

- free-form JSON (`data`, `sample_data`) nests at most `MAX_DEPTH` (32) levels and is at most
  `MAX_DATA_BYTES` (16 KiB) as JSON; pydantic-core's JSON decoder gives up near 200 levels;
- every datetime (`scheduled_at`, `expires_at`, a reschedule's `at`, an engagement's `at`) carries
  an offset and lies in [2000-01-01, 2100-01-01) UTC (`EARLIEST`, `LATEST`); a value whose UTC
  conversion overflows (`9999-12-31T23:00-12:00`) is refused, never an OverflowError;
- a send time (`scheduled_at`, `expires_at`, reschedule `at`) is at most `MAX_SCHEDULE_AHEAD`
  (365 days) ahead of now: checked by the client with `check_horizon`, because a model decoded
  inside a workflow must not read the clock. A `scheduled_at` in the past means "send now".
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers
from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    ValidationInfo,
    model_validator,
)

# Bounds on what one request may carry; they keep histories and databases small and make abuse
# visible at the edge instead of inside a running workflow.
MAX_DATA_BYTES = 16 * 1024
MAX_TEMPLATE_FIELD_CHARS = 64 * 1024
MAX_ATTRIBUTES = 64
MAX_WEBHOOKS = 10
MAX_DEPTH = 32  # nesting of free-form JSON; well below pydantic-core's JSON recursion limit
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
LATEST = datetime(2100, 1, 1, tzinfo=UTC)
MAX_SCHEDULE_AHEAD = timedelta(days=365)
MAX_OPTIMAL_WITHIN = timedelta(days=7)  # send_at="optimal" looks at most a week ahead

# The validation context key that says "this is a Temporal payload, not a caller's input".
PAYLOAD_CONTEXT = "tidings.payload"

IDENTIFIER = r"^[A-Za-z0-9][A-Za-z0-9_.:@-]{0,127}$"
_identifier_re = re.compile(IDENTIFIER)


def _check_identifier(value: str) -> str:
    if not _identifier_re.match(value):
        raise ValueError(
            "must be 1-128 characters of letters, digits and _.:@- starting with a letter or digit"
        )
    return value


def _check_timezone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError) as e:
        raise ValueError(f"unknown IANA timezone {value!r}") from e
    return value


def _check_phone(value: str) -> str:
    try:
        parsed = phonenumbers.parse(value, None)
    except phonenumbers.NumberParseException as e:
        raise ValueError(f"not a phone number in E.164 form (+<country><number>): {e}") from e
    if not phonenumbers.is_valid_number(parsed):
        raise ValueError(f"{value!r} is not a valid phone number")
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def check_depth(value: Any, field: str = "data") -> None:
    """Refuse JSON nested deeper than MAX_DEPTH. Iterative, so that even a value nested a million
    levels deep is refused with a clear message rather than a RecursionError."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if not isinstance(item, dict | list | tuple):
            continue
        if depth > MAX_DEPTH:
            raise ValueError(f"{field} nests deeper than {MAX_DEPTH} levels")
        children = item.values() if isinstance(item, dict) else item
        stack.extend((child, depth + 1) for child in children)


def check_data_size(data: dict[str, Any], field: str = "data") -> dict[str, Any]:
    check_depth(data, field)  # first: json.dumps recurses and would overflow the stack
    size = len(json.dumps(data, default=str).encode())
    if size > MAX_DATA_BYTES:
        raise ValueError(f"{field} is {size} bytes as JSON; the limit is {MAX_DATA_BYTES}")
    return data


def check_attributes(values: dict[str, AttributeValue], field: str) -> dict[str, AttributeValue]:
    """Small flat key/value maps (user attributes, engagement metadata) stay small."""
    if len(values) > MAX_ATTRIBUTES:
        raise ValueError(f"{field}: at most {MAX_ATTRIBUTES} entries")
    check_data_size(values, field)
    return values


def _check_datetime_range(value: datetime) -> datetime:
    out_of_range = (
        f"{value.isoformat()} is out of range: give a time between"
        f" {EARLIEST.date()} and {LATEST.date()} (UTC)"
    )
    try:
        utc = value.astimezone(UTC)
    except (OverflowError, ValueError) as e:  # 9999-12-31T23:00-12:00 is past year 9999 in UTC
        raise ValueError(out_of_range) from e
    if not EARLIEST <= utc < LATEST:
        raise ValueError(out_of_range)
    return value


def check_horizon(value: datetime, now: datetime) -> None:
    """A send time may be at most MAX_SCHEDULE_AHEAD ahead of `now`, which the caller reads: the
    edge does, a workflow never (a model it decodes must not read the clock)."""
    if value - now > MAX_SCHEDULE_AHEAD:
        raise ValueError(f"{value.isoformat()} is more than {MAX_SCHEDULE_AHEAD.days} days ahead")


Identifier = Annotated[str, AfterValidator(_check_identifier)]
# Every datetime accepted at an edge: aware, and within [EARLIEST, LATEST) once in UTC.
Timestamp = Annotated[AwareDatetime, AfterValidator(_check_datetime_range)]
TimeZoneName = Annotated[str, AfterValidator(_check_timezone)]
PhoneNumber = Annotated[str, AfterValidator(_check_phone)]
AttributeValue = str | int | float | bool | None


class Model(BaseModel):
    """Refuses unknown fields from callers; drops them from Temporal payloads (see above)."""

    model_config = ConfigDict(extra="forbid", frozen=False)

    @model_validator(mode="before")
    @classmethod
    def _drop_unknown_from_payloads(cls, value: Any, info: ValidationInfo) -> Any:
        if not (isinstance(value, dict) and info.context and info.context.get(PAYLOAD_CONTEXT)):
            return value
        known = set(cls.model_fields) | {
            f.alias for f in cls.model_fields.values() if f.alias is not None
        }
        return {k: v for k, v in value.items() if k in known}


def is_aware(value: datetime) -> bool:
    return value.tzinfo is not None and value.utcoffset() is not None
