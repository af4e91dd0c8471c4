"""Who is notified and how: users, their devices, quiet hours and channel preferences."""

from __future__ import annotations

from datetime import time

from pydantic import AnyHttpUrl, EmailStr, Field, field_validator, model_validator

from tidings.model_base import (
    MAX_WEBHOOKS,
    AttributeValue,
    Identifier,
    Model,
    PhoneNumber,
    TimeZoneName,
    check_attributes,
)
from tidings.model_enums import Channel, Platform


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
