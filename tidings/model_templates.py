"""Templates: the Jinja2 sources per locale a caller registers, the stored versioned template, and
one channel's rendered message."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AwareDatetime, Field, field_validator, model_validator

from tidings.model_base import MAX_TEMPLATE_FIELD_CHARS, Identifier, Model, check_data_size
from tidings.model_enums import Channel, Priority

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
