"""The domain's types: what users, templates, requests, results and events look like.

Every Temporal payload (workflow, activity, signal, update and query input or output) is one of
these models or is built from them, so validation happens once, here, and the same shapes travel
through the client, the history and the database. New fields always get defaults so that running
workflows keep decoding their history.

Each domain has its own module; this one gathers their public names, the import path the rest of
Tidings (and the workflows, through the sandbox's passthrough of `tidings`) uses:

    model_base           the base Model (strict at the edge, lenient on the wire), the field
                         checks and the fixed limits
    model_enums          channels, priorities, platforms, statuses, engagement types
    model_users          users, devices, quiet hours, preferences
    model_templates      template sources, stored templates, rendered messages
    model_engagement     engagement events as recorded and as reported, and their identity
    model_notifications  requests, channel and notification results, inbox items, service stats
"""

from __future__ import annotations

from tidings.model_base import (
    EARLIEST,
    IDENTIFIER,
    LATEST,
    MAX_ATTRIBUTES,
    MAX_DATA_BYTES,
    MAX_DEPTH,
    MAX_OPTIMAL_WITHIN,
    MAX_SCHEDULE_AHEAD,
    MAX_TEMPLATE_FIELD_CHARS,
    MAX_WEBHOOKS,
    PAYLOAD_CONTEXT,
    AttributeValue,
    Identifier,
    Model,
    PhoneNumber,
    Timestamp,
    TimeZoneName,
    check_attributes,
    check_data_size,
    check_depth,
    check_horizon,
    is_aware,
)
from tidings.model_engagement import (
    EngagementEvent,
    EngagementReport,
    EventId,
    engagement_key,
    event_id_from_key,
)
from tidings.model_enums import (
    Channel,
    DeliveryStatus,
    EngagementType,
    NotificationStatus,
    Platform,
    Priority,
)
from tidings.model_notifications import (
    ChannelResult,
    ChannelStats,
    InboxItem,
    NotificationRequest,
    NotificationResult,
    ServiceStats,
)
from tidings.model_templates import (
    RenderedMessage,
    Template,
    TemplateContent,
    TemplateDefinition,
    TemplateText,
)
from tidings.model_users import (
    ChannelSwitches,
    Device,
    Preferences,
    QuietHours,
    User,
)

__all__ = [
    "EARLIEST",
    "IDENTIFIER",
    "LATEST",
    "MAX_ATTRIBUTES",
    "MAX_DATA_BYTES",
    "MAX_DEPTH",
    "MAX_OPTIMAL_WITHIN",
    "MAX_SCHEDULE_AHEAD",
    "MAX_TEMPLATE_FIELD_CHARS",
    "MAX_WEBHOOKS",
    "PAYLOAD_CONTEXT",
    "AttributeValue",
    "Channel",
    "ChannelResult",
    "ChannelStats",
    "ChannelSwitches",
    "DeliveryStatus",
    "Device",
    "EngagementEvent",
    "EngagementReport",
    "EngagementType",
    "EventId",
    "Identifier",
    "InboxItem",
    "Model",
    "NotificationRequest",
    "NotificationResult",
    "NotificationStatus",
    "PhoneNumber",
    "Platform",
    "Preferences",
    "Priority",
    "QuietHours",
    "RenderedMessage",
    "ServiceStats",
    "Template",
    "TemplateContent",
    "TemplateDefinition",
    "TemplateText",
    "TimeZoneName",
    "Timestamp",
    "User",
    "check_attributes",
    "check_data_size",
    "check_depth",
    "check_horizon",
    "engagement_key",
    "event_id_from_key",
    "is_aware",
]
