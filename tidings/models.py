"""The domain's types: what users, templates, requests, results and events look like.

Every Temporal payload (workflow, activity, signal, update and query input or output) is one of
these models or is built from them, so validation happens once, here, and the same shapes travel
through the client, the history and the database. New fields always get defaults so that running
workflows keep decoding their history.

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
from datetime import UTC, datetime, time, timedelta
from enum import StrEnum
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers
from pydantic import (
    AfterValidator,
    AnyHttpUrl,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    EmailStr,
    Field,
    ValidationInfo,
    field_validator,
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


class Channel(StrEnum):
    EMAIL = "email"
    PUSH = "push"
    SMS = "sms"
    IN_APP = "in_app"
    WEBHOOK = "webhook"
    SLACK = "slack"


class Priority(StrEnum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        return _PRIORITY_RANK[self]

    @property
    def urgent(self) -> bool:
        """HIGH and CRITICAL run on their own task queues so a LOW backlog cannot delay them."""
        return self in (Priority.HIGH, Priority.CRITICAL)


_PRIORITY_RANK = {Priority.LOW: 0, Priority.MEDIUM: 1, Priority.HIGH: 2, Priority.CRITICAL: 3}


class Platform(StrEnum):
    FCM = "fcm"
    APNS = "apns"


class DeliveryStatus(StrEnum):
    """Status of one channel of one notification."""

    SCHEDULED = "scheduled"
    SENDING = "sending"  # handed to the channel's activity; its result has not landed yet
    SENT = "sent"  # accepted by the provider (SMTP relay, push service)
    DELIVERED = "delivered"  # reached the user's endpoint (inbox row, webhook 2xx, receipt)
    FAILED = "failed"
    SUPPRESSED = "suppressed"
    EXPIRED = "expired"
    CANCELLED = "cancelled"

    @property
    def final(self) -> bool:
        return self not in (DeliveryStatus.SCHEDULED, DeliveryStatus.SENDING)


class NotificationStatus(StrEnum):
    """Status of a whole notification, derived from its channels."""

    SCHEDULED = "scheduled"  # waiting for its send time (scheduled time or quiet hours)
    SENDING = "sending"
    SENT = "sent"  # at least one channel sent or delivered
    FAILED = "failed"  # every attempted channel failed
    SUPPRESSED = "suppressed"  # nothing to send: every channel suppressed by policy
    EXPIRED = "expired"
    CANCELLED = "cancelled"


class EngagementType(StrEnum):
    # Recorded from a provider's delivery receipt (and accepted from apps), never signalled to
    # a run: runs learn of delivery through the `receipt` signal, and workers older than this
    # value could not decode it.
    DELIVERED = "delivered"
    OPENED = "opened"
    CLICKED = "clicked"
    DISMISSED = "dismissed"
    CONVERTED = "converted"


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


# --- users, devices, preferences ---------------------------------------------------------------


class User(Model):
    id: Identifier
    email: EmailStr | None = None
    phone: PhoneNumber | None = None
    timezone: TimeZoneName = "UTC"
    locale: str = Field(default="en", pattern=r"^[a-z]{2,3}([-_][A-Za-z0-9]{2,8})*$")
    webhook_url: AnyHttpUrl | None = None
    # Further endpoints that get every webhook notification too (several integrations).
    webhook_urls: list[AnyHttpUrl] = Field(default_factory=list, max_length=MAX_WEBHOOKS)
    slack_webhook_url: AnyHttpUrl | None = None  # a Slack incoming webhook
    # A Slack member or channel id (U…, W…, C…, D…, G…) for chat.postMessage with the bot token.
    slack_user_id: str | None = Field(default=None, pattern=r"^[A-Z0-9]{2,32}$")
    attributes: dict[str, AttributeValue] = Field(default_factory=dict)

    @field_validator("attributes")
    @classmethod
    def _bounded_attributes(cls, v: dict[str, AttributeValue]) -> dict[str, AttributeValue]:
        return check_attributes(v, "attributes")

    @property
    def webhook_endpoints(self) -> list[AnyHttpUrl]:
        return ([self.webhook_url] if self.webhook_url else []) + list(self.webhook_urls)


class Device(Model):
    user_id: Identifier
    platform: Platform
    token: str = Field(min_length=8, max_length=4096)
    label: str | None = Field(default=None, max_length=200)


class QuietHours(Model):
    """A daily window in the user's own timezone; it may wrap midnight (22:00-07:00)."""

    start: time
    end: time

    @model_validator(mode="after")
    def _not_empty(self) -> QuietHours:
        if self.start == self.end:
            raise ValueError("quiet hours start and end must differ")
        return self


ChannelSwitches = dict[Channel, bool]


class Preferences(Model):
    """Which channels a user accepts. The most specific switch wins: per template, then per
    category, then global. A channel not mentioned anywhere is on."""

    user_id: Identifier
    channels: ChannelSwitches = Field(default_factory=dict)
    categories: dict[str, ChannelSwitches] = Field(default_factory=dict)
    templates: dict[str, ChannelSwitches] = Field(default_factory=dict)
    quiet_hours: QuietHours | None = None


# --- templates ----------------------------------------------------------------------------------

TemplateText = Annotated[str, Field(max_length=MAX_TEMPLATE_FIELD_CHARS)]


class TemplateContent(Model):
    """Jinja2 sources for one locale. Which fields a channel needs: email subject + text (+ html);
    push title + body; sms text; in-app title + body; webhook and Slack the subject + text."""

    subject: TemplateText | None = None
    text: TemplateText | None = None
    html: TemplateText | None = None
    push_title: TemplateText | None = None
    push_body: TemplateText | None = None
    sms: TemplateText | None = None


class TemplateDefinition(Model):
    """What a caller registers. The store assigns the version."""

    id: Identifier
    name: str = Field(default="", max_length=200)
    category: Identifier = "general"
    channels: list[Channel] = Field(min_length=1)
    default_priority: Priority = Priority.MEDIUM
    content: TemplateContent
    locales: dict[str, TemplateContent] = Field(default_factory=dict)
    sample_data: dict[str, Any] = Field(default_factory=dict)
    # Tried in order, one at a time, when every channel of the first round failed for good; with
    # `escalate_after_minutes` on a request, also when a delivered notification is not opened.
    fallback: list[Channel] = Field(default_factory=list)
    # Email links become click-tracking links and an open pixel is added (when the service has
    # a public_base_url); False sends the links as written.
    tracking: bool = True

    @field_validator("channels", "fallback")
    @classmethod
    def _unique_channels(cls, v: list[Channel]) -> list[Channel]:
        return list(dict.fromkeys(v))

    @field_validator("sample_data")
    @classmethod
    def _bounded_sample_data(cls, v: dict[str, Any]) -> dict[str, Any]:
        return check_data_size(v, "sample_data")

    @model_validator(mode="after")
    def _fallback_supported(self) -> TemplateDefinition:
        unsupported = [c.value for c in self.fallback if c not in self.channels]
        if unsupported:
            raise ValueError(f"fallback channels {unsupported} are not in channels")
        return self


class Template(TemplateDefinition):
    version: int = Field(ge=1)
    created_at: AwareDatetime | None = None


class RenderedMessage(Model):
    """One channel's rendered content."""

    channel: Channel
    subject: str = ""
    text: str = ""
    html: str | None = None


# --- requests and results -----------------------------------------------------------------------


class NotificationRequest(Model):
    """What app code asks for. Checked against the store (user, template, rendering) by the
    client before any workflow starts."""

    user_id: Identifier
    template_id: Identifier
    data: dict[str, Any] = Field(default_factory=dict)
    channels: list[Channel] | None = None
    priority: Priority | None = None
    scheduled_at: Timestamp | None = None
    expires_at: Timestamp | None = None
    idempotency_key: Identifier | None = None
    engagement_window_hours: float | None = Field(default=None, gt=0, le=24 * 90)
    fallback: list[Channel] | None = None  # overrides the template's fallback order
    escalate_after_minutes: float | None = Field(default=None, gt=0, le=60 * 24 * 30)
    # "optimal": wait for the user's best hour (tidings.send_time) between the send time
    # (scheduled_at, else now) and optimal_latest, or that plus optimal_within (default 24 h).
    send_at: Literal["optimal"] | None = None
    optimal_within: timedelta | None = None
    optimal_latest: Timestamp | None = None

    @field_validator("optimal_within")
    @classmethod
    def _bounded_within(cls, v: timedelta | None) -> timedelta | None:
        if v is not None and not timedelta(0) < v <= MAX_OPTIMAL_WITHIN:
            raise ValueError(
                f"must be more than 0 and at most {MAX_OPTIMAL_WITHIN.days} days, got {v}"
            )
        return v

    @field_validator("data")
    @classmethod
    def _bounded_data(cls, v: dict[str, Any]) -> dict[str, Any]:
        return check_data_size(v)

    @field_validator("channels")
    @classmethod
    def _channels_not_empty(cls, v: list[Channel] | None) -> list[Channel] | None:
        if v is not None and not v:
            raise ValueError("give at least one channel, or leave channels out to use preferences")
        return list(dict.fromkeys(v)) if v else v

    @model_validator(mode="after")
    def _expiry_after_schedule(self) -> NotificationRequest:
        if self.expires_at and self.scheduled_at and self.expires_at <= self.scheduled_at:
            raise ValueError("expires_at must be after scheduled_at")
        if self.send_at is None and (self.optimal_within or self.optimal_latest):
            raise ValueError('optimal_within and optimal_latest need send_at="optimal"')
        if self.optimal_within is not None and self.optimal_latest is not None:
            raise ValueError("give optimal_within or optimal_latest, not both")
        return self


class ChannelResult(Model):
    """One channel of one notification, as the run and the read model record it."""

    channel: Channel
    status: DeliveryStatus
    reason: str | None = None
    target: str | None = None  # masked address or endpoint, never a full secret
    provider_message_id: str | None = None
    attempts: int = 0
    at: AwareDatetime | None = None


EventId = Annotated[str, Field(min_length=1, max_length=128)]


class EngagementEvent(Model):
    notification_id: str
    type: EngagementType
    channel: Channel | None = None
    at: Timestamp | None = None
    metadata: dict[str, AttributeValue] = Field(default_factory=dict)
    # The caller's id for this event, when it has one (several clicks on different links are
    # several events); without it an event counts once per notification, type and channel.
    event_id: EventId | None = None

    @property
    def dedupe_key(self) -> str:
        return engagement_key(self.type, self.channel, self.event_id)


class EngagementReport(Model):
    """One event as an app (or a tracked link) reports it: `POST /v1/notifications/{id}/events`
    and `Tidings.record_event`. A conversion may carry what it was worth; `value` and `currency`
    are kept in the event's metadata under those names."""

    type: EngagementType
    channel: Channel | None = None
    at: Timestamp | None = None  # when the user acted; defaults to when it is recorded
    event_id: EventId | None = None
    value: float | None = Field(default=None, ge=0, le=1e12, allow_inf_nan=False)
    currency: str | None = Field(default=None, pattern=r"^[A-Z]{3}$")  # ISO 4217
    metadata: dict[str, AttributeValue] = Field(default_factory=dict)

    @field_validator("metadata")
    @classmethod
    def _bounded(cls, v: dict[str, AttributeValue]) -> dict[str, AttributeValue]:
        v = check_attributes(v, "metadata")
        if len(v) > MAX_ATTRIBUTES - 2:  # room for value and currency
            raise ValueError(f"metadata: at most {MAX_ATTRIBUTES - 2} entries")
        for name in ("value", "currency"):
            if name in v:
                raise ValueError(f"{name!r} is a field of its own, not metadata")
        return v

    @model_validator(mode="after")
    def _value_of_conversions(self) -> EngagementReport:
        if self.type is not EngagementType.CONVERTED and (
            self.value is not None or self.currency is not None
        ):
            raise ValueError("value and currency belong to converted events only")
        if self.currency is not None and self.value is None:
            raise ValueError("currency needs a value")
        return self

    def event(self, notification_id: str) -> EngagementEvent:
        metadata = dict(self.metadata)
        if self.value is not None:
            metadata["value"] = self.value
        if self.currency is not None:
            metadata["currency"] = self.currency
        return EngagementEvent(
            notification_id=notification_id,
            type=self.type,
            channel=self.channel,
            at=self.at,
            metadata=metadata,
            event_id=self.event_id,
        )


def engagement_key(type: EngagementType, channel: Channel | None, event_id: str | None) -> str:
    """What makes two engagement events the same event: repeats of one are recorded once."""
    if event_id is not None:
        return f"id:{event_id}"
    return f"{EngagementType(type).value}:{Channel(channel).value if channel else '-'}"


def event_id_from_key(key: str) -> str | None:
    return key.removeprefix("id:") if key.startswith("id:") else None


class NotificationResult(Model):
    notification_id: str
    user_id: str
    template_id: str
    template_version: int
    priority: Priority
    status: NotificationStatus
    send_at: AwareDatetime | None = None
    channels: list[ChannelResult] = Field(default_factory=list)
    engagement: list[EngagementEvent] = Field(default_factory=list)
    # Engagement signals that arrived outside the window or past the cap, and were not recorded.
    engagement_dropped: int = 0
    reason: str | None = None
    # send_at="optimal": the time chosen and from what (tidings.send_time).
    send_time_reason: str | None = None
    # Why the channels are in their order when the request named none (tidings.channel_choice).
    channel_reason: str | None = None


class InboxItem(Model):
    id: int
    user_id: str
    notification_id: str
    title: str
    body: str
    created_at: AwareDatetime
    read_at: AwareDatetime | None = None
    seen_at: AwareDatetime | None = None
    archived_at: AwareDatetime | None = None
    category: str | None = None  # the notification template's category


class ChannelStats(Model):
    sent: int = 0
    delivered: int = 0
    failed: int = 0
    suppressed: int = 0

    @property
    def success_rate(self) -> float | None:
        attempted = self.sent + self.delivered + self.failed
        return None if attempted == 0 else (self.sent + self.delivered) / attempted


class ServiceStats(Model):
    notifications: dict[NotificationStatus, int] = Field(default_factory=dict)
    channels: dict[Channel, ChannelStats] = Field(default_factory=dict)
    engagement: dict[EngagementType, int] = Field(default_factory=dict)

    @property
    def success_rate(self) -> float | None:
        total = ChannelStats(
            sent=sum(c.sent for c in self.channels.values()),
            delivered=sum(c.delivered for c in self.channels.values()),
            failed=sum(c.failed for c in self.channels.values()),
        )
        return total.success_rate


def is_aware(value: datetime) -> bool:
    return value.tzinfo is not None and value.utcoffset() is not None
